import type { Transport } from "@connectrpc/connect";
import { createUniversalHandlerClient, type UniversalHandler } from "@connectrpc/connect/protocol";
import { createTransport } from "@connectrpc/connect/protocol-connect";
import { rateLimitRetries } from "../../clients/typescript/src/index.js";

/**
 * A Connect transport that calls the server's own router in this process:
 * no socket, but the same handlers, so every interceptor (auth and scopes,
 * errors, local times) and every service wrapper (validation, idempotency,
 * events) runs exactly as for a call from the network. Binary Connect, the
 * cheapest encoding; sizes are bounded by the MCP request that led here.
 */
export function inProcessTransport(handlers: readonly UniversalHandler[]): Transport {
  return createTransport({
    httpClient: createUniversalHandlerClient([...handlers]),
    baseUrl: "http://in-process",
    useBinaryFormat: true,
    // Over a rate limit, a tool waits as the server says and tries again
    // (same Idempotency-Key) rather than hand the agent a refusal.
    interceptors: [rateLimitRetries(3, 10_000)],
    acceptCompression: [],
    sendCompression: null,
    compressMinBytes: Number.MAX_SAFE_INTEGER,
    readMaxBytes: Number.MAX_SAFE_INTEGER,
    writeMaxBytes: Number.MAX_SAFE_INTEGER,
  });
}

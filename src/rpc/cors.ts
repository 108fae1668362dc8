import { cors as connectCors } from "@connectrpc/connect";
import cors from "cors";
import { REPLAYED_HEADER } from "./idempotency.js";
import { RATE_LIMIT_HEADER, RATE_LIMIT_POLICY_HEADER } from "./rate-limit.js";

type NodeRequest = Parameters<ReturnType<typeof cors>>[0];
type NodeResponse = Parameters<ReturnType<typeof cors>>[1];

/**
 * Cross-origin access for browser clients served from other origins (a
 * connect-web app on its own host). Off unless HOLDFAST_CORS_ORIGINS names
 * origins: the console is served from Holdfast's own origin and needs none.
 * The key travels in the Authorization header, never a cookie, so
 * credentials are not allowed. Uses the `cors` middleware with Connect's
 * own lists of the headers its protocols send and read, plus Holdfast's.
 */
export function corsHandler(
  origins: readonly string[],
): ((req: NodeRequest, res: NodeResponse, next: () => void) => void) | undefined {
  if (origins.length === 0) return undefined;
  return cors({
    origin: origins.includes("*") ? "*" : [...origins],
    methods: [...connectCors.allowedMethods, "OPTIONS"],
    allowedHeaders: [
      ...connectCors.allowedHeaders,
      "Authorization",
      "Idempotency-Key",
      "traceparent",
      "tracestate",
      "Last-Event-ID",
      // Browser MCP clients (the MCP Inspector) on /mcp.
      "Mcp-Protocol-Version",
      "Mcp-Session-Id",
    ],
    exposedHeaders: [
      ...connectCors.exposedHeaders,
      RATE_LIMIT_POLICY_HEADER,
      RATE_LIMIT_HEADER,
      "Retry-After",
      REPLAYED_HEADER,
      "Mcp-Session-Id",
    ],
    // Browsers cache a preflight for at most 2 hours (Chromium) anyway.
    maxAge: 7200,
    credentials: false,
  });
}

import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { codeToHttpStatus } from "@connectrpc/connect/protocol-connect";
import { WebStandardStreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js";
import { log } from "../log.js";
import type { NodeRequest, NodeResponse } from "../rpc/http.js";
import { RATE_LIMIT_HEADER, RATE_LIMIT_POLICY_HEADER } from "../rpc/rate-limit.js";
import { apiFor } from "./api.js";
import { failureOf } from "./results.js";
import { holdfastMcpServer } from "./server.js";

/** Header fields of a rate-limited answer, passed on from the API's refusal. */
const RATE_LIMIT_FIELDS = [RATE_LIMIT_POLICY_HEADER, RATE_LIMIT_HEADER, "retry-after"];

/** The path of the MCP endpoint, on the API's own port. */
export const MCP_PATH = "/mcp";

export type McpHttpOptions = {
  /** The server's own router, in-process (see transport.ts). */
  transport: Transport;
  maxRequestBytes: number;
};

/**
 * MCP over Streamable HTTP, stateless: each POST is answered on its own
 * with JSON, by an MCP server made for that request's API key, so any
 * instance answers any request and nothing is kept between requests. GET
 * (a server-to-client stream) and DELETE (ending a session) have no use
 * without sessions: 405.
 *
 * The key is the API's own: `Authorization: Bearer hf_...` is passed to
 * every call the tools make, and a request without a valid key is refused
 * here with 401, before any MCP message is read.
 */
export function mcpHttpHandler(
  opts: McpHttpOptions,
): (req: NodeRequest, res: NodeResponse) => void {
  return (req, res) => {
    serve(req, res, opts).catch((err: unknown) => {
      log.error("mcp request failed", { err });
      if (!res.headersSent) rpcError(res, 500, -32603, "internal error");
      else res.end();
    });
  };
}

async function serve(req: NodeRequest, res: NodeResponse, opts: McpHttpOptions): Promise<void> {
  if (req.method !== "POST") {
    res.setHeader("allow", "POST");
    rpcError(res, 405, -32000, "method not allowed: this MCP server is stateless, send POST");
    return;
  }
  const body = await readBody(req, opts.maxRequestBytes);
  if (body === undefined) {
    rpcError(res, 413, -32600, `request body exceeds the limit of ${opts.maxRequestBytes} bytes`);
    return;
  }
  let message: unknown;
  try {
    message = JSON.parse(body.toString("utf8"));
  } catch (err) {
    rpcError(res, 400, -32700, `parse error: ${(err as Error).message}`);
    return;
  }
  const authorization = header(req, "authorization") ?? "";
  let api: Awaited<ReturnType<typeof apiFor>>;
  try {
    api = await apiFor(opts.transport, authorization);
  } catch (err) {
    // The API's refusal, with the status the same refusal of an RPC gets:
    // 401, 403, 429 (with the RateLimit fields and Retry-After), 503...
    const failure = failureOf(err);
    const e = ConnectError.from(err);
    if (e.code === Code.Unauthenticated) {
      res.setHeader("www-authenticate", 'Bearer realm="holdfast"');
    }
    for (const name of RATE_LIMIT_FIELDS) {
      const value = e.metadata.get(name);
      if (value) res.setHeader(name, value);
    }
    rpcError(res, codeToHttpStatus(e.code), -32001, `${failure.reason}: ${failure.message}`);
    return;
  }

  const server = holdfastMcpServer(api);
  const transport = new WebStandardStreamableHTTPServerTransport({
    sessionIdGenerator: undefined,
    enableJsonResponse: true,
  });
  await server.connect(transport);
  try {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (name.startsWith(":") || value === undefined) continue;
      headers.set(name, Array.isArray(value) ? value.join(", ") : value);
    }
    const answer = await transport.handleRequest(
      new Request(`http://holdfast${MCP_PATH}`, { method: "POST", headers }),
      { parsedBody: message },
    );
    const out: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      out[name] = value;
    });
    const text = Buffer.from(await answer.arrayBuffer());
    res.writeHead(answer.status, out);
    res.end(text);
  } finally {
    await transport.close();
    await server.close();
  }
}

function header(req: NodeRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

async function readBody(req: NodeRequest, max: number): Promise<Buffer | undefined> {
  if (Number(header(req, "content-length") ?? "0") > max) return undefined;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

function rpcError(res: NodeResponse, status: number, code: number, message: string): void {
  res.setHeader("content-type", "application/json");
  res.writeHead(status);
  res.end(JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id: null }));
}

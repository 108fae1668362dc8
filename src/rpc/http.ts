import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { type DescMethod, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { type ConnectRouter, createConnectRouter, type Interceptor } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest } from "@connectrpc/connect/protocol";
import {
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { Rejection } from "../domain/rejection.js";
import { log } from "../log.js";
import { connectErrorOf } from "./errors.js";

export type RpcHandlerOptions = {
  routes: (router: ConnectRouter) => void;
  interceptors: Interceptor[];
  maxRequestBytes: number;
  shutdownSignal?: AbortSignal;
};

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** The Node handler, and the router's handlers for calls made in-process (see src/mcp/transport.ts). */
export type RpcRequestHandler = ((req: NodeRequest, res: NodeResponse) => void) & {
  handlers: readonly UniversalHandler[];
};

/**
 * The Node request handler for every protocol (Connect, gRPC, gRPC-Web).
 * Like connect-node's adapter, plus a guard on request bodies: the size cap
 * applies to every protocol, and a Connect JSON body is parsed and checked
 * here, so that malformed JSON, wrong types and unknown fields or enum
 * values come back as InvalidArgument with a reason instead of a bare
 * framework error. The parsed body is handed on, so it is parsed once.
 */
export function rpcRequestHandler(opts: RpcHandlerOptions): RpcRequestHandler {
  const router = createConnectRouter({
    interceptors: opts.interceptors,
    jsonOptions: { ignoreUnknownFields: false },
    acceptCompression: [compressionGzip],
    // Compressing costs more than it saves for all but large answers (long
    // slot lists): gzip only above 64 KiB.
    compressMinBytes: 64 * 1024,
    // Our own cap below fires first with a clear reason; this one only
    // bounds decompressed sizes.
    readMaxBytes: opts.maxRequestBytes * 8,
    shutdownSignal: opts.shutdownSignal,
  });
  opts.routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  const handle = (req: NodeRequest, res: NodeResponse) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const handler = handlers.get(path);
    if (!handler) {
      res.writeHead(404, { "content-type": "application/json" });
      res.end(JSON.stringify({ code: "unimplemented", message: `no RPC at ${path}` }));
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res as never, undefined, undefined);
    guardBody(uReq, handler.method, opts.maxRequestBytes)
      .then((body) => handler({ ...uReq, body }))
      .then((uRes) => universalResponseToNodeResponse(uRes, res as never))
      .catch((err: unknown) => log.debug("rpc response not written", { path, err }));
  };
  return Object.assign(handle, { handlers: router.handlers });
}

function tooLarge(max: number): Rejection {
  return new Rejection("REQUEST_TOO_LARGE", `request body exceeds the limit of ${max} bytes`);
}

async function guardBody(
  req: UniversalServerRequest,
  method: DescMethod,
  max: number,
): Promise<UniversalServerRequest["body"]> {
  const body = req.body as AsyncIterable<Uint8Array>;
  const declared = Number(req.header.get("content-length") ?? "0");
  if (declared > max) return failing(tooLarge(max));
  const isUnaryJson =
    req.method === "POST" &&
    method.methodKind === "unary" &&
    /^application\/json(;|$)/i.test(req.header.get("content-type") ?? "") &&
    !req.header.get("content-encoding");
  if (!isUnaryJson) return capped(body, max);

  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) return failing(tooLarge(max));
    chunks.push(chunk);
  }
  let json: JsonValue;
  try {
    json = JSON.parse(Buffer.concat(chunks).toString("utf8")) as JsonValue;
  } catch (err) {
    return failing(
      new Rejection(
        "MALFORMED_REQUEST",
        `request body is not valid JSON: ${(err as Error).message}`,
      ),
    );
  }
  try {
    fromJson(method.input, json);
  } catch (err) {
    return failing(malformed(method, (err as Error).message));
  }
  return json;
}

/**
 * protobuf-es names the offending field in its message ("cannot decode field
 * holdfast.v1.Resource.kind from JSON: ..." or 'key "nme" is unknown').
 */
function malformed(method: DescMethod, message: string): Rejection {
  const field =
    /cannot decode field [\w.]+\.(\w+) from JSON/.exec(message)?.[1] ??
    /key "([^"]+)" is unknown/.exec(message)?.[1];
  const text = `request does not match ${method.input.typeName}: ${message.replace(/^cannot decode message [\w.]+ from JSON: /, "")}`;
  return new Rejection(
    "MALFORMED_REQUEST",
    text,
    field
      ? {
          fieldViolations: [
            { field: field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), description: text },
          ],
        }
      : {},
  );
}

async function* capped(body: AsyncIterable<Uint8Array>, max: number): AsyncIterable<Uint8Array> {
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max) throw connectErrorOf(tooLarge(max));
    yield chunk;
  }
}

/** A body that fails when read, so Connect answers with our error in the caller's protocol. */
function failing(r: Rejection): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.reject(connectErrorOf(r)),
    }),
  };
}

import { isUtf8 } from "node:buffer";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  type Http2ServerRequest,
  type Http2ServerResponse,
  constants as h2constants,
} from "node:http2";
import { promisify } from "node:util";
import { gunzipSync, gzip, constants as zlibConstants } from "node:zlib";
import {
  create,
  type DescMethod,
  type DescMethodStreaming,
  type DescMethodUnary,
  fromBinary,
  fromJson,
  type JsonValue,
} from "@bufbuild/protobuf";
import { base64Decode } from "@bufbuild/protobuf/wire";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  createConnectRouter,
  createContextValues,
  type Interceptor,
  type StreamRequest,
  type UnaryRequest,
} from "@connectrpc/connect";
import {
  type Compression,
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  errorToJsonBytes,
  parseContentType as parseConnectContentType,
} from "@connectrpc/connect/protocol-connect";
import {
  parseContentType as parseGrpcContentType,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import {
  parseContentType as parseGrpcWebContentType,
  trailerFlag,
  trailerSerialize,
} from "@connectrpc/connect/protocol-grpc-web";
import {
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import { clipText, Rejection } from "../domain/rejection.js";
import { log } from "../log.js";
import { callerReset, callerWentAway, connectErrorOf } from "./errors.js";
import { explainJsonError, rolledOverTimestamp } from "./json-errors.js";
import { protocolOf } from "./observe.js";

export type RpcHandlerOptions = {
  routes: (router: ConnectRouter) => void;
  /**
   * Interceptors that see every call to a method, those the edge refuses
   * before the framework runs included (metrics, traces, the request log):
   * for a refused call they run with an empty request message and a `next`
   * that fails with the refusal, which the caller then gets.
   */
  observers: Interceptor[];
  /** The rest, outermost first; they run only for calls past the edge. */
  interceptors: Interceptor[];
  maxRequestBytes: number;
  /**
   * A server stream one of whose writes waits longer than this for the
   * caller to read is cut off (HOLDFAST_STREAM_MAX_LAG_MS).
   */
  streamStallMs: number;
  shutdownSignal?: AbortSignal;
  /**
   * Wraps the answer to a path that names no RPC (METHOD_NOT_FOUND), which
   * no interceptor sees: the request log's `httpLines`, given the path
   * clipped to 200 characters.
   */
  unrouted?: (req: NodeRequest, res: NodeResponse, path: string, answer: () => void) => void;
};

export type NodeRequest = IncomingMessage | Http2ServerRequest;
export type NodeResponse = ServerResponse | Http2ServerResponse;

/** The Node handler, and the router's handlers for calls made in-process (see src/mcp/transport.ts). */
export type RpcRequestHandler = ((req: NodeRequest, res: NodeResponse) => void) & {
  handlers: readonly UniversalHandler[];
};

/**
 * The longest deadline a caller can ask for: Node's timers hold at most
 * 2^31-1 ms, and a longer one fires at once. Longer deadlines are clamped
 * to this (about 24.8 days), so they behave as "very long", not as "now".
 */
export const MAX_DEADLINE_MS = 2 ** 31 - 1;

/** Where a plain-JSON consumer of WatchEvents goes instead. */
const SSE_HINT =
  "WatchEvents is a server stream: a plain application/json POST cannot carry it. Follow events as Server-Sent Events with GET /v1/events/stream, or poll holdfast.v1.EventService/ListEvents";

const SSE_METADATA = {
  expected_content_type: "application/connect+json",
  sse_path: "/v1/events/stream",
  poll_procedure: "holdfast.v1.EventService/ListEvents",
};

const gzipAsync = promisify(gzip);

/**
 * connect-node's gzip, compressing at zlib's fastest level: a page of 1000
 * slots (205 KB) takes about 1.4 ms rather than 2.5 ms, to 20 KB rather
 * than 18 KB.
 */
const gzipFastest: Compression = {
  name: compressionGzip.name,
  compress: async (bytes) => {
    const out = await gzipAsync(bytes, { level: zlibConstants.Z_BEST_SPEED });
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength) as Uint8Array<ArrayBuffer>;
  },
  decompress: compressionGzip.decompress,
};

/**
 * The Node request handler for every protocol (Connect, gRPC, gRPC-Web).
 * Like connect-node's adapter, plus an edge that checks every request
 * before the framework sees it, so that bad input always gets
 * InvalidArgument with a reason (never the framework's Internal or a bare
 * 415 or 429):
 * - the Content-Type must name a protocol the method speaks;
 * - deadlines (grpc-timeout, Connect-Timeout-Ms) must parse, and long ones
 *   are clamped to MAX_DEADLINE_MS;
 * - the body (and each message after decompression) must fit in
 *   maxRequestBytes: REQUEST_TOO_LARGE at every size;
 * - every message must decode (envelopes, compression, binary or JSON):
 *   MALFORMED_REQUEST otherwise, naming the field in JSON.
 * A Connect unary JSON body is handed on parsed, so it is parsed once.
 */
export function rpcRequestHandler(opts: RpcHandlerOptions): RpcRequestHandler {
  const max = opts.maxRequestBytes;
  const router = createConnectRouter({
    interceptors: [...opts.observers, deadlineInterceptor, ...opts.interceptors],
    jsonOptions: { ignoreUnknownFields: false },
    acceptCompression: [gzipFastest],
    // Compressing costs more than it saves for all but large answers (long
    // slot lists): gzip only above 64 KiB.
    compressMinBytes: 64 * 1024,
    // The edge below has checked every message against the same cap.
    readMaxBytes: max,
    shutdownSignal: opts.shutdownSignal,
  });
  opts.routes(router);
  const handlers = new Map(router.handlers.map((h) => [h.requestPath, h]));

  const handle = (req: NodeRequest, res: NodeResponse) => {
    if ("stream" in req) stopSenderAfterAnswer(req);
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const handler = handlers.get(path);
    if (!handler) {
      const answer = () => writeNoSuchMethod(req, res, path);
      return opts.unrouted ? opts.unrouted(req, res, clipText(path, 200), answer) : answer();
    }
    serve(req, res, path, handler).catch((err: unknown) => {
      if (callerWentAway(err) || req.destroyed || res.destroyed) {
        // The caller closed the connection or stream while we read it.
        log.debug("rpc caller went away", { procedure: path, err });
      } else {
        // A bug in the checks: answered, never left hanging.
        log.error("internal error", { procedure: path, err });
      }
      if (!res.headersSent && !res.destroyed) {
        writeConnectError(res, new Rejection("INTERNAL", "internal error"));
      } else res.destroy();
    });
  };
  const serve = async (
    req: NodeRequest,
    res: NodeResponse,
    path: string,
    handler: UniversalHandler,
  ) => {
    let uReq: UniversalServerRequest;
    try {
      uReq = universalRequestFromNodeRequest(req, res as never, undefined, undefined);
    } catch {
      // connect-node builds the request's URL from its authority: without a
      // Host (HTTP/1.0, or an empty one) there is none.
      return writeConnectError(
        res,
        new Rejection("MALFORMED_REQUEST", "the request has no valid Host header"),
      );
    }
    if ("stream" in req) markCallerResets(req, uReq.signal);
    const checked: Checked = NOT_ASCII.test(req.url ?? "")
      ? {
          answer: new Rejection(
            "MALFORMED_REQUEST",
            "the request's path or query holds bytes that are not ASCII: percent-encode their UTF-8 (RFC 3986)",
          ),
        }
      : await checkRequest(uReq, handler.method, max);
    const refusal = "answer" in checked ? checked.answer : checked.refused;
    if (refusal) await observeRefusal(uReq, handler.method, refusal);
    if ("answer" in checked) return writeConnectError(res, checked.answer, checked.status);
    if (handler.method.methodKind === "server_streaming")
      cutOffWhenStalled(res, opts.streamStallMs);
    const uRes = await handler(checked.request);
    await universalResponseToNodeResponse(withSpecGrpcMessage(uRes), res as never).catch(
      (err: unknown) => log.debug("rpc response not written", { path, err }),
    );
  };
  /** The observers, around a call that fails with the edge's refusal. */
  const observeRefusal = async (req: UniversalServerRequest, method: DescMethod, r: Rejection) => {
    const call = {
      service: method.parent,
      requestMethod: req.method,
      url: req.url,
      signal: req.signal,
      header: req.header,
      contextValues: createContextValues(),
    };
    const refused: UnaryRequest | StreamRequest =
      method.methodKind === "unary"
        ? {
            ...call,
            stream: false,
            method: method as DescMethodUnary,
            message: create(method.input),
          }
        : { ...call, stream: true, method: method as DescMethodStreaming, message: noMessages() };
    const fail = (): Promise<never> => Promise.reject(connectErrorOf(r));
    const observed = opts.observers.reduceRight<AnyFn>((next, observer) => observer(next), fail);
    await observed(refused).catch(() => {});
  };
  return Object.assign(handle, { handlers: router.handlers });
}

/**
 * A request target is ASCII (RFC 3986). Node's HTTP/1.1 parser refuses
 * other bytes; over HTTP/2 they reach us as Latin-1 characters, which the
 * URL would then percent-encode as if the caller had meant them: a Connect
 * GET's message in UTF-8 (or not UTF-8 at all) read as other text.
 */
const NOT_ASCII = /[^\x20-\x7e]/;

type Wire = Readonly<{
  /** How the framework will read the body. */
  framing: "unary" | "enveloped";
  binary: boolean;
  /** The header naming the body's (or each message's) compression. */
  encodingHeader: string;
  timeout: "grpc" | "connect";
}>;

/**
 * Content types seen, with their protocol: clients send a few, each on every
 * call. Only ones that name a protocol are kept, so a stream of made-up
 * content types cannot fill the map ahead of the real ones.
 */
const wires = new Map<string, Wire>();
const WIRES_MAX = 64;

/**
 * Whether a handler's answer goes out in the protobuf binary format: a POST
 * whose Content-Type names a binary protocol (gRPC, gRPC-web, Connect
 * proto). A Connect GET counts as not binary.
 */
export function answersInBinary(ctx: { requestMethod: string; requestHeader: Headers }): boolean {
  return (
    ctx.requestMethod === "POST" &&
    wireOf(ctx.requestHeader.get("content-type") ?? "")?.binary === true
  );
}

/** The protocol a Content-Type names, by connect-es's own parsers (so the two never differ). */
function wireOf(contentType: string): Wire | undefined {
  const known = wires.get(contentType);
  if (known) return known;
  const wire = parseWire(contentType);
  if (wire && wires.size < WIRES_MAX) wires.set(contentType, wire);
  return wire;
}

function parseWire(contentType: string): Wire | undefined {
  const connect = parseConnectContentType(contentType);
  if (connect) {
    return connect.stream
      ? {
          framing: "enveloped",
          binary: connect.binary,
          encodingHeader: "connect-content-encoding",
          timeout: "connect",
        }
      : {
          framing: "unary",
          binary: connect.binary,
          encodingHeader: "content-encoding",
          timeout: "connect",
        };
  }
  const grpc = parseGrpcContentType(contentType);
  const grpcWeb = parseGrpcWebContentType(contentType);
  // gRPC-Web's text form (base64) is not served.
  const binary = grpc?.binary ?? (grpcWeb && !grpcWeb.text ? grpcWeb.binary : undefined);
  if (binary === undefined) return undefined;
  return { framing: "enveloped", binary, encodingHeader: "grpc-encoding", timeout: "grpc" };
}

/**
 * What the edge made of a request: passed on to the framework (`refused`:
 * with a body that fails with that refusal), or answered here.
 */
type Checked =
  | { request: UniversalServerRequest; refused?: Rejection }
  | { answer: Rejection; status?: number };

async function checkRequest(
  req: UniversalServerRequest,
  method: DescMethod,
  max: number,
): Promise<Checked> {
  // The request's own headers, made for this call alone: changed in place.
  const header = req.header;
  const isGet = req.method === "GET";
  if (!isGet && req.method !== "POST") {
    return {
      answer: new Rejection(
        "MALFORMED_REQUEST",
        `${clipText(req.method, 20)} is not how RPCs are called: use POST (or GET for reads)`,
      ),
      status: 405,
    };
  }
  let wire: Wire | undefined;
  if (isGet) {
    if (method.methodKind !== "unary") {
      return {
        answer: new Rejection(
          "MALFORMED_REQUEST",
          `${method.name} is a stream: a Connect GET cannot call it. ${SSE_HINT}`,
          { metadata: SSE_METADATA },
        ),
        status: 405,
      };
    }
    if (method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS) {
      return {
        answer: new Rejection(
          "MALFORMED_REQUEST",
          `${method.name} changes state: call it with POST (GET serves reads only)`,
        ),
        status: 405,
      };
    }
    wire = { framing: "unary", binary: false, encodingHeader: "", timeout: "connect" };
  } else {
    const contentType = header.get("content-type") ?? "";
    wire = wireOf(contentType);
    if (wire === undefined) {
      return { answer: unsupportedContentType(contentType, method), status: 415 };
    }
    const streaming = method.methodKind !== "unary";
    if (wire.framing === "unary" && streaming && wire.timeout === "connect") {
      return { answer: unsupportedContentType(contentType, method), status: 415 };
    }
    if (wire.framing === "enveloped" && !streaming && wire.timeout === "connect") {
      return { answer: unsupportedContentType(contentType, method), status: 415 };
    }
  }

  // Whatever fails from here is answered by the framework from a failing
  // body, in the caller's protocol (refusedAs).

  const deadline = clampDeadline(header, wire.timeout);
  if (deadline) return refusedAs(req, wire, deadline);

  const encoding = wire.encodingHeader
    ? (header.get(wire.encodingHeader) ?? "identity")
    : "identity";
  if (encoding !== "identity" && encoding !== "gzip") {
    return refusedAs(
      req,
      wire,
      new Rejection(
        "MALFORMED_REQUEST",
        `${wire.encodingHeader} "${clipText(encoding, 40)}" is not supported: send gzip or identity`,
      ),
    );
  }
  const declared = Number(header.get("content-length") ?? "0");
  if (declared > max) return refusedAs(req, wire, tooLarge(max));

  if (isGet) {
    const rejection = checkGet(new URL(req.url), method, max);
    return rejection ? refusedAs(req, wire, rejection) : { request: { ...req, header } };
  }
  const body = req.body as AsyncIterable<Uint8Array>;
  const gzip = encoding === "gzip";
  if (wire.framing === "unary") {
    // Read whole (the framework would too), decompressed and decoded here;
    // JSON goes on parsed, so it is parsed once.
    let raw: Uint8Array;
    try {
      raw = await readAll(body, max);
    } catch (err) {
      if (err instanceof Rejection) return refusedAs(req, wire, err);
      throw err;
    }
    const bytes = gzip ? gunzip(raw, max) : raw;
    if (bytes instanceof Rejection) return refusedAs(req, wire, bytes);
    const parsed = decode(method, wire.binary, bytes);
    if (parsed instanceof Rejection) return refusedAs(req, wire, parsed);
    // What goes on is the whole body, decompressed.
    header.delete("content-length");
    header.delete("content-encoding");
    if (wire.binary) {
      return { request: { ...req, header, body: oneChunk(bytes) } };
    }
    return { request: { ...req, header, body: parsed } };
  }
  if (method.methodKind === "unary" || method.methodKind === "server_streaming") {
    // One message in an envelope (gRPC, gRPC-Web, a Connect server stream):
    // read whole and checked here, so a refusal is known before the
    // framework runs.
    let raw: Uint8Array;
    try {
      raw = await readAll(body, max, ENVELOPE_HEADER_BYTES);
    } catch (err) {
      if (err instanceof Rejection) return refusedAs(req, wire, err);
      throw err;
    }
    const problem = oneEnvelopeProblem(raw, method, wire.binary, gzip, max);
    if (problem) return refusedAs(req, wire, problem);
    return { request: { ...req, header, body: oneChunk(raw) } };
  }
  return {
    request: {
      ...req,
      header,
      body: checkedEnvelopes(body, method, wire.binary, gzip, max),
    },
  };
}

/**
 * A request the edge refuses after its headers passed: a GET is answered
 * here; any other goes on with a body that fails with the refusal, so the
 * framework answers it in the caller's protocol. The headers the framework
 * would check before reading the body are dropped so that ours is the
 * error it reports.
 */
function refusedAs(req: UniversalServerRequest, wire: Wire, r: Rejection): Checked {
  const header = req.header;
  for (const h of ["content-length", "grpc-timeout", "connect-timeout-ms", wire.encodingHeader]) {
    if (h) header.delete(h);
  }
  if (req.method === "GET") return { answer: r };
  return { request: { ...req, header, body: failing(r) }, refused: r };
}

/**
 * Connect-Timeout-Ms or grpc-timeout: refused when it does not parse,
 * clamped to MAX_DEADLINE_MS when longer.
 */
function clampDeadline(header: Headers, kind: "grpc" | "connect"): Rejection | undefined {
  const name = kind === "grpc" ? "grpc-timeout" : "connect-timeout-ms";
  const value = header.get(name);
  if (value === null) return undefined;
  let ms: number;
  if (kind === "connect") {
    if (!/^\d{1,10}$/.test(value)) return badDeadline(name, value, "milliseconds, e.g. 5000");
    ms = Number(value);
  } else {
    const m = /^(\d{1,8})([HMSmun])$/.exec(value);
    if (!m)
      return badDeadline(name, value, 'at most 8 digits and a unit (H, M, S, m, u, n), e.g. "5S"');
    const unit = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000001 }[
      m[2] as "H" | "M" | "S" | "m" | "u" | "n"
    ];
    ms = Number(m[1]) * unit;
  }
  if (ms > MAX_DEADLINE_MS) {
    header.set(
      name,
      kind === "connect" ? String(MAX_DEADLINE_MS) : `${Math.floor(MAX_DEADLINE_MS / 60_000)}M`,
    );
  }
  return undefined;
}

/**
 * A unary call answers DEADLINE_EXCEEDED once its deadline passes, even
 * while its handler is still at work: connect-node aborts the call's signal
 * with DeadlineExceeded at the deadline, but sends whatever the handler
 * answers, however late, unless the handler itself observes the signal.
 * Likewise a call its HTTP/2 caller cancels (as grpc-js does at its own
 * deadline, which can reach us before ours passes) ends CANCELLED at once.
 * The handler is not stopped: a write under way may still commit (retry it
 * with the same idempotency key to learn its outcome). Inside the
 * observers, so that metrics, traces and the request log see the code the
 * caller gets. Streams (WatchEvents, Health/Watch) end on the signal
 * themselves. A call without a deadline is not raced (listening on its
 * signal costs every call some microseconds): if its caller cancels it, it
 * ends CANCELLED when its handler returns, an answer nobody is waiting for.
 */
const deadlineInterceptor: Interceptor = (next) => async (req) => {
  if (req.stream) return next(req);
  const signal = req.signal;
  if (endsTheCall(signal)) throw signal.reason;
  const answer = next(req);
  const res = await (hasDeadline(req.header) ? raceTheCall(answer, signal) : answer);
  // The deadline may have passed while the call kept the event loop busy.
  if (endsTheCall(signal)) throw signal.reason;
  return res;
};

/** Whether the caller asked for a deadline, in either protocol's header. */
function hasDeadline(header: Headers): boolean {
  return header.has("grpc-timeout") || header.has("connect-timeout-ms");
}

/** The call's answer, or its signal's reason as soon as that ends the call. */
async function raceTheCall<T>(answer: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: (() => void) | undefined;
  const ended = new Promise<never>((_, reject) => {
    onAbort = () => {
      if (endsTheCall(signal)) reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    return await Promise.race([answer, ended]);
  } catch (err) {
    // How the handler ends after the call's answer: nobody hears it.
    answer.catch((late: unknown) => log.debug("rpc ended after its answer", { err: late }));
    throw err;
  } finally {
    if (onAbort) signal.removeEventListener("abort", onAbort);
  }
}

/** The call's signal aborted for its deadline, or for its caller's cancel or reset (not for shutdown). */
function endsTheCall(signal: AbortSignal): boolean {
  const reason: unknown = signal.aborted ? signal.reason : undefined;
  return (
    reason instanceof ConnectError &&
    (reason.code === Code.DeadlineExceeded ||
      reason.code === Code.Canceled ||
      callerWentAway(reason))
  );
}

function badDeadline(name: string, value: string, expected: string): Rejection {
  return new Rejection(
    "MALFORMED_REQUEST",
    `${name} "${clipText(value, 40)}" is not a deadline: expected ${expected}`,
  );
}

/** A Connect GET: the message, its encoding and compression are in the query. */
function checkGet(url: URL, method: DescMethod, max: number): Rejection | undefined {
  const query = url.searchParams;
  const encoding = query.get("encoding");
  if (encoding !== "json" && encoding !== "proto") {
    return new Rejection(
      "MALFORMED_REQUEST",
      "a Connect GET needs encoding=json (or encoding=proto) and message=<the request>, e.g. ?encoding=json&message={}",
    );
  }
  const compression = query.get("compression");
  if (compression !== null && compression !== "identity" && compression !== "gzip") {
    return new Rejection(
      "MALFORMED_REQUEST",
      `compression "${clipText(compression, 40)}" is not supported: use gzip or identity`,
    );
  }
  const text = query.get("message");
  if (text === null) {
    return new Rejection(
      "MALFORMED_REQUEST",
      "a Connect GET needs message=<the request> beside its encoding, e.g. ?encoding=json&message={}",
    );
  }
  if (text.length > max * 2) return tooLarge(max);
  let bytes: Uint8Array;
  if (query.get("base64") === "1") {
    if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) {
      return new Rejection("MALFORMED_REQUEST", "message is not valid base64 (base64=1)");
    }
    try {
      bytes = base64Decode(text);
    } catch {
      return new Rejection("MALFORMED_REQUEST", "message is not valid base64 (base64=1)");
    }
  } else {
    // URLSearchParams reads percent-escapes that are not UTF-8 as U+FFFD:
    // a replacement character may stand for bytes the caller sent.
    if (text.includes("\uFFFD") && !isUtf8Query(url.search)) {
      return new Rejection(
        "MALFORMED_REQUEST",
        "the query is not valid UTF-8: percent-encode the UTF-8 bytes of the message, or send it in base64 (base64=1)",
      );
    }
    bytes = new TextEncoder().encode(text);
  }
  const decompressed = compression === "gzip" ? gunzip(bytes, max) : bytes;
  if (decompressed instanceof Rejection) return decompressed;
  const parsed = decode(method, encoding === "proto", decompressed);
  return parsed instanceof Rejection ? parsed : undefined;
}

/** Whether a URL's query (`?…`, ASCII) decodes to UTF-8 once its percent-escapes are undone. */
function isUtf8Query(search: string): boolean {
  try {
    // decodeURIComponent throws on escapes that are not UTF-8, and on a %
    // that starts no escape, which URLSearchParams keeps as it is: escaped first.
    decodeURIComponent(search.replace(/%(?![0-9A-Fa-f]{2})/g, "%25"));
    return true;
  } catch {
    return false;
  }
}

/** The whole body, refused past `max` bytes of message (`framing` bytes more are the envelope's). */
async function readAll(
  body: AsyncIterable<Uint8Array>,
  max: number,
  framing = 0,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.byteLength;
    if (size > max + framing) throw tooLarge(max);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const ENVELOPE_HEADER_BYTES = 5;

/**
 * What is wrong with a whole enveloped body that must hold exactly one
 * message, if anything: see envelopeProblem, plus a body cut short or with
 * more or fewer than one envelope.
 */
function oneEnvelopeProblem(
  bytes: Uint8Array,
  method: DescMethod,
  binary: boolean,
  gzip: boolean,
  max: number,
): Rejection | undefined {
  if (bytes.length < ENVELOPE_HEADER_BYTES) {
    return bytes.length === 0
      ? malformed(`${method.name} takes one request message, got none`)
      : malformed("the body ends inside a message envelope (truncated)");
  }
  const flags = bytes[0] as number;
  const length = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).readUInt32BE(1);
  if (length > max) return tooLarge(max);
  const end = ENVELOPE_HEADER_BYTES + length;
  if (bytes.length < end) return malformed("the body ends inside a message envelope (truncated)");
  const problem = envelopeProblem(
    flags,
    bytes.subarray(ENVELOPE_HEADER_BYTES, end),
    method,
    binary,
    gzip,
    max,
  );
  if (problem) return problem;
  if (bytes.length > end) {
    return malformed(`${method.name} takes exactly one request message, got more`);
  }
  return undefined;
}

/**
 * What is wrong with one enveloped message, if anything: a flag other than
 * compression, compression without a declared encoding, or a message that
 * does not decompress or decode.
 */
function envelopeProblem(
  flags: number,
  data: Uint8Array,
  method: DescMethod,
  binary: boolean,
  gzip: boolean,
  max: number,
): Rejection | undefined {
  if ((flags & ~1) !== 0) {
    return malformed(`envelope flag 0x${flags.toString(16)} is not allowed in a request`);
  }
  let message = data;
  if (flags & 1) {
    if (!gzip) {
      return malformed(
        "the message is flagged compressed but the request declares no encoding (send grpc-encoding: gzip, or an uncompressed message)",
      );
    }
    const inflated = gunzip(data, max);
    if (inflated instanceof Rejection) return inflated;
    message = inflated;
  }
  const parsed = decode(method, binary, message);
  return parsed instanceof Rejection ? parsed : undefined;
}

const malformed = (text: string) => new Rejection("MALFORMED_REQUEST", text);

/**
 * The enveloped body of a client or bidi stream (reflection), passed on
 * envelope by envelope once each has been checked (envelopeProblem, and a
 * length within `max`): its messages are read inside the call, so a bad one
 * fails the call where the interceptors see it.
 */
async function* checkedEnvelopes(
  body: AsyncIterable<Uint8Array>,
  method: DescMethod,
  binary: boolean,
  gzip: boolean,
  max: number,
): AsyncIterable<Uint8Array> {
  let buffer = Buffer.alloc(0);
  for await (const chunk of body) {
    buffer = buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([buffer, chunk]);
    while (buffer.length >= ENVELOPE_HEADER_BYTES) {
      const flags = buffer[0] as number;
      const length = buffer.readUInt32BE(1);
      if (length > max) throw connectErrorOf(tooLarge(max));
      const end = ENVELOPE_HEADER_BYTES + length;
      if (buffer.length < end) break;
      const problem = envelopeProblem(
        flags,
        buffer.subarray(ENVELOPE_HEADER_BYTES, end),
        method,
        binary,
        gzip,
        max,
      );
      if (problem) throw connectErrorOf(problem);
      yield buffer.subarray(0, end);
      buffer = buffer.subarray(end);
    }
  }
  if (buffer.length > 0) {
    throw connectErrorOf(malformed("the body ends inside a message envelope (truncated)"));
  }
}

function gunzip(bytes: Uint8Array, max: number): Uint8Array | Rejection {
  try {
    return gunzipSync(bytes, { maxOutputLength: max });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") return tooLarge(max);
    return new Rejection("MALFORMED_REQUEST", "the body is not valid gzip data");
  }
}

/** Decodes one request message the way the framework will; a Rejection if it cannot. */
function decode(method: DescMethod, binary: boolean, bytes: Uint8Array): JsonValue | Rejection {
  if (binary) {
    try {
      fromBinary(method.input, bytes);
      return null;
    } catch (err) {
      return new Rejection(
        "MALFORMED_REQUEST",
        `request is not a valid binary ${method.input.typeName}: ${clipText(messageOf(err), 200)}`,
      );
    }
  }
  // JSON text is UTF-8 (RFC 8259); decoding it leniently would hand the
  // handler U+FFFD for what was sent, and store it (an attendee's name).
  // Binary strings need no such check: protobuf-es refuses bytes that are
  // not UTF-8 in a proto3 string field.
  if (!isUtf8(bytes)) {
    return new Rejection(
      "MALFORMED_REQUEST",
      "request is not valid UTF-8: JSON text must be UTF-8 (RFC 8259)",
    );
  }
  let json: JsonValue;
  const text = Buffer.from(bytes).toString("utf8");
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (err) {
    return new Rejection(
      "MALFORMED_REQUEST",
      `request body is not valid JSON: ${clipText(messageOf(err), 200)}`,
    );
  }
  try {
    fromJson(method.input, json);
  } catch (err) {
    return explainJsonError(method.input, json, err);
  }
  return rolledOverTimestamp(method.input, text, json) ?? json;
}

function messageOf(err: unknown): string {
  return err instanceof RangeError && /call stack/i.test(err.message)
    ? "nested too deeply"
    : err instanceof Error
      ? err.message
      : String(err);
}

function tooLarge(max: number): Rejection {
  return new Rejection("REQUEST_TOO_LARGE", `request body exceeds the limit of ${max} bytes`);
}

function unsupportedContentType(contentType: string, method: DescMethod): Rejection {
  const sent = contentType ? `Content-Type "${clipText(contentType, 80)}"` : "no Content-Type";
  const watchHint =
    method.methodKind === "server_streaming" && /^application\/json/i.test(contentType.trim());
  const message = watchHint
    ? `${sent} cannot call ${method.parent.typeName}/${method.name}. ${SSE_HINT}`
    : /^application\/grpc-web-text/i.test(contentType.trim())
      ? `${sent}: gRPC-Web's text mode is not served; use its binary mode (grpc-web's mode=grpcweb, Content-Type application/grpc-web+proto) or Connect`
      : `${sent} is not a protocol this server speaks: send Content-Type: application/json with a JSON body (Connect), or use a Connect, gRPC or gRPC-Web client`;
  return new Rejection("UNSUPPORTED_CONTENT_TYPE", message, {
    metadata: watchHint ? SSE_METADATA : { expected_content_type: "application/json" },
  });
}

/**
 * A gRPC answer whose `grpc-message` is percent-encoded as the gRPC spec
 * asks: only bytes outside printable ASCII, and `%`. connect-es encodes it
 * with encodeURIComponent (`:` as `%3A`, a space as `%20`), and @grpc/grpc-js,
 * the client outside backends use, decodes with decodeURI, which leaves the
 * escapes of reserved characters as they are: its callers read "invalid
 * request%3A name%3A …". Every decoder reads the spec's form. The headers and
 * trailers are read as the framework writes them (the trailers once the body
 * has ended), so they are fixed as they are read; a Connect answer has no
 * `grpc-message` and passes unchanged.
 */
function withSpecGrpcMessage(r: UniversalServerResponse): UniversalServerResponse {
  return {
    status: r.status,
    body: r.body,
    get header() {
      return r.header && respecGrpcMessage(r.header);
    },
    get trailer() {
      return r.trailer && respecGrpcMessage(r.trailer);
    },
  };
}

/** Rewrites a `grpc-message` field in place to the spec's percent-encoding (see withSpecGrpcMessage). */
function respecGrpcMessage(fields: Headers): Headers {
  const encoded = fields.get("grpc-message");
  if (encoded?.includes("%")) {
    let text: string;
    try {
      text = decodeURIComponent(encoded);
    } catch {
      return fields;
    }
    // encodeURIComponent's escapes of printable ASCII other than % go back to the characters.
    const plain = encodeURIComponent(text).replace(
      /%(2[0-46-9A-F]|[3-6][0-9A-F]|7[0-9A-E])/g,
      (e) => String.fromCharCode(Number.parseInt(e.slice(1), 16)),
    );
    fields.set("grpc-message", plain);
  }
  return fields;
}

/**
 * The answer to a path that names no RPC, METHOD_NOT_FOUND in the caller's
 * protocol: gRPC's trailers-only answer (HTTP 200, the status in the
 * headers), gRPC-Web's trailer frame, else a Connect JSON error with 404.
 */
function writeNoSuchMethod(req: NodeRequest, res: NodeResponse, path: string): void {
  const r = new Rejection(
    "METHOD_NOT_FOUND",
    `no RPC at ${clipText(path, 200)}: see /openapi.json, or list services with gRPC reflection`,
  );
  const contentType = req.headers["content-type"] ?? "";
  const protocol = protocolOf(contentType);
  if (protocol === "connect") {
    writeConnectError(res, r, 404);
    return;
  }
  const status = respecGrpcMessage(setTrailerStatus(new Headers(), connectErrorOf(r)));
  if (protocol === "grpc") {
    // Headers and no body: Node sends them as the stream's only frame.
    res.statusCode = 200;
    res.setHeader("content-type", contentType);
    for (const [name, value] of status) res.setHeader(name, value);
    res.end();
    return;
  }
  const trailer = encodeEnvelope(trailerFlag, trailerSerialize(status));
  res.writeHead(200, {
    "content-type": contentType,
    "content-length": String(trailer.byteLength),
  });
  res.end(trailer);
}

/**
 * A Connect unary error answer, for what is refused before the framework
 * runs, and for the plain HTTP endpoints beside the RPCs (Server-Sent Events).
 */
export function writeConnectError(res: NodeResponse, r: Rejection, status?: number): void {
  const error = connectErrorOf(r);
  const body = errorToJsonBytes(error, undefined);
  res.writeHead(status ?? codeToHttpStatus(error.code), {
    "content-type": "application/json",
    "content-length": String(body.byteLength),
  });
  res.end(body);
}

/**
 * The raw HTTP/1.1 answer to what Node's parser refused before any request
 * existed (headers over 16 KiB, bytes that are not HTTP), as a Connect JSON
 * error, for the server's `clientError` event.
 */
export function rawHttpError(err: NodeJS.ErrnoException): string {
  const [status, text, r] =
    err.code === "HPE_HEADER_OVERFLOW"
      ? [
          431,
          "Request Header Fields Too Large",
          new Rejection(
            "REQUEST_TOO_LARGE",
            "the request line and headers exceed 16 KiB: shorten the headers (an Idempotency-Key is at most 255 characters), and send a large message as a POST body, not in a GET's URL",
          ),
        ]
      : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? [
            408,
            "Request Timeout",
            new Rejection("DEADLINE_EXCEEDED", "the request did not arrive whole in time"),
          ]
        : [
            400,
            "Bad Request",
            new Rejection("MALFORMED_REQUEST", "the request is not valid HTTP/1.1"),
          ];
  const body = Buffer.from(errorToJsonBytes(connectErrorOf(r), undefined));
  return `HTTP/1.1 ${status} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${body.byteLength}\r\nConnection: close\r\n\r\n${body.toString()}`;
}

/** What an interceptor wraps: the next step of a call. */
type AnyFn = Parameters<Interceptor>[0];

async function* noMessages(): AsyncIterable<never> {}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}

/** A body that fails when read, so Connect answers with our error in the caller's protocol. */
function failing(r: Rejection): AsyncIterable<Uint8Array> {
  return {
    [Symbol.asyncIterator]: () => ({
      next: () => Promise.reject(connectErrorOf(r)),
    }),
  };
}

/** HTTP/2 streams this server reset itself (cutOff), whose resets are not their callers'. */
const cutByServer = new WeakSet<object>();

/**
 * Drops a client that does not read: its connection (HTTP/1.1) or its
 * stream (HTTP/2, reset with ENHANCE_YOUR_CALM, which gRPC and Connect
 * clients read as ResourceExhausted).
 */
export function cutOff(res: NodeResponse): void {
  if ("stream" in res) {
    cutByServer.add(res.stream);
    res.stream.close(h2constants.NGHTTP2_ENHANCE_YOUR_CALM);
  } else res.destroy();
}

/**
 * Asks an HTTP/2 caller still sending when its answer is complete (a body
 * refused as too large, or for its Content-Type) to stop, with RST_STREAM
 * NO_ERROR, as RFC 9113 section 8.1 provides. Otherwise the body nobody
 * reads fills the stream's window and the sender waits on it, its stream
 * open, until the request timer cancels it. The reset waits for the
 * answer's last frame: Node's compatibility layer ends every answer with
 * trailers (empty ones for Connect), which it sends on "wantTrailers"; a
 * reset submitted on the next turn is queued behind them (one submitted
 * on "finish", before them, would overtake them and lose the status).
 */
function stopSenderAfterAnswer(req: Http2ServerRequest): void {
  const stream = req.stream;
  stream.once("wantTrailers", () => {
    // The usual call has sent all of its body by now: nothing to stop.
    if (req.complete) return;
    setImmediate(() => {
      if (!stream.closed && stream.state.remoteClose === 0) {
        stream.close(h2constants.NGHTTP2_NO_ERROR);
      }
    });
  });
}

/**
 * Once an HTTP/2 call's stream closes with a reset the caller sent, marks
 * the reason its signal aborted with (connect-node's reading of the reset's
 * code, set just before) as the caller's (callerReset): whatever the code,
 * the call then counts and logs as Canceled, not as a fault of the server.
 */
function markCallerResets(req: Http2ServerRequest, signal: AbortSignal): void {
  req.once("close", () => {
    const stream = req.stream;
    if (
      signal.aborted &&
      stream.rstCode !== h2constants.NGHTTP2_NO_ERROR &&
      !cutByServer.has(stream)
    )
      callerReset(signal.reason);
  });
}

/** Resolves true once `res` drains, false if it has not within `timeoutMs` or the stream ends. */
export function drained(
  res: NodeResponse,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<boolean> {
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      res.off("drain", onDrain);
      signal.removeEventListener("abort", onAbort);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(false), timeoutMs);
    res.once("drain", onDrain);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Cuts `res` off once a write, or its end, has waited `ms` for the caller to read.
 * connect-node waits for each write to drain; a caller that keeps its
 * connection open but stops reading would hold the stream (and its feed
 * subscription) until the server stops, as the generator behind it never
 * resumes to see how far behind it is.
 */
function cutOffWhenStalled(res: NodeResponse, ms: number): void {
  const closed = new AbortController();
  // A write the framework waits on that has not drained.
  let waiting = false;
  res.once("close", () => {
    closed.abort();
    // A response closed under a waiting write (its caller cancelled, reset
    // or disconnected, or it was cut off here) emits neither "drain" nor
    // "error", which connect-node's write waits for: the stream's generator
    // would stay suspended for good, its feed subscription and the page it
    // reads with it. The error fails that write, and connect-node throws it
    // into the generator, which ends and cleans up.
    if (waiting && res.listenerCount("error") > 0) {
      res.emit("error", new ConnectError("the caller closed the stream", Code.Canceled));
    }
  });
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  (res as { write: (...args: unknown[]) => boolean }).write = (...args) => {
    const flushed = write(...args);
    if (!flushed) {
      waiting = true;
      void drained(res, closed.signal, ms).then((ok) => {
        if (ok) waiting = false;
        else if (!closed.signal.aborted) cutOff(res);
      });
    }
    return flushed;
  };
  // The stream's end (its status in trailers, CONSUMER_TOO_SLOW say) queues
  // behind what the caller has not read, and holds the stream as long: it
  // gets as long to go out as a write does.
  const end = res.end.bind(res) as (...args: unknown[]) => NodeResponse;
  (res as { end: (...args: unknown[]) => NodeResponse }).end = (...args) => {
    const ended = end(...args);
    if (!closed.signal.aborted) {
      const timer = setTimeout(() => cutOff(res), ms);
      closed.signal.addEventListener("abort", () => clearTimeout(timer), { once: true });
    }
    return ended;
  };
}

import * as http2 from "node:http2";
import { create, type DescService, fromBinary } from "@bufbuild/protobuf";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcTransport,
  createGrpcWebTransport,
} from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { expect } from "vitest";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../gen/google/rpc/status_pb.js";
import { CreateTenantRequestSchema, TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { ADMIN_KEY } from "./server.js";

export type Protocol = "grpc" | "connect" | "grpc-web" | "connect-binary";

/** Sends `key` as the bearer token of every call. */
export function bearer(key: string | undefined): Interceptor {
  return (next) => (req) => {
    if (key !== undefined) req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}

/**
 * A typed Connect client for `service` on the given protocol (gRPC and
 * gRPC-Web over h2c, Connect over HTTP/1.1 in JSON, or in binary with
 * "connect-binary").
 */
export function clientFor<S extends DescService>(
  service: S,
  baseUrl: string,
  key: string | undefined,
  protocol: Protocol = "grpc",
): Client<S> {
  const interceptors = [bearer(key)];
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl, interceptors })
      : protocol === "grpc-web"
        ? createGrpcWebTransport({ baseUrl, httpVersion: "2", interceptors })
        : createConnectTransport({
            baseUrl,
            httpVersion: "1.1",
            useBinaryFormat: protocol === "connect-binary",
            interceptors,
          });
  return createClient(service, transport);
}

export type JsonReply = { status: number; body: Record<string, unknown>; headers: Headers };

/** A plain Connect JSON POST over HTTP/1.1, as curl would send it. */
export async function postJson(
  baseUrl: string,
  procedure: string,
  body: unknown,
  key?: string,
  headers: Record<string, string> = {},
): Promise<JsonReply> {
  const res = await fetch(`${baseUrl}/${procedure}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key === undefined ? {} : { authorization: `Bearer ${key}` }),
      ...headers,
    },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return {
    status: res.status,
    body: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    headers: res.headers,
  };
}

/** The `reason` of the ErrorInfo detail in a Connect JSON error body. */
export function jsonReason(reply: JsonReply): string | undefined {
  const details = (reply.body.details ?? []) as { type: string; debug?: { reason?: string } }[];
  return details.find((d) => d.type === "google.rpc.ErrorInfo")?.debug?.reason;
}

/** Awaits `call`, expecting a Connect error with this code and reason; returns the error. */
export async function rejected(
  call: Promise<unknown>,
  code: Code,
  reason: string,
): Promise<ConnectError> {
  let error: unknown;
  try {
    await call;
  } catch (err) {
    error = err;
  }
  expect(error, `expected ${Code[code]} ${reason}`).toBeInstanceOf(ConnectError);
  const ce = error as ConnectError;
  expect({ code: Code[ce.code], reason: ce.findDetails(ErrorInfoSchema)[0]?.reason }).toEqual({
    code: Code[code],
    reason,
  });
  return ce;
}

export function fieldViolations(err: ConnectError): string[] {
  return err.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations.map((v) => v.field));
}

/** Creates a tenant through the operator key and returns its all-scopes key. */
export async function newTenant(
  baseUrl: string,
  name = `t-${Math.random().toString(36).slice(2)}`,
) {
  const tenants = clientFor(TenantService, baseUrl, ADMIN_KEY);
  const res = await tenants.createTenant(create(CreateTenantRequestSchema, { name }));
  return { tenantId: res.tenant?.id as string, key: res.apiKey };
}

export type GrpcJsClient = {
  /** Calls a unary method by its grpc-js name (lowerCamelCase), with the key's metadata. */
  call<T = Record<string, unknown>>(
    method: string,
    request: object,
    metadata?: grpc.Metadata,
    options?: grpc.CallOptions,
  ): Promise<T>;
  close(): void;
};

/**
 * A client for a Holdfast service the way an outside backend builds one:
 * @grpc/grpc-js with @grpc/proto-loader reading proto/ at run time.
 */
export function grpcJsClient(
  baseUrl: string,
  protoFile: string,
  serviceName: string,
  key: string,
): GrpcJsClient {
  const definition = protoLoader.loadSync(protoFile, {
    includeDirs: ["proto"],
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition) as unknown as {
    holdfast: { v1: Record<string, grpc.ServiceClientConstructor> };
  };
  const Ctor = pkg.holdfast.v1[serviceName] as grpc.ServiceClientConstructor;
  const client = new Ctor(new URL(baseUrl).host, grpc.credentials.createInsecure());
  const auth = new grpc.Metadata();
  auth.set("authorization", `Bearer ${key}`);
  return {
    call<T>(
      method: string,
      request: object,
      extra?: grpc.Metadata,
      options: grpc.CallOptions = {},
    ): Promise<T> {
      const metadata = auth.clone();
      if (extra) metadata.merge(extra);
      const fn = (client as unknown as Record<string, (...args: unknown[]) => void>)[method];
      if (typeof fn !== "function") throw new Error(`no method ${method} on ${serviceName}`);
      return new Promise((resolve, reject) => {
        fn.call(client, request, metadata, options, (err: grpc.ServiceError | null, res: T) =>
          err ? reject(err) : resolve(res),
        );
      });
    },
    close: () => client.close(),
  };
}

/** The google.rpc.Status a grpc-js error carries in its grpc-status-details-bin trailer. */
export function grpcJsStatus(err: grpc.ServiceError) {
  const bin = err.metadata.get("grpc-status-details-bin")[0];
  return bin instanceof Buffer ? fromBinary(StatusSchema, bin) : undefined;
}

/** The ErrorInfo of a grpc-js error (grpcJsStatus). */
export function grpcJsErrorInfo(err: grpc.ServiceError) {
  const info = grpcJsStatus(err)?.details.find((d) => d.typeUrl.endsWith("google.rpc.ErrorInfo"));
  return info ? fromBinary(ErrorInfoSchema, info.value) : undefined;
}

/** The field violations of a grpc-js error's google.rpc.BadRequest (grpcJsStatus). */
export function grpcJsViolations(err: grpc.ServiceError) {
  return (grpcJsStatus(err)?.details ?? [])
    .filter((d) => d.typeUrl.endsWith("google.rpc.BadRequest"))
    .flatMap((d) => fromBinary(BadRequestSchema, d.value).fieldViolations);
}

export function grpcJsReason(err: grpc.ServiceError): string | undefined {
  return grpcJsErrorInfo(err)?.reason;
}

/** What a raw call got back, whatever its protocol: HTTP status, Connect/gRPC code, reason, bytes. */
export type RawReply = {
  status: number;
  /** The gRPC status code (Connect's code string for Connect unary errors). */
  code: string;
  reason: string | undefined;
  message: string;
  /** Every byte of the answer: headers, body and trailers. */
  size: number;
};

/** One gRPC / gRPC-Web length-prefixed message. */
export function envelope(message: Uint8Array, flags = 0): Uint8Array {
  const out = Buffer.alloc(5 + message.byteLength);
  out[0] = flags;
  out.writeUInt32BE(message.byteLength, 1);
  out.set(message, 5);
  return out;
}

const GRPC_CODE_NAMES: Record<string, string> = {
  "0": "OK",
  ...Object.fromEntries(
    Object.entries(Code)
      .filter(([, v]) => typeof v === "number")
      .map(([k, v]) => [String(v), k]),
  ),
};

/** The ErrorInfo reason in a grpc-status-details-bin value, if any. */
export function reasonOfStatusBin(bin: string | undefined): string | undefined {
  if (!bin) return undefined;
  const status = fromBinary(StatusSchema, Buffer.from(bin, "base64"));
  const info = status.details.find((d) => d.typeUrl.endsWith("google.rpc.ErrorInfo"));
  return info ? fromBinary(ErrorInfoSchema, info.value).reason : undefined;
}

function headerSize(h: Record<string, unknown>): number {
  return Object.entries(h).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);
}

/**
 * A raw gRPC call over h2c, with any body and headers (as a client of
 * another language could send): for what typed clients cannot send.
 */
export async function rawGrpc(
  baseUrl: string,
  procedure: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawReply> {
  // Node's own HTTP/2 session refuses to queue more than maxSessionMemory
  // (10 MB by default) of outbound data and resets the stream itself
  // (NGHTTP2_ENHANCE_YOUR_CALM): room for the largest bodies tests send.
  const session = http2.connect(baseUrl, { maxSessionMemory: 64 });
  try {
    return await new Promise<RawReply>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({
        ":method": "POST",
        ":path": `/${procedure}`,
        "content-type": "application/grpc+proto",
        te: "trailers",
        ...headers,
      });
      let status = 0;
      let size = 0;
      let head: Record<string, unknown> = {};
      req.on("response", (h) => {
        status = Number(h[":status"]);
        head = h;
        size += headerSize(h);
      });
      req.on("data", (chunk: Buffer) => {
        size += chunk.byteLength;
      });
      req.on("trailers", (t) => {
        trailers = true;
        head = { ...head, ...t };
        size += headerSize(t);
      });
      let trailers = false;
      const done = () =>
        resolve({
          status,
          code: GRPC_CODE_NAMES[String(head["grpc-status"])] ?? String(head["grpc-status"]),
          reason: reasonOfStatusBin(head["grpc-status-details-bin"] as string | undefined),
          message: decodeURIComponent(String(head["grpc-message"] ?? "")),
          size,
        });
      req.on("end", done);
      // A server that answers before reading a large body resets the
      // stream after its trailers: the answer is still the trailers.
      req.on("error", (err) => (trailers ? done() : reject(err)));
      req.end(body);
    });
  } finally {
    session.close();
  }
}

/** A raw gRPC-Web call over HTTP/1.1, as a browser's fetch would make it. */
export async function rawGrpcWeb(
  baseUrl: string,
  procedure: string,
  body: Uint8Array,
  headers: Record<string, string> = {},
): Promise<RawReply> {
  const res = await fetch(`${baseUrl}/${procedure}`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+proto", ...headers },
    body,
  });
  const bytes = Buffer.from(await res.arrayBuffer());
  const fields: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    fields[k] = v;
  });
  // The trailers are the last envelope (flag 0x80), as HTTP header lines.
  let at = 0;
  while (at + 5 <= bytes.length) {
    const len = bytes.readUInt32BE(at + 1);
    if (bytes[at] === 0x80) {
      for (const line of bytes
        .subarray(at + 5, at + 5 + len)
        .toString()
        .split("\r\n")) {
        const i = line.indexOf(":");
        if (i > 0) fields[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
      }
    }
    at += 5 + len;
  }
  return {
    status: res.status,
    code: GRPC_CODE_NAMES[fields["grpc-status"] ?? ""] ?? String(fields["grpc-status"]),
    reason: reasonOfStatusBin(fields["grpc-status-details-bin"]),
    message: decodeURIComponent(fields["grpc-message"] ?? ""),
    size: bytes.length + headerSize(fields),
  };
}

/** A raw Connect unary call (POST, or GET when `body` is undefined and `query` given). */
export async function rawConnect(
  baseUrl: string,
  procedure: string,
  body: Uint8Array | string | undefined,
  headers: Record<string, string> = {},
  query = "",
): Promise<RawReply> {
  const res = await fetch(`${baseUrl}/${procedure}${query}`, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body,
  });
  const text = await res.text();
  let json: {
    code?: string;
    message?: string;
    details?: { type: string; debug?: { reason?: string } }[];
  } = {};
  try {
    json = JSON.parse(text);
  } catch {
    // a successful binary answer
  }
  const fields: Record<string, string> = {};
  res.headers.forEach((v, k) => {
    fields[k] = v;
  });
  return {
    status: res.status,
    code: res.status === 200 ? "OK" : (json.code ?? "?"),
    reason: json.details?.find((d) => d.type === "google.rpc.ErrorInfo")?.debug?.reason,
    message: json.message ?? "",
    size: Buffer.byteLength(text) + headerSize(fields),
  };
}

/** Call options sending an Idempotency-Key and recording whether the answer was a replay. */
export function keyed(key: string) {
  const seen = { replayed: false };
  return {
    seen,
    options: {
      headers: { "Idempotency-Key": key },
      onHeader: (h: Headers) => {
        seen.replayed = h.get("idempotent-replayed") === "true";
      },
    },
  };
}

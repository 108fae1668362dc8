import { Code, type Interceptor } from "@connectrpc/connect";
import { codeToString } from "@connectrpc/connect/protocol-connect";
import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  trace,
} from "@opentelemetry/api";
import { TRACER_NAME } from "../tracing.js";
import { callerIn } from "./auth.js";
import { connectCodeOf, observing, protocolOf, reasonOf } from "./observe.js";

/**
 * RPC attribute names from OpenTelemetry's semantic conventions. They are
 * still "incubating" there, and the conventions ask users to copy such
 * names rather than import them, so a renaming upstream changes nothing here.
 */
const RPC_SYSTEM = "rpc.system";
const RPC_SERVICE = "rpc.service";
const RPC_METHOD = "rpc.method";
const RPC_GRPC_STATUS_CODE = "rpc.grpc.status_code";
const RPC_CONNECT_RPC_ERROR_CODE = "rpc.connect_rpc.error_code";
const RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code";
const ERROR_TYPE = "error.type";
export const TENANT_ATTRIBUTE = "holdfast.tenant.id";
export const REASON_ATTRIBUTE = "holdfast.reason";

/** rpc.system by protocol; gRPC-Web has no value of its own in the conventions. */
const SYSTEMS: Record<string, string> = {
  grpc: "grpc",
  "grpc-web": "grpc_web",
  connect: "connect_rpc",
};

/** Codes that are the server's fault: the span's status is ERROR (others are the caller's). */
const SERVER_FAULT = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/** Request headers (gRPC metadata are HTTP/2 headers too) as a propagator reads them. */
const HEADERS: TextMapGetter<Headers> = {
  get: (headers, key) => headers.get(key) ?? undefined,
  keys: (headers) => [...headers.keys()],
};

/**
 * One SERVER span per RPC, continuing the caller's W3C traceparent (an
 * HTTP header, or gRPC metadata), named `service/method`, with rpc.system
 * (grpc, grpc_web or connect_rpc), rpc.service, rpc.method, the status
 * code, the stable reason of a refusal and the caller's tenant. The span
 * is the active one while the call runs, so Postgres queries and log
 * lines made for the call belong to it; a stream's span ends with the
 * stream. Installed only when tracing is on (src/tracing.ts); put it
 * outside the request log, whose lines then carry its ids, and outside
 * the error interceptor, so it sees the code the caller gets.
 */
export const tracingInterceptor: Interceptor = (next) => {
  // Ends the span active when the call started, once the call is over.
  const observed = observing((req) => {
    const span = trace.getActiveSpan();
    return (err) => {
      if (!span) return;
      const code = connectCodeOf(err);
      const attributes: Attributes = {
        // As gRPC names its codes: OK, NOT_FOUND, ...
        [RPC_RESPONSE_STATUS_CODE]: code === undefined ? "OK" : codeToString(code).toUpperCase(),
      };
      if (req.header.get("content-type")?.startsWith("application/grpc")) {
        attributes[RPC_GRPC_STATUS_CODE] = code ?? 0;
      } else if (code !== undefined) {
        attributes[RPC_CONNECT_RPC_ERROR_CODE] = codeToString(code);
      }
      if (code !== undefined) {
        attributes[ERROR_TYPE] = codeToString(code);
        attributes[REASON_ATTRIBUTE] = reasonOf(err);
      }
      const tenant = callerIn(req.contextValues)?.tenantId;
      if (tenant) attributes[TENANT_ATTRIBUTE] = tenant;
      span.setAttributes(attributes);
      if (code !== undefined && SERVER_FAULT.has(code)) {
        span.setStatus({ code: SpanStatusCode.ERROR, message: codeToString(code) });
      }
      span.end();
    };
  })(next);
  const tracer = trace.getTracer(TRACER_NAME);
  return async (req) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.header, HEADERS);
    const span = tracer.startSpan(
      `${req.service.typeName}/${req.method.name}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          [RPC_SYSTEM]: SYSTEMS[protocolOf(req.header.get("content-type"))] ?? "connect_rpc",
          [RPC_SERVICE]: req.service.typeName,
          [RPC_METHOD]: req.method.name,
        },
      },
      parent,
    );
    const active = trace.setSpan(parent, span);
    const res = await context.with(active, () => observed(req));
    return res.stream ? { ...res, message: within(active, res.message) } : res;
  };
};

/**
 * A stream whose messages are produced in `ctx`: the framework pulls them
 * outside the call's context, and the queries and the log line of a
 * stream belong to its span as much as those of a unary call.
 */
function within<T>(ctx: Context, messages: AsyncIterable<T>): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator]() {
      const it = messages[Symbol.asyncIterator]();
      return {
        next: (...args: [] | [unknown]) => context.with(ctx, () => it.next(...args)),
        return: (value?: unknown) =>
          context.with(ctx, () =>
            it.return
              ? it.return(value as never)
              : Promise.resolve({ done: true as const, value: value as never }),
          ),
        throw: (e?: unknown) =>
          context.with(ctx, () => (it.throw ? it.throw(e) : Promise.reject(e))),
      };
    },
  };
}

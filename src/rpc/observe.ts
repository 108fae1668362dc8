import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";

/** The protocol of a call, from its content type: grpc, grpc-web or connect. */
export function protocolOf(contentType: string | null): string {
  if (!contentType) return "connect";
  if (contentType.startsWith("application/grpc-web")) return "grpc-web";
  if (contentType.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/** The Connect code the caller gets: undefined for success; anything but a ConnectError is Internal. */
export function connectCodeOf(err: unknown): Code | undefined {
  if (err === undefined) return undefined;
  return err instanceof ConnectError ? err.code : Code.Internal;
}

/** "OK" for success, else the Connect code's name (NotFound, Aborted, ...). */
export function codeOf(err: unknown): string {
  const code = connectCodeOf(err);
  return code === undefined ? "OK" : (Code[code] ?? "Unknown");
}

/** Codes of calls that failed by the server's fault, whose log line shows the error. */
const SERVER_FAULT = new Set(["Internal", "Unknown", "Unavailable"]);

/** Whether a call failed by the server's fault (Internal, Unknown, Unavailable). */
export function serverAtFault(err: unknown): boolean {
  return SERVER_FAULT.has(codeOf(err));
}

/** The stable reason an error carries in its ErrorInfo detail. */
export function reasonOf(err: unknown): string {
  if (!(err instanceof ConnectError)) return "INTERNAL";
  return err.findDetails(ErrorInfoSchema)[0]?.reason || "UNKNOWN";
}

type Request = Parameters<Parameters<Interceptor>[0]>[0];

/** The call's request id, once the request log has given it one (see request-log.ts). */
export const requestIdKey = createContextKey<string | undefined>(undefined, {
  description: "the request id of the call's log line",
});

/**
 * Where a call is, for logs: its procedure (service/method, never the URL,
 * whose query holds a Connect GET's whole message) and its request id.
 */
export function callSite(req: Request): { procedure: string; requestId?: string } {
  const requestId = req.contextValues.get(requestIdKey);
  return {
    procedure: `${req.service.typeName}/${req.method.name}`,
    ...(requestId === undefined ? {} : { requestId }),
  };
}

/**
 * An interceptor that calls `finished(err)` once a call is over: when a
 * unary call answers, when a stream ends (err undefined on success).
 * `started` runs first and returns that callback.
 */
export function observing(started: (req: Request) => (err: unknown) => void): Interceptor {
  return (next) => async (req) => {
    const finished = started(req);
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      finished(err);
      throw err;
    }
    if (!res.stream) {
      finished(undefined);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        let failed: unknown;
        try {
          yield* messages;
        } catch (err) {
          failed = err;
          throw err;
        } finally {
          finished(failed);
        }
      })(),
    };
  };
}

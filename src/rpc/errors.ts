import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
  RetryInfoSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { rejectionFromDatabase } from "../db/errors.js";
import {
  bounded,
  clipText,
  type Reason,
  Rejection,
  type RejectionCode,
} from "../domain/rejection.js";
import { log } from "../log.js";
import { BOOKING_STATUS, localTimesOf, slotOf, timestampOfMs } from "./convert.js";
import { callSite } from "./observe.js";

export const ERROR_DOMAIN = "holdfast";

/** No error message is longer, whatever the request: answers stay bounded. */
const MAX_MESSAGE_CHARS = 2_000;

const CODE: Record<RejectionCode, Code> = {
  invalid_argument: Code.InvalidArgument,
  unauthenticated: Code.Unauthenticated,
  permission_denied: Code.PermissionDenied,
  not_found: Code.NotFound,
  already_exists: Code.AlreadyExists,
  aborted: Code.Aborted,
  failed_precondition: Code.FailedPrecondition,
  resource_exhausted: Code.ResourceExhausted,
  unimplemented: Code.Unimplemented,
  deadline_exceeded: Code.DeadlineExceeded,
  canceled: Code.Canceled,
  unavailable: Code.Unavailable,
  internal: Code.Internal,
};

/** Reasons for errors raised by the Connect framework itself, which carry none. */
const FRAMEWORK_REASON: Partial<Record<Code, Reason>> = {
  [Code.InvalidArgument]: "MALFORMED_REQUEST",
  [Code.ResourceExhausted]: "REQUEST_TOO_LARGE",
  [Code.Unimplemented]: "METHOD_NOT_FOUND",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.Canceled]: "CANCELLED",
  // connect-node's code for a caller that went away mid-call.
  [Code.Aborted]: "CANCELLED",
  [Code.Unavailable]: "UNAVAILABLE",
};

/** The reasons calls' signals aborted with because their HTTP/2 callers reset them: see callerReset. */
const resetsByCallers = new WeakSet<object>();

/**
 * Marks `reason`, the reason a call's signal aborted with, as its HTTP/2
 * caller's reset of the stream (see callerWentAway). connect-node reads the
 * reset's code as a Connect code: CANCEL as Canceled, but INTERNAL_ERROR
 * (what Node clients send when they exit, or destroy a stream with an
 * error) and PROTOCOL_ERROR as Internal, REFUSED_STREAM as Unavailable...;
 * whichever code the caller chose, the call ended because it left.
 */
export function callerReset(reason: unknown): void {
  if (typeof reason === "object" && reason !== null) resetsByCallers.add(reason);
}

/**
 * A call its caller closed before the end (a request body cut off, a server
 * stream read in part, then dropped): connect-node aborts the call's signal
 * with a bare AbortError, or with the Connect error of the HTTP/2 reset the
 * caller sent (marked by callerReset), Node's streams fail with
 * ERR_STREAM_PREMATURE_CLOSE, an HTTP/1.1 request body with "aborted", and
 * a write to a response whose connection closed with ERR_STREAM_DESTROYED
 * (ERR_HTTP2_STREAM_ERROR on an HTTP/2 stream reset, by the caller or by
 * the stall guard cutting off a caller that does not read). Nothing is
 * wrong on our side: such a call counts and logs as Canceled.
 */
export function callerWentAway(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  return (
    err.name === "AbortError" ||
    resetsByCallers.has(err) ||
    code === "ERR_STREAM_PREMATURE_CLOSE" ||
    code === "ERR_STREAM_DESTROYED" ||
    code === "ERR_HTTP2_STREAM_ERROR" ||
    (code === "ECONNRESET" && err.message === "aborted")
  );
}

/** A Connect error carrying the rejection's reason, field violations and conflicts. */
export function connectErrorOf(r: Rejection, cause?: unknown): ConnectError {
  const details = [
    {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, {
        reason: r.reason,
        domain: ERROR_DOMAIN,
        metadata: r.details.metadata ?? {},
      }),
    },
  ] as ConstructorParameters<typeof ConnectError>[3] & object[];
  if (r.details.fieldViolations?.length) {
    details.push({
      desc: BadRequestSchema,
      value: create(BadRequestSchema, {
        fieldViolations: bounded(r.details.fieldViolations).map((v) => ({
          field: v.field,
          description: v.description,
        })),
      }),
    });
  }
  if (r.details.retryDelayMs !== undefined) {
    const ms = Math.max(0, Math.ceil(r.details.retryDelayMs));
    details.push({
      desc: RetryInfoSchema,
      value: create(RetryInfoSchema, {
        retryDelay: { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 },
      }),
    });
  }
  const quota = r.reason === "LIMIT_REACHED" ? r.details.metadata : undefined;
  if (quota?.quota !== undefined) {
    // Kept in the ErrorInfo metadata, which stored outcomes keep too.
    details.push({
      desc: QuotaFailureSchema,
      value: create(QuotaFailureSchema, {
        violations: [
          {
            // A tenant's quota, or a bound per resource (overrides).
            subject: quota.resource_id ? `resource:${quota.resource_id}` : "tenant",
            quotaId: quota.quota,
            quotaValue: BigInt(quota.limit ?? "0"),
            description: `${quota.usage} in use of ${quota.limit}`,
          },
        ],
      }),
    });
  }
  if (r.details.conflicts || r.details.alternatives) {
    details.push({
      desc: SlotConflictSchema,
      value: create(SlotConflictSchema, {
        conflicts: (r.details.conflicts ?? []).map((c) => ({
          startTime: timestampOfMs(c.startMs),
          endTime: timestampOfMs(c.endMs),
          status: BOOKING_STATUS.valueOf(c.status),
          resourceId: c.resourceId,
          ...localTimesOf(c.startMs, c.endMs, c.timeZone),
        })),
        alternatives: (r.details.alternatives ?? []).map(slotOf),
      }),
    });
  }
  return new ConnectError(
    clipText(r.message, MAX_MESSAGE_CHARS),
    CODE[r.code],
    undefined,
    details,
    cause,
  );
}

/**
 * Every error leaving the server as a Connect error with a stable reason:
 * rejections keep theirs, database errors are mapped in one place, framework
 * errors get one from their code, and anything else becomes a bare Internal
 * error whose cause is logged but never sent.
 */
export function toConnectError(
  err: unknown,
  at?: { procedure: string; requestId?: string },
): ConnectError {
  if (err instanceof Rejection) return connectErrorOf(err);
  // Before a framework error's own code: a caller's reset may read as Internal.
  if (callerWentAway(err)) {
    return connectErrorOf(new Rejection("CANCELLED", "the caller closed the call"), err);
  }
  if (err instanceof ConnectError) {
    if (err.details.length > 0) return err;
    const reason = FRAMEWORK_REASON[err.code];
    if (reason) return connectErrorOf(new Rejection(reason, err.rawMessage), err);
  }
  const fromDb = rejectionFromDatabase(err);
  if (fromDb) {
    if (fromDb.reason === "UNAVAILABLE") log.warn("database unavailable", { ...at, err });
    return connectErrorOf(fromDb, err);
  }
  log.error("internal error", { ...at, err });
  // The cause stays on the server (the call's log line shows it), never sent.
  return connectErrorOf(new Rejection("INTERNAL", "internal error"), err);
}

export const errorInterceptor: Interceptor = (next) => async (req) => {
  try {
    const res = await next(req);
    if (!res.stream) return res;
    return { ...res, message: mapStreamErrors(res.message, callSite(req)) };
  } catch (err) {
    throw toConnectError(err, callSite(req));
  }
};

async function* mapStreamErrors<T>(
  messages: AsyncIterable<T>,
  at: ReturnType<typeof callSite>,
): AsyncIterable<T> {
  try {
    yield* messages;
  } catch (err) {
    throw toConnectError(err, at);
  }
}

import { type OfferedSlot, REASONS, type Reason, Rejection } from "../domain/rejection.js";
import type { StoredRejection } from "./idempotency.js";

/**
 * The one channel from SQL to a client: everything the database says is
 * turned into a domain Rejection here, and nowhere else.
 *
 * - A refusal the SQL functions decide (their `rejection()` JSON, stored as
 *   an idempotent outcome): `rejectionOfOutcome`. The reasons they may name
 *   are `DATABASE_REASONS` in src/domain/rejection.ts, checked against the
 *   function files by test/db/errors.test.ts.
 * - Something changed between the caller's checks and the write (SQLSTATEs
 *   HF001-HF003, raised by the write functions): `mustRetry`; the caller
 *   reads again and retries, and never shows these to a client.
 * - Any other Postgres error: `rejectionFromDatabase` by SQLSTATE. Anything
 *   not listed stays an internal error, and its message never reaches a
 *   client.
 */

/**
 * SQLSTATEs the write functions raise when something changed between the
 * caller's checks and the write, which rolled back: read again and retry.
 */
export const SQLSTATE_RETRY: ReadonlyMap<string, string> = new Map([
  ["HF001", "the service or a resource changed (catalog revision)"],
  ["HF002", "a concurrent reschedule moved the booking"],
  ["HF003", "a request with the same Idempotency-Key committed first; the retry replays it"],
  ["HF004", "the tenant came near a quota; the retry checks it alone (11_quotas.sql)"],
]);

/** A lock wait ran out of its lock_timeout (the statement was cancelled and its transaction aborted). */
export function isLockTimeout(err: unknown): boolean {
  return (err as { code?: string })?.code === SQLSTATE.lockNotAvailable;
}

export function mustRetry(err: unknown): boolean {
  return SQLSTATE_RETRY.has((err as { code?: string })?.code ?? "");
}

/** What a read that finds the cached service stale throws: HF001, as the writes do. */
export function serviceChanged(): Error {
  return Object.assign(new Error("the service changed while the request was checked"), {
    code: "HF001",
  });
}

/** A refusal the SQL functions decided (or one stored under an Idempotency-Key), as a Rejection. */
export function rejectionOfOutcome(e: StoredRejection, alternatives?: OfferedSlot[]): Rejection {
  const reason = (e.reason in REASONS ? e.reason : "INTERNAL") as Reason;
  return new Rejection(reason, e.message, {
    fieldViolations: e.fieldViolations,
    metadata: e.metadata,
    conflicts: e.conflicts?.map((c) => ({
      startMs: Date.parse(c.startTime),
      endMs: Date.parse(c.endTime),
      status: c.status,
      resourceId: c.resourceId ?? "",
      timeZone: c.timeZone ?? "",
    })),
    ...(alternatives && { alternatives }),
  });
}

/** Postgres errors by SQLSTATE. */
const SQLSTATE = {
  exclusionViolation: "23P01",
  uniqueViolation: "23505",
  foreignKeyViolation: "23503",
  serializationFailure: "40001",
  deadlockDetected: "40P01",
  lockNotAvailable: "55P03",
  queryCanceled: "57014",
  idleInTransactionTimeout: "25P03",
  transactionTimeout: "25P04",
  adminShutdown: "57P01",
  crashShutdown: "57P02",
  cannotConnectNow: "57P03",
  tooManyConnections: "53300",
} as const;

type PgError = Error & { code?: string; constraint?: string };

/** Connection-level failures from the driver, before any SQLSTATE exists. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "ENOTFOUND"]);

export function rejectionFromDatabase(err: unknown): Rejection | undefined {
  if (!(err instanceof Error)) return undefined;
  const code = (err as PgError).code;
  // A database error's code is a SQLSTATE or a driver's string; anything
  // else (a ConnectError's number) is not the database's.
  if (code !== undefined && typeof code !== "string") return undefined;
  if (code === undefined) {
    // "not queryable": the session was ended between two statements (see
    // createPool), and this is the next statement on it.
    if (
      /Connection terminated|timeout exceeded when trying to connect|not queryable/.test(
        err.message,
      )
    ) {
      return new Rejection("UNAVAILABLE", "the database is unreachable; retry shortly");
    }
    return undefined;
  }
  if (NETWORK_CODES.has(code) || code.startsWith("08")) {
    return new Rejection("UNAVAILABLE", "the database is unreachable; retry shortly");
  }
  // Class 22, data exception: a value Postgres will not store or compute
  // with (a NUL character in text or JSON, a number or date out of its
  // range). Validation catches the ones it knows; this catches the rest.
  if (code.startsWith("22")) {
    return new Rejection(
      "VALIDATION_ERROR",
      "a value in the request cannot be stored (a NUL character, or a number or date out of range)",
    );
  }
  // A change under the request that its caller retries (mustRetry), and
  // kept happening past the retries: nothing was written; the same request
  // can be sent again.
  if (SQLSTATE_RETRY.has(code)) {
    return new Rejection("UNAVAILABLE", "what the request read kept changing under it; retry");
  }
  switch (code) {
    // The exclusion constraint backs up the locked booking path: if it ever
    // fires, the answer is the same one the lock path would have given.
    case SQLSTATE.exclusionViolation:
      return new Rejection("SLOT_UNAVAILABLE", "the requested time is no longer available");
    // The time limits every pool connection carries (lock_timeout,
    // statement_timeout, idle_in_transaction_session_timeout): the work was
    // rolled back, so the same request can simply be sent again.
    case SQLSTATE.lockNotAvailable:
    case SQLSTATE.queryCanceled:
    case SQLSTATE.idleInTransactionTimeout:
    case SQLSTATE.transactionTimeout:
      return new Rejection(
        "UNAVAILABLE",
        "the database did not finish in time (a lock or statement time limit); retry shortly",
      );
    case SQLSTATE.serializationFailure:
    case SQLSTATE.deadlockDetected:
    case SQLSTATE.adminShutdown:
    case SQLSTATE.crashShutdown:
    case SQLSTATE.cannotConnectNow:
    case SQLSTATE.tooManyConnections:
      return new Rejection("UNAVAILABLE", "the database is busy; retry shortly");
    default:
      return undefined;
  }
}

export function isUniqueViolation(err: unknown, constraint?: string): boolean {
  const e = err as PgError;
  return (
    e?.code === SQLSTATE.uniqueViolation &&
    (constraint === undefined || e.constraint === constraint)
  );
}

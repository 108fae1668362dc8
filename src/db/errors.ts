import { Rejection } from "../domain/rejection.js";

/**
 * The one place that turns Postgres errors (SQLSTATE codes) into domain
 * rejections. Anything not listed stays an internal error, and its message
 * never reaches a client.
 */
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

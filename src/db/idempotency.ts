import type { JsonObject } from "@bufbuild/protobuf";
import type { Rejection } from "../domain/rejection.js";
import { isLockTimeout } from "./errors.js";
import type { Queryable } from "./pool.js";

/**
 * Idempotency keys, stored in the transaction that does the work, by the
 * SQL functions of src/db/functions/03_idempotency.sql: the booking
 * functions look a key up first and store their outcome with one insert at
 * the end of their single statement; the generic path below claims the key
 * at the start of an open transaction and finishes it at the end.
 */

/** What a mutation produced: its response as protobuf JSON, or a business rejection. */
export type Outcome = {
  response?: JsonObject;
  error?: StoredRejection;
  /** Set when this is the stored outcome of an earlier request with the same key. */
  replayed?: boolean;
};

export type StoredRejection = {
  reason: string;
  message: string;
  conflicts?: {
    startTime: string;
    endTime: string;
    status: string;
    /** Absent from outcomes stored before they carried them. */
    resourceId?: string;
    timeZone?: string;
  }[];
  fieldViolations?: { field: string; description: string }[];
  metadata?: Record<string, string>;
};

/**
 * The key a request came with, scoped to its tenant, the API key that sent
 * it (`Principal.keyId`) and the method, and the request's fingerprint.
 */
export type IdempotencyClaim = {
  tenantId: string;
  apiKeyId: string;
  method: string;
  key: string;
  hash: Buffer;
};

/**
 * Claims the key in the caller's open transaction; the stored outcome if it
 * was used before. A request with the same key still running is waited for
 * `waitMs` at most; past that, KeyInUse, and the transaction is aborted.
 */
export async function claimKey(
  tx: Queryable,
  c: IdempotencyClaim,
  waitMs: number,
): Promise<Outcome | undefined> {
  try {
    // The wait is a setting of the transaction, set before the claim runs
    // (a volatile subquery is evaluated first): see 03_idempotency.sql.
    const { rows } = await tx.query<{ outcome: Outcome | null }>(
      `SELECT claim_idempotency_key($1, $2, $3, $4, $5) AS outcome
         FROM (SELECT set_config('holdfast.claim_wait_ms', $6, true)) AS wait`,
      [c.tenantId, c.apiKeyId, c.method, c.key, c.hash, String(waitMs)],
    );
    return rows[0]?.outcome ?? undefined;
  } catch (err) {
    throw isLockTimeout(err) ? new KeyInUse() : err;
  }
}

/** A request with the same key (tenant, API key, method) is still running. */
export class KeyInUse extends Error {
  constructor() {
    super("a request with the same Idempotency-Key is still running");
  }
}

export async function finishKey(
  tx: Queryable,
  c: IdempotencyClaim,
  outcome: Outcome,
): Promise<void> {
  await tx.query("SELECT finish_idempotency_key($1, $2, $3, $4, $5::jsonb)", [
    c.tenantId,
    c.apiKeyId,
    c.method,
    c.key,
    outcome,
  ]);
}

/** The outcome stored for this key and request, if any (no claim is made). */
export async function storedOutcome(
  q: Queryable,
  c: IdempotencyClaim,
): Promise<Outcome | undefined> {
  const { rows } = await q.query<{ outcome: Outcome | null }>(
    "SELECT idempotent_replay($1, $2, $3, $4, $5) AS outcome",
    [c.tenantId, c.apiKeyId, c.method, c.key, c.hash],
  );
  return rows[0]?.outcome ?? undefined;
}

/**
 * Stores an outcome decided before any write (a rule's refusal) under the
 * key, in one statement. If the key already has an outcome, that one is
 * returned instead (replayed, or IDEMPOTENCY_KEY_REUSED); undefined when
 * this one was stored.
 */
export async function keepOutcome(
  q: Queryable,
  c: IdempotencyClaim,
  outcome: Outcome,
): Promise<Outcome | undefined> {
  const { rows } = await q.query<{ outcome: Outcome | null }>(
    "SELECT keep_idempotent_outcome($1, $2, $3, $4, $5, $6::jsonb, false) AS outcome",
    [c.tenantId, c.apiKeyId, c.method, c.key, c.hash, outcome],
  );
  return rows[0]?.outcome ?? undefined;
}

/** Keys older than a day are dead; drop them in batches. */
export async function pruneKeys(q: Queryable, limit: number): Promise<number> {
  const { rowCount } = await q.query(
    `DELETE FROM idempotency_keys WHERE ctid IN (
       SELECT ctid FROM idempotency_keys WHERE create_time < now() - interval '24 hours' LIMIT $1)`,
    [limit],
  );
  return rowCount ?? 0;
}

/**
 * Validation, auth, rate limit and internal errors are not stored: a retry
 * may succeed. A used-up quota is a business answer like a taken slot.
 */
export function isStoredRejection(r: Rejection): boolean {
  return (
    r.reason === "LIMIT_REACHED" ||
    r.code === "not_found" ||
    r.code === "already_exists" ||
    r.code === "aborted" ||
    r.code === "failed_precondition"
  );
}

export function outcomeOfRejection(r: Rejection): Outcome {
  const error: StoredRejection = { reason: r.reason, message: r.message };
  if (r.details.fieldViolations) error.fieldViolations = r.details.fieldViolations;
  if (r.details.metadata) error.metadata = r.details.metadata;
  return { error };
}

/**
 * For writes that check rules before their write: a rejection found
 * before the write gives way to an outcome already stored under the same
 * key, so a retry of a request that once succeeded replays that success
 * even if the rules would refuse it now. A business rejection is stored
 * under the key itself, as the generic path stores it, so a retry replays
 * it even if the rules would accept the request now.
 */
export async function keepOrReplay(
  q: Queryable,
  claim: IdempotencyClaim | undefined,
  rejection: Rejection,
): Promise<Outcome> {
  if (!claim) throw rejection;
  if (isStoredRejection(rejection)) {
    const outcome = outcomeOfRejection(rejection);
    return (await keepOutcome(q, claim, outcome)) ?? outcome;
  }
  const stored = await storedOutcome(q, claim);
  if (stored) return stored;
  throw rejection;
}

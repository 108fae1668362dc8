import type { JsonObject } from "@bufbuild/protobuf";
import type { Queryable } from "./pool.js";

/**
 * Idempotency keys, stored in the transaction that does the work. The
 * claim and finish steps are SQL functions (migration 0002) shared by the
 * booking functions, which call them inside their single statement, and by
 * the generic path below, which calls them inside an open transaction.
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
  conflicts?: { startTime: string; endTime: string; status: string }[];
  fieldViolations?: { field: string; description: string }[];
  metadata?: Record<string, string>;
};

/** The key a request came with, scoped to its tenant and method, and the request's fingerprint. */
export type IdempotencyClaim = { tenantId: string; method: string; key: string; hash: Buffer };

/** Claims the key in the caller's open transaction; the stored outcome if it was used before. */
export async function claimKey(tx: Queryable, c: IdempotencyClaim): Promise<Outcome | undefined> {
  const { rows } = await tx.query<{ outcome: Outcome | null }>(
    "SELECT claim_idempotency_key($1, $2, $3, $4) AS outcome",
    [c.tenantId, c.method, c.key, c.hash],
  );
  return rows[0]?.outcome ?? undefined;
}

export async function finishKey(
  tx: Queryable,
  c: IdempotencyClaim,
  outcome: Outcome,
): Promise<void> {
  await tx.query("SELECT finish_idempotency_key($1, $2, $3, $4::jsonb)", [
    c.tenantId,
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
  const { rows } = await q.query<{ outcome: Outcome | null; same: boolean }>(
    `SELECT outcome, request_hash = $4 AS same FROM idempotency_keys
     WHERE tenant_id = $1 AND method = $2 AND key = $3 AND create_time > now() - interval '24 hours'`,
    [c.tenantId, c.method, c.key, c.hash],
  );
  const row = rows[0];
  if (!row?.outcome) return undefined;
  if (!row.same) {
    return {
      error: {
        reason: "IDEMPOTENCY_KEY_REUSED",
        message: "this Idempotency-Key was already used with a different request",
      },
    };
  }
  return { ...row.outcome, replayed: true };
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

import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import {
  claimKey,
  finishKey,
  type IdempotencyClaim,
  KeyInUse,
  keepOutcome,
  storedOutcome,
} from "../../src/db/idempotency.js";
import { seededDatabase } from "../support/database.js";

/**
 * The idempotency functions (src/db/functions/03_idempotency.sql) against
 * Postgres: a key is scoped to tenant, API key and method, and a row stored
 * before keys were scoped by API key (api_key_id '') answers any key of its
 * tenant until it ages out.
 */

let pool: pg.Pool;
beforeAll(async () => {
  ({ pool } = await seededDatabase());
});

const METHOD = "holdfast.v1.BookingService/CreateHold";
const claim = (apiKeyId: string, key: string, body = key): IdempotencyClaim => ({
  tenantId: "ten_a",
  apiKeyId,
  method: METHOD,
  key,
  hash: Buffer.from(body.padEnd(32, "-")),
});

/** Claims and finishes `c` with `response`, as the generic path does, in one transaction. */
async function store(c: IdempotencyClaim, response: Record<string, string>) {
  const tx = await pool.connect();
  try {
    await tx.query("BEGIN");
    const prior = await claimKey(tx, c, 1_000);
    if (!prior) await finishKey(tx, c, { response });
    await tx.query("COMMIT");
    return prior;
  } finally {
    tx.release();
  }
}

/** A hold through create_booking with this claim, at a free half hour on 2031-07-01. */
const hold = (c: IdempotencyClaim, hour: number) =>
  pool
    .query(
      `SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_1'], 1, ARRAY[1], 1, $1, $2, '0 ms', '0 ms',
                             '0 ms', NULL, '120 s', '{}', '{}', $3, $4, $5, $6) AS outcome`,
      [`2031-07-01T${hour}:00Z`, `2031-07-01T${hour}:30Z`, c.method, c.key, c.hash, c.apiKeyId],
    )
    .then((r) => r.rows[0].outcome as { response?: { booking: { id: string } }; replayed?: true });

describe("idempotency keys", () => {
  it("are kept apart per API key: each key's claim runs once and replays its own answer", async () => {
    expect(await store(claim("key_a", "k1"), { who: "a" })).toBeUndefined();
    expect(await store(claim("key_b", "k1"), { who: "b" })).toBeUndefined();
    expect(await storedOutcome(pool, claim("key_a", "k1"))).toEqual({
      response: { who: "a" },
      replayed: true,
    });
    expect(await store(claim("key_b", "k1"), { who: "again" })).toEqual({
      response: { who: "b" },
      replayed: true,
    });
    // Another request under one key's own key is refused for that key only.
    expect((await storedOutcome(pool, claim("key_a", "k1", "other")))?.error?.reason).toBe(
      "IDEMPOTENCY_KEY_REUSED",
    );
    expect(await storedOutcome(pool, claim("key_c", "k1", "other"))).toBeUndefined();
  });

  it("are kept apart per API key in the booking writes", async () => {
    const a = await hold(claim("key_a", "hold-1"), 10);
    const b = await hold(claim("key_b", "hold-1"), 11);
    expect(b.replayed).toBeUndefined();
    expect(b.response?.booking.id).not.toBe(a.response?.booking.id);
    expect(await hold(claim("key_a", "hold-1"), 10)).toEqual({ ...a, replayed: true });
  });

  it(
    "in use by a request still running are waited for as long as asked, then KeyInUse; the caller's work keeps its lock timeout",
    { timeout: 10_000 },
    async () => {
      const busy = claim("key_a", "busy");
      const [first, second] = [await pool.connect(), await pool.connect()];
      try {
        await first.query("BEGIN");
        expect(await claimKey(first, busy, 1_000)).toBeUndefined();
        // The session would wait an hour: the claim waits as long as asked.
        await second.query("BEGIN; SET LOCAL lock_timeout = '1h'");
        await expect(claimKey(second, busy, 50)).rejects.toBeInstanceOf(KeyInUse);
        await second.query("ROLLBACK");
        await finishKey(first, busy, { response: { who: "first" } });
        await first.query("COMMIT");
        await second.query("BEGIN; SET LOCAL lock_timeout = '1h'");
        expect(await claimKey(second, busy, 50)).toEqual({
          response: { who: "first" },
          replayed: true,
        });
        // A key of its own: claimed, and the rest of the transaction waits for
        // locks as long as it did before the claim.
        expect(await claimKey(second, claim("key_a", "free"), 50)).toBeUndefined();
        expect((await second.query("SHOW lock_timeout")).rows[0].lock_timeout).toBe("1h");
        await second.query("ROLLBACK");
      } finally {
        first.release();
        second.release();
      }
    },
  );

  it("stored before keys were scoped by API key answer every key of the tenant", async () => {
    const legacy = claim("", "old");
    await pool.query(
      `INSERT INTO idempotency_keys (tenant_id, api_key_id, method, key, request_hash, outcome)
       VALUES ('ten_a', '', $1, 'old', $2, '{"response": {"who": "before"}}')`,
      [METHOD, legacy.hash],
    );
    const replay = { response: { who: "before" }, replayed: true };
    expect(await storedOutcome(pool, claim("key_a", "old"))).toEqual(replay);
    expect(await store(claim("key_b", "old"), { who: "b" })).toEqual(replay);
    expect(await keepOutcome(pool, claim("key_c", "old"), { response: { who: "c" } })).toEqual(
      replay,
    );
    expect(await hold(claim("key_d", "old"), 12)).toEqual(replay);
    const { rows } = await pool.query("SELECT api_key_id FROM idempotency_keys WHERE key = 'old'");
    expect(rows).toEqual([{ api_key_id: "" }]);
  });
});

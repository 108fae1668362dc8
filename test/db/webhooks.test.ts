import pg from "pg";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { startMaintenance } from "../../src/db/maintenance.js";
import { clientDb, poolDb } from "../../src/db/pool.js";
import {
  dispatchEvents,
  leaseDue,
  pruneDeliveries,
  queueTestEvent,
  recordAttempt,
  retryDelivery,
  updateWebhook,
} from "../../src/db/webhooks.js";
import { seededDatabase, waitUntilBlocked } from "../support/database.js";

let pool: pg.Pool;
let poolUrl: string;
beforeAll(async () => {
  ({ pool, url: poolUrl } = await seededDatabase());
  await pool.query(
    "INSERT INTO webhooks (tenant_id, id, url, event_types, secret) VALUES ('ten_a', 'whk_1', 'http://x', '{*}', '\\x00')",
  );
});

/**
 * Waits until every outbox event is older than every running transaction
 * of the cluster, which is when dispatch may take it: other test files'
 * transactions, in other databases, hold that horizon back for a moment.
 */
async function settled(): Promise<void> {
  for (;;) {
    const { rows } = await pool.query(
      "SELECT coalesce(bool_and(xid < pg_snapshot_xmin(pg_current_snapshot())), true) AS ok FROM outbox",
    );
    if (rows[0].ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("dispatching events to endpoints", () => {
  it("queues nothing for an endpoint whose disabling commits while it dispatches", async () => {
    // An event to dispatch: a hold, through the booking function.
    await pool.query(
      `SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_1'], 1, ARRAY[1], 1, '2031-01-01T10:00Z',
                             '2031-01-01T11:00Z', '0 ms', '0 ms', '0 ms', NULL, '120 s',
                             '{}', '{}', 'CreateHold', NULL, NULL)`,
    );
    await settled();
    const disabling = await pool.connect();
    const dispatcher = await pool.connect();
    try {
      // What recordAttempt does when an endpoint fails too often: disable it
      // and fail its pending deliveries, in one transaction not yet committed.
      await disabling.query("BEGIN");
      await disabling.query("UPDATE webhooks SET state = 'disabled' WHERE id = 'whk_1'");
      await disabling.query(
        "UPDATE deliveries SET status = 'failed' WHERE webhook_id = 'whk_1' AND status = 'pending'",
      );
      // A dispatch that read the endpoint as active and committed after the
      // disabling would leave a delivery pending forever: nothing leases the
      // deliveries of a disabled endpoint. It must wait and see it disabled.
      const dispatched = dispatchEvents(dispatcher, 100);
      await waitUntilBlocked(dispatcher, poolUrl, dispatched);
      await disabling.query("COMMIT");
      expect(await dispatched).toBe(1);
      const { rows } = await pool.query(
        "SELECT status FROM deliveries WHERE webhook_id = 'whk_1' AND status = 'pending'",
      );
      expect(rows).toEqual([]);
    } finally {
      disabling.release();
      dispatcher.release();
    }
  });

  it("starts reading the outbox at its cursor, not at the oldest event retained", async () => {
    // A week of retained events behind the cursor must cost a pass nothing:
    // it runs every few milliseconds.
    await pool.query(
      `INSERT INTO outbox (tenant_id, type, payload)
       SELECT 'ten_a', 'booking.held', '{}' FROM generate_series(1, 20000)`,
    );
    await pool.query("ANALYZE outbox");
    await settled();
    while ((await dispatchEvents(pool, 100_000)) > 0);
    await pool.query(
      "INSERT INTO outbox (tenant_id, type, payload) VALUES ('ten_a', 'booking.held', '{}')",
    );
    await settled();
    // A new session: its transaction statistics are this pass's alone.
    const c = new pg.Client({ connectionString: poolUrl });
    await c.connect();
    try {
      await c.query("BEGIN");
      expect(await dispatchEvents(c, 100)).toBe(1);
      const { rows } = await c.query(
        `SELECT coalesce(seq_tup_read, 0) + coalesce(idx_tup_fetch, 0) AS n
         FROM pg_stat_xact_user_tables WHERE relname = 'outbox'`,
      );
      // Rows of the outbox the pass looked at: the one new event, not 20,000.
      expect(Number(rows[0].n)).toBeLessThan(10);
      await c.query("COMMIT");
    } finally {
      await c.end();
    }
  });
});

describe("retrying a delivery by hand", () => {
  /** A new endpoint (that no event is dispatched to) with one delivery, due now. */
  async function deliveryOfNewEndpoint(webhookId: string): Promise<string> {
    await pool.query(
      `INSERT INTO webhooks (tenant_id, id, url, event_types, secret)
       VALUES ('ten_a', $1, 'http://x', '{booking.never}', '\\x00')`,
      [webhookId],
    );
    const { rows } = await pool.query(
      `INSERT INTO deliveries (tenant_id, webhook_id, event_id, event_type, body, next_attempt_time)
       VALUES ('ten_a', $1, 'evt_' || $1, 'webhook.test', '{}', now()) RETURNING id`,
      [webhookId],
    );
    return rows[0].id;
  }

  it("never hands out a second lease while an attempt holds one: the retry is refused", async () => {
    const id = await deliveryOfNewEndpoint("whk_flight");
    const leased = await leaseDue(pool, 10, 60_000);
    expect(leased.map((d) => d.id)).toEqual([id]);
    const retry = await retryDelivery(poolDb(pool), "ten_a", "whk_flight", id);
    // The attempt is still in flight: no worker may take the delivery again.
    expect(await leaseDue(pool, 10, 60_000)).toEqual([]);
    const { rows } = await pool.query(
      "SELECT ts_json(lease_until) AS until FROM deliveries WHERE id = $1",
      [id],
    );
    expect(retry).toEqual({ outcome: "in_flight", inFlightUntil: rows[0].until });
    // Once the lease has run out (its worker died), a retry is taken.
    await pool.query(
      "UPDATE deliveries SET lease_until = now() - interval '1 second', next_attempt_time = now() + interval '1 hour' WHERE id = $1",
      [id],
    );
    expect(await retryDelivery(poolDb(pool), "ten_a", "whk_flight", id)).toMatchObject({
      outcome: "retried",
      delivery: { id, status: "pending" },
    });
    expect((await leaseDue(pool, 10, 60_000)).map((d) => d.id)).toEqual([id]);
  });

  it("refuses a disabled endpoint's delivery, also when the disabling commits while it runs", async () => {
    const id = await deliveryOfNewEndpoint("whk_off");
    await pool.query(
      "UPDATE deliveries SET status = 'failed', next_attempt_time = NULL WHERE id = $1",
      [id],
    );
    const disabling = await pool.connect();
    try {
      // What recordAttempt does when an endpoint answers 410 Gone, not yet committed.
      await disabling.query("BEGIN");
      await disabling.query(
        "UPDATE webhooks SET state = 'disabled', disabled_reason = 'gone' WHERE id = 'whk_off'",
      );
      await disabling.query(
        "UPDATE deliveries SET status = 'failed' WHERE webhook_id = 'whk_off' AND status = 'pending'",
      );
      // A retry that read the endpoint as active and committed after the
      // disabling would leave the delivery pending, silently, until the
      // endpoint is re-enabled. It must wait and see the endpoint disabled.
      // (It runs in an open transaction, as an idempotent call's does.)
      const retrier = await pool.connect();
      try {
        await retrier.query("BEGIN");
        const retry = retryDelivery(clientDb(retrier), "ten_a", "whk_off", id);
        await waitUntilBlocked(retrier, poolUrl, retry);
        await disabling.query("COMMIT");
        expect(await retry).toEqual({ outcome: "webhook_disabled", disabledReason: "gone" });
        await retrier.query("COMMIT");
      } finally {
        await retrier.query("ROLLBACK");
        retrier.release();
      }
    } finally {
      await disabling.query("ROLLBACK");
      disabling.release();
    }
    const { rows } = await pool.query(
      "SELECT status, next_attempt_time FROM deliveries WHERE id = $1",
      [id],
    );
    expect(rows[0]).toEqual({ status: "failed", next_attempt_time: null });
  });
});

describe("retries by hand and the automatic ones", () => {
  it("counts a retry by hand apart: the automatic attempts so far stay as they were", async () => {
    await pool.query(
      `INSERT INTO webhooks (tenant_id, id, url, event_types, secret)
       VALUES ('ten_a', 'whk_byhand', 'http://x', '{booking.never}', '\\x00')`,
    );
    const { rows } = await pool.query(
      `INSERT INTO deliveries (tenant_id, webhook_id, event_id, event_type, body, next_attempt_time)
       VALUES ('ten_a', 'whk_byhand', 'evt_byhand', 'webhook.test', '{}', now()) RETURNING id`,
    );
    const id = rows[0].id as string;
    const failed = { statusCode: 500, latencyMs: 1, error: "answered 500" };
    const fail = (d: Parameters<typeof recordAttempt>[1]) =>
      recordAttempt(poolDb(pool), d, failed, {
        retryInMs: 3_600_000,
        givesUp: false,
        disableAfter: 3,
      });
    const lease = async () => {
      const leased = (await leaseDue(pool, 10, 60_000)).filter((d) => d.id === id);
      expect(leased).toHaveLength(1);
      return leased[0] as Parameters<typeof recordAttempt>[1];
    };
    // The first, automatic, attempt.
    const first = await lease();
    expect(first).toMatchObject({ attempt: 1, automaticAttempts: 1, givenUp: false });
    await fail(first);
    // Two retries by hand: attempts 2 and 3, neither of them automatic.
    for (const attempt of [2, 3]) {
      await retryDelivery(poolDb(pool), "ten_a", "whk_byhand", id);
      const byHand = await lease();
      expect(byHand).toMatchObject({ attempt, automaticAttempts: 1 });
      await fail(byHand);
    }
    // The scheduled retry, when due, is the second automatic attempt.
    await pool.query("UPDATE deliveries SET next_attempt_time = now() WHERE id = $1", [id]);
    expect(await lease()).toMatchObject({ attempt: 4, automaticAttempts: 2 });
  });
});

describe("pruning deliveries", () => {
  const DAY = 86_400_000;
  beforeAll(async () => {
    await pool.query(
      "INSERT INTO webhooks (tenant_id, id, url, event_types, secret) VALUES ('ten_a', 'whk_prune', 'http://x', '{booking.never}', '\\x00')",
    );
  });
  /** A delivery of endpoint whk_prune created `days` ago, with one attempt. */
  async function deliveryAged(status: string, days: number): Promise<string> {
    const { rows } = await pool.query(
      `INSERT INTO deliveries (tenant_id, webhook_id, event_id, event_type, body, status, next_attempt_time, create_time)
       VALUES ('ten_a', 'whk_prune', 'evt_' || gen_random_uuid(), 'webhook.test', '{}', $1,
               CASE WHEN $1 = 'pending' THEN now() + interval '1 hour' END, now() - $2 * interval '1 day')
       RETURNING id`,
      [status, days],
    );
    const id = rows[0].id as string;
    await pool.query(
      `INSERT INTO delivery_attempts (tenant_id, delivery_id, attempt, attempt_time, status_code, latency_ms)
       VALUES ('ten_a', $1, 1, now() - $2 * interval '1 day', 500, 1)`,
      [id, days],
    );
    return id;
  }
  const kept = async (ids: string[]) =>
    (await pool.query("SELECT id FROM deliveries WHERE id = ANY ($1) ORDER BY id", [ids])).rows.map(
      (r) => r.id as string,
    );

  it("deletes ended deliveries older than the retention, with their attempts, a batch at a time; never a pending one", async () => {
    const old = [
      await deliveryAged("succeeded", 9),
      await deliveryAged("failed", 8),
      await deliveryAged("succeeded", 8),
    ];
    const retrying = await deliveryAged("pending", 30);
    const recent = [await deliveryAged("succeeded", 1), await deliveryAged("failed", 6)];
    // Oldest first, at most a batch.
    expect(await pruneDeliveries(pool, 7 * DAY, 1)).toBe(1);
    expect(await kept([old[0] as string])).toEqual([]);
    expect(await pruneDeliveries(pool, 7 * DAY, 100)).toBe(2);
    expect(await pruneDeliveries(pool, 7 * DAY, 100)).toBe(0);
    expect(await kept([...old, retrying, ...recent])).toEqual([retrying, ...recent].sort());
    const { rows } = await pool.query(
      "SELECT count(*)::int AS n FROM delivery_attempts WHERE delivery_id = ANY ($1)",
      [old],
    );
    expect(rows[0].n).toBe(0);
  });

  it("leaves alone a delivery that a retry by hand makes pending while it prunes", async () => {
    const id = await deliveryAged("failed", 8);
    const retrier = await pool.connect();
    try {
      // The retry has made it pending, not yet committed.
      await retrier.query("BEGIN");
      expect(await retryDelivery(clientDb(retrier), "ten_a", "whk_prune", id)).toMatchObject({
        outcome: "retried",
      });
      expect(await pruneDeliveries(pool, 7 * DAY, 100)).toBe(0);
      await retrier.query("COMMIT");
    } finally {
      await retrier.query("ROLLBACK");
      retrier.release();
    }
    expect(await pruneDeliveries(pool, 7 * DAY, 100)).toBe(0);
    expect(await kept([id])).toEqual([id]);
    const { rows } = await pool.query("SELECT status FROM deliveries WHERE id = $1", [id]);
    expect(rows[0].status).toBe("pending");
    await pool.query("UPDATE deliveries SET status = 'failed' WHERE id = $1", [id]);
  });

  it("is part of the maintenance loop", async () => {
    const old = await deliveryAged("succeeded", 8);
    const retrying = await deliveryAged("pending", 8);
    const maintenance = startMaintenance(pool, { sweepIntervalMs: 50, eventRetentionMs: 7 * DAY });
    try {
      await vi.waitFor(async () => expect(await kept([old])).toEqual([]), { timeout: 10_000 });
    } finally {
      await maintenance.stop();
    }
    expect(await kept([retrying])).toEqual([retrying]);
  });
});

describe("sending a test event", () => {
  it("queues nothing for an endpoint whose disabling commits while it runs", async () => {
    await pool.query(
      "INSERT INTO webhooks (tenant_id, id, url, event_types, secret) VALUES ('ten_a', 'whk_test_off', 'http://x', '{*}', '\\x00')",
    );
    const disabling = await pool.connect();
    try {
      // What recordAttempt does when an endpoint answers 410 Gone, not yet committed.
      await disabling.query("BEGIN");
      await disabling.query(
        "UPDATE webhooks SET state = 'disabled', disabled_reason = 'gone' WHERE id = 'whk_test_off'",
      );
      await disabling.query(
        "UPDATE deliveries SET status = 'failed' WHERE webhook_id = 'whk_test_off' AND status = 'pending'",
      );
      // A test event that read the endpoint as active and committed after
      // the disabling would wait, pending, for a re-enabling. It must wait
      // for the disabling and see it.
      const sender = await pool.connect();
      try {
        await sender.query("BEGIN");
        const queued = queueTestEvent(clientDb(sender), "ten_a", "whk_test_off", {
          eventId: "evt_test_off",
          eventType: "webhook.test",
          body: () => "{}",
        });
        await waitUntilBlocked(sender, poolUrl, queued);
        await disabling.query("COMMIT");
        expect(await queued).toEqual({ outcome: "webhook_disabled", disabledReason: "gone" });
        await sender.query("COMMIT");
      } finally {
        await sender.query("ROLLBACK");
        sender.release();
      }
    } finally {
      await disabling.query("ROLLBACK");
      disabling.release();
    }
    const { rows } = await pool.query(
      "SELECT id FROM deliveries WHERE webhook_id = 'whk_test_off'",
    );
    expect(rows).toEqual([]);
  });
});

describe("leaving DISABLED", () => {
  it("clears the reason and the failure count, whether to ACTIVE or to PAUSED", async () => {
    for (const [id, state] of [
      ["whk_back_active", "active"],
      ["whk_back_paused", "paused"],
    ] as const) {
      await pool.query(
        `INSERT INTO webhooks (tenant_id, id, url, event_types, secret, state, disabled_reason, consecutive_failures)
         VALUES ('ten_a', $1, 'http://x', '{*}', '\\x00', 'disabled', 'the endpoint answered 410 Gone', 3)`,
        [id],
      );
      const row = await updateWebhook(pool, "ten_a", id, { state });
      expect(row).toMatchObject({ state, disabledReason: "", consecutiveFailures: 0 });
    }
    // Pausing an active endpoint keeps its count: it is not a re-enabling.
    await pool.query(
      "INSERT INTO webhooks (tenant_id, id, url, event_types, secret, consecutive_failures) VALUES ('ten_a', 'whk_counting', 'http://x', '{*}', '\\x00', 2)",
    );
    expect(await updateWebhook(pool, "ten_a", "whk_counting", { state: "paused" })).toMatchObject({
      state: "paused",
      consecutiveFailures: 2,
    });
  });
});

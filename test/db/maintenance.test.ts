import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { startMaintenance } from "../../src/db/maintenance.js";
import { seededDatabase } from "../support/database.js";

let pool: pg.Pool;
beforeAll(async () => {
  ({ pool } = await seededDatabase());
});

describe("maintenance", () => {
  it("prunes a backlog of expired keys and events faster than one batch a minute", async () => {
    // 12,000 of each, past their retention: more than two batches.
    await pool.query(`
      INSERT INTO idempotency_keys (tenant_id, api_key_id, method, key, request_hash, outcome, create_time)
      SELECT 'ten_a', 'key_a', 'm', 'k' || g, '\\x00', '{}', now() - interval '2 days' FROM generate_series(1, 12000) g;
      INSERT INTO outbox (tenant_id, type, payload, occur_time)
      SELECT 'ten_a', 'booking.held', '{}', now() - interval '8 days' FROM generate_series(1, 12000);
    `);
    const maintenance = startMaintenance(pool, {
      sweepIntervalMs: 50,
      eventRetentionMs: 7 * 86_400_000,
    });
    try {
      const left = async () =>
        (
          await pool.query(
            "SELECT (SELECT count(*) FROM idempotency_keys) + (SELECT count(*) FROM outbox) AS n",
          )
        ).rows[0].n as string;
      const deadline = Date.now() + 20_000;
      while ((await left()) !== "0" && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await left()).toBe("0");
    } finally {
      await maintenance.stop();
    }
  });
});

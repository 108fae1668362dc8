import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { seededDatabase } from "../support/database.js";

/** lease_rate (src/db/functions/10_rate_limits.sql) called as the server calls it. */
let pool: pg.Pool;
beforeAll(async () => {
  ({ pool } = await seededDatabase());
});

const lease = (tenant: string, key: string) =>
  pool.query<{ granted: number; retry_ms: number; reset_ms: number[] }>(
    "SELECT * FROM lease_rate($1, $2, $3::integer[], $4, $5, $6, $7, $8, $9::integer[])",
    [tenant, key, [1, 2, 1, 2], "instance-a", 1, 60_000, 0, 0, []],
  );

describe("lease_rate", () => {
  it("refuses a key never used before when its tenant's bucket is empty, with the time until it is full again", async () => {
    // The tenant's bucket is spent for the next hour; the key's has never been used.
    await pool.query(
      "INSERT INTO rate_buckets (bucket, tat) VALUES ('t/ten_spent', now() + interval '1 hour')",
    );
    const { rows } = await lease("ten_spent", "key_never_used");
    expect(rows[0]?.granted).toBe(0);
    expect(rows[0]?.retry_ms).toBeGreaterThan(0);
    // The key's own bucket is full: nothing to wait for there.
    expect(rows[0]?.reset_ms[1]).toBe(0);
  });
});

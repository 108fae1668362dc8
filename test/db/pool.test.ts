import { afterAll, describe, expect, it, onTestFinished } from "vitest";
import { rejectionFromDatabase } from "../../src/db/errors.js";
import { createPool, inTransaction } from "../../src/db/pool.js";
import { freshDatabase } from "../support/database.js";

const LIMITS = { statementMs: 300, lockMs: 200, idleInTransactionMs: 300 };

/** What a failed call turns into for a client: its reason, or "not a rejection". */
async function reasonOf(work: Promise<unknown>): Promise<string> {
  try {
    await work;
  } catch (err) {
    return rejectionFromDatabase(err)?.reason ?? `not a rejection: ${err}`;
  }
  return "no error";
}

describe("pool time limits", async () => {
  const url = await freshDatabase();
  const pool = createPool(url, 2, LIMITS);
  afterAll(() => pool.end());

  it("sets all three limits on every connection", async () => {
    const { rows } = await pool.query(
      "SELECT current_setting('statement_timeout') AS s, current_setting('lock_timeout') AS l, current_setting('idle_in_transaction_session_timeout') AS i",
    );
    expect(rows[0]).toEqual({ s: "300ms", l: "200ms", i: "300ms" });
  });

  it("ends a statement that runs too long, as UNAVAILABLE", async () => {
    expect(await reasonOf(pool.query("SELECT pg_sleep(30)"))).toBe("UNAVAILABLE");
  });

  it("ends a wait for an advisory lock another session holds, as UNAVAILABLE", async () => {
    const holder = createPool(url, 1);
    onTestFinished(() => holder.end());
    const stuck = await holder.connect();
    await stuck.query("BEGIN");
    await stuck.query("SELECT pg_advisory_xact_lock(42)");
    try {
      const waited = inTransaction(pool, (tx) => tx.query("SELECT pg_advisory_xact_lock(42)"));
      expect(await reasonOf(waited)).toBe("UNAVAILABLE");
    } finally {
      await stuck.query("ROLLBACK");
      stuck.release();
    }
  });

  it("ends a transaction left idle, without crashing the process, as UNAVAILABLE", async () => {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      await client.query("SELECT pg_advisory_xact_lock(43)");
      // Longer than the limit: Postgres ends the session while nobody waits on it.
      await new Promise((r) => setTimeout(r, LIMITS.idleInTransactionMs * 4));
      const next = client.query("SELECT 1");
      next.catch((err: Error) => {
        broken = err;
      });
      expect(await reasonOf(next)).toBe("UNAVAILABLE");
    } finally {
      client.release(broken);
    }
    // The lock went with the session, and the pool still serves.
    const other = createPool(url, 1);
    onTestFinished(() => other.end());
    const { rows } = await other.query("SELECT pg_try_advisory_lock(43) AS got");
    expect(rows[0].got).toBe(true);
    expect((await pool.query("SELECT 1 AS one")).rows[0].one).toBe(1);
  });
});

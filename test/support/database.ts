import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, expect, inject } from "vitest";
import { pruneEvents } from "../../src/db/outbox.js";
import { databaseUrl } from "./urls.js";

/**
 * A fresh, migrated database for the calling test file, cloned from the
 * run's template and dropped after the file's tests.
 */
export async function freshDatabase(): Promise<string> {
  return createDatabase(`TEMPLATE ${inject("templateDatabase")}`);
}

/** A database without Holdfast's schema, dropped after the file's tests. */
export function emptyDatabase(): Promise<string> {
  return createDatabase("");
}

async function createDatabase(options: string): Promise<string> {
  const adminUrl = inject("adminUrl");
  const name = `${inject("runPrefix")}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} ${options}`);
  } finally {
    await admin.end();
  }
  afterAll(async () => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).finally(() => c.end());
  });
  return databaseUrl(adminUrl, name);
}

/**
 * A fresh database with one tenant (`ten_a`), a one-at-a-time room
 * (`rsc_1`) and a service (`svc_1`, policy version 1), and a pool on it
 * closed after the file's tests: for tests of the SQL below the server.
 */
export async function seededDatabase(): Promise<{ pool: pg.Pool; url: string }> {
  const url = await freshDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 3 });
  afterAll(() => pool.end());
  await pool.query(`
    INSERT INTO tenants (id, name) VALUES ('ten_a', 'a');
    INSERT INTO resources (tenant_id, id, name, kind, time_zone) VALUES ('ten_a', 'rsc_1', 'R', 'room', 'UTC');
    INSERT INTO services (tenant_id, id, name) VALUES ('ten_a', 'svc_1', 'S');
    INSERT INTO policy_versions (tenant_id, service_id, version, policy, time_zone) VALUES ('ten_a', 'svc_1', 1, '{}', 'UTC');
  `);
  return { pool, url };
}

/**
 * Waits until the session of `client` is waiting for a lock another holds,
 * or until `orDone` settles (the statement did not wait at all).
 */
export async function waitUntilBlocked(
  client: pg.PoolClient,
  url: string,
  orDone?: Promise<unknown>,
): Promise<void> {
  let done = false;
  orDone?.then(
    () => {
      done = true;
    },
    () => {
      done = true;
    },
  );
  const pid = (client as unknown as { processID: number }).processID;
  const watcher = new pg.Client({ connectionString: url });
  await watcher.connect();
  try {
    while (!done) {
      const { rows } = await watcher.query(
        "SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1",
        [pid],
      );
      if (rows[0]?.wait_event_type === "Lock") return;
      await new Promise((r) => setTimeout(r, 10));
    }
  } finally {
    await watcher.end();
  }
}

/** Ages every event of the database past the retention and deletes them, as maintenance does. */
export async function retireAll(databaseUrl: string): Promise<void> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    await db.query("UPDATE outbox SET occur_time = now() - interval '8 days'");
    await pruneEvents(db, 7 * 86_400_000, 5_000);
    const { rows } = await db.query(
      `SELECT (SELECT count(*) FROM outbox)::int AS kept,
         (SELECT count(*) > 0 FROM outbox_pruned_tenants) AS marked`,
    );
    expect(rows[0]).toEqual({ kept: 0, marked: true });
  } finally {
    await db.end();
  }
}

/** How many sessions of Holdfast servers (application_name holdfast) wait for a lock now. */
export async function lockWaiters(databaseUrl: string): Promise<number> {
  const watcher = new pg.Client({ connectionString: databaseUrl });
  await watcher.connect();
  try {
    const { rows } = await watcher.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'holdfast'
          AND wait_event_type = 'Lock'`,
    );
    return rows[0].n;
  } finally {
    await watcher.end();
  }
}

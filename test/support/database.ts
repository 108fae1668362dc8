import { randomBytes } from "node:crypto";
import pg from "pg";
import { afterAll, inject } from "vitest";
import { databaseUrl } from "./urls.js";

/**
 * A fresh, migrated database for the calling test file, cloned from the
 * run's template and dropped after the file's tests.
 */
export async function freshDatabase(): Promise<string> {
  const adminUrl = inject("adminUrl");
  const name = `${inject("runPrefix")}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name} TEMPLATE ${inject("templateDatabase")}`);
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

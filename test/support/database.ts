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

import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { migrate } from "../../src/db/migrate.js";
import { databaseUrl } from "./urls.js";

declare module "vitest" {
  export interface ProvidedContext {
    /** A connection URL with the right to CREATE DATABASE. */
    adminUrl: string;
    /** The migrated template each test file clones. */
    templateDatabase: string;
    /** Prefix of every database this run creates, so teardown can drop them. */
    runPrefix: string;
  }
}

/**
 * Runs once per `npm test`. With DATABASE_URL the tests use that server
 * (each file in a fresh database this run creates and drops); without it,
 * a throwaway embedded Postgres (fsync off) is started and removed.
 */
export default async function setup(project: TestProject) {
  let adminUrl = process.env.DATABASE_URL;
  let stopEmbedded = async () => {};
  if (!adminUrl) {
    const dir = await mkdtemp(join(tmpdir(), "holdfast-test-"));
    const embedded = await startEmbeddedPostgres({
      dataDir: join(dir, "pg"),
      persistent: false,
      fsync: false,
    });
    adminUrl = embedded.adminUrl;
    stopEmbedded = async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    };
  }
  const runPrefix = `hf_test_${randomBytes(4).toString("hex")}`;
  const templateDatabase = `${runPrefix}_template`;
  await adminQuery(adminUrl, `CREATE DATABASE ${templateDatabase}`);
  const pool = new pg.Pool({ connectionString: databaseUrl(adminUrl, templateDatabase), max: 2 });
  try {
    await migrate(pool);
  } finally {
    await pool.end();
  }

  project.provide("adminUrl", adminUrl);
  project.provide("templateDatabase", templateDatabase);
  project.provide("runPrefix", runPrefix);

  return async () => {
    const { rows } = await adminQuery(
      adminUrl,
      "SELECT datname FROM pg_database WHERE datname LIKE $1",
      [`${runPrefix}%`],
    );
    for (const { datname } of rows) {
      await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${datname} WITH (FORCE)`);
    }
    await stopEmbedded();
  };
}

async function adminQuery(url: string, sql: string, params: unknown[] = []) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

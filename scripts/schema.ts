/**
 * `npm run schema`: migrates a new, empty database and writes its schema to
 * src/db/schema.sql (see src/db/schema-dump.ts). With DATABASE_URL the
 * database is made and dropped on that server (what CI does); without, on a
 * throwaway embedded Postgres.
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { migrate } from "../src/db/migrate.js";
import { dumpSchema } from "../src/db/schema-dump.js";
import { setLogLevel } from "../src/log.js";

const OUT = new URL("../src/db/schema.sql", import.meta.url);

async function withEmptyDatabase<T>(work: (url: string) => Promise<T>): Promise<T> {
  const serverUrl = process.env.DATABASE_URL;
  if (serverUrl) {
    const name = `holdfast_schema_${randomBytes(4).toString("hex")}`;
    const url = new URL(serverUrl);
    await admin(serverUrl, `CREATE DATABASE ${name}`);
    url.pathname = `/${name}`;
    try {
      return await work(url.toString());
    } finally {
      await admin(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    }
  }
  // Loaded only when needed, as in the tests' setup.
  const { startEmbeddedPostgres } = await import("../src/db/embedded.js");
  const dir = await mkdtemp(join(tmpdir(), "holdfast-schema-"));
  try {
    const embedded = await startEmbeddedPostgres({
      dataDir: join(dir, "pg"),
      persistent: false,
      fsync: false,
    });
    try {
      return await work(embedded.url);
    } finally {
      await embedded.stop();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function admin(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

setLogLevel("error");
try {
  const schema = await withEmptyDatabase(async (url) => {
    const pool = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await migrate(pool);
      return await dumpSchema(pool);
    } finally {
      await pool.end();
    }
  });
  await writeFile(OUT, schema);
  process.stdout.write(`wrote ${OUT.pathname}\n`);
  // Exit with the outcome at once, whatever handle the database left open.
  process.exit(0);
} catch (err) {
  process.stderr.write(`npm run schema failed: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
}

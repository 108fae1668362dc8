import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import type pg from "pg";
import { log } from "../log.js";
import type { Queryable } from "./pool.js";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);
const FUNCTIONS_DIR = new URL("./functions/", import.meta.url);

// Any constant works; it only has to be the same in every instance so that
// instances booting together apply migrations one at a time.
const MIGRATION_LOCK_KEY = 7_482_913_001;

export type Migration = {
  version: number;
  name: string;
  /** The file name, `NNNN_name.sql`, as messages name it. */
  file: string;
  sql: string;
  /** SHA-256 (hex) of the text, recorded when the migration is applied. */
  checksum: string;
};

/** A file of src/db/functions (`NN_name.sql`): functions, re-created when it changes. */
export type FunctionFile = { file: string; sql: string; checksum: string };

/** What one call to `migrate` did. */
export type MigrationReport = {
  /** Versions of the numbered migrations applied, in order. */
  migrations: number[];
  /** The function files run, in order: all of them when any changed, else none. */
  functions: string[];
};

/**
 * Thrown when a migration this database already applied no longer reads as
 * it did: the database holds the old text's effects, which no later start
 * would ever correct. Holdfast refuses to start rather than run on a schema
 * the code does not describe.
 */
export class MigrationChangedError extends Error {
  constructor(readonly files: string[]) {
    super(
      `${files.length === 1 ? `migration ${files[0]} was` : `migrations ${files.join(", ")} were`} changed after this database applied ${files.length === 1 ? "it" : "them"}: restore the applied text and make the change in a new migration`,
    );
    this.name = "MigrationChangedError";
  }
}

/**
 * The checksum recorded for a file. Line endings are normalised so that a
 * checkout that turned LF into CRLF does not read as a changed migration.
 */
export function checksum(sql: string): string {
  return createHash("sha256").update(sql.replace(/\r\n/g, "\n")).digest("hex");
}

/** The numbered files in src/db/migrations (`NNNN_name.sql`), in order. */
export async function readMigrations(): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR))
    .filter((f) => /^\d{4}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(new URL(file, MIGRATIONS_DIR), "utf8");
      return {
        version: Number(file.slice(0, 4)),
        name: file.slice(5, -4),
        file,
        sql,
        checksum: checksum(sql),
      };
    }),
  );
}

/** The files in src/db/functions (`NN_name.sql`), in the order they run. */
export async function readFunctionFiles(): Promise<FunctionFile[]> {
  const files = (await readdir(FUNCTIONS_DIR))
    .filter((f) => /^\d{2}_[a-z0-9_]+\.sql$/.test(f))
    .sort();
  return Promise.all(
    files.map(async (file) => {
      const sql = await readFile(new URL(file, FUNCTIONS_DIR), "utf8");
      return { file, sql, checksum: checksum(sql) };
    }),
  );
}

/**
 * Brings the database up to the code: checks that every migration it
 * already applied is unchanged (else MigrationChangedError, before anything
 * is written), then applies the rest, each in its own transaction that
 * records its version and checksum first; then re-creates the functions if
 * any function file changed (see refreshFunctions). A session-level advisory
 * lock makes instances that boot at once take turns; the later ones find
 * nothing left to do.
 */
export async function migrate(pool: pg.Pool): Promise<MigrationReport> {
  const migrations = await readMigrations();
  const functionFiles = await readFunctionFiles();
  const client = await pool.connect();
  const report: MigrationReport = { migrations: [], functions: [] };
  try {
    await client.query("SELECT pg_advisory_lock($1)", [MIGRATION_LOCK_KEY]);
    // Databases migrated before checksums were recorded have the table
    // without the column: add it, then fill it in below.
    await client.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version integer PRIMARY KEY,
      name text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS checksum text`);
    const applied = new Map(
      (
        await client.query<{ version: number; checksum: string | null }>(
          "SELECT version, checksum FROM schema_migrations",
        )
      ).rows.map((r) => [r.version, r.checksum]),
    );
    const changed = migrations.filter((m) => {
      const recorded = applied.get(m.version);
      return recorded != null && recorded !== m.checksum;
    });
    if (changed.length > 0) throw new MigrationChangedError(changed.map((m) => m.file));

    // Rows written before checksums existed cannot be verified: take the
    // files as they are now, and check from here on.
    const unrecorded = migrations.filter(
      (m) => applied.has(m.version) && applied.get(m.version) === null,
    );
    if (unrecorded.length > 0) {
      await client.query(
        `UPDATE schema_migrations s SET checksum = f.checksum
         FROM unnest($1::integer[], $2::text[]) AS f (version, checksum)
         WHERE s.version = f.version AND s.checksum IS NULL`,
        [unrecorded.map((m) => m.version), unrecorded.map((m) => m.checksum)],
      );
      log.warn("recorded the checksums of migrations applied before checksums existed", {
        migrations: unrecorded.map((m) => m.file),
      });
    }

    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      await client.query("BEGIN");
      try {
        await client.query(
          "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
          [m.version, m.name, m.checksum],
        );
        await client.query(m.sql);
        await client.query("COMMIT");
      } catch (err) {
        await client.query("ROLLBACK");
        throw new Error(`migration ${m.file} failed: ${(err as Error).message}`, { cause: err });
      }
      report.migrations.push(m.version);
    }
    report.functions = await refreshFunctions(client, functionFiles, report.migrations.length > 0);
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    client.release();
  }
  return report;
}

// The functions of this schema that a DROP could remove: those of
// extensions (btree_gist's) belong to their extension.
const OWN_FUNCTIONS = `
  SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
  WHERE p.pronamespace = current_schema()::regnamespace
    AND NOT EXISTS (SELECT 1 FROM pg_depend d
                    WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`;

/**
 * Makes the database's functions exactly what the function files create,
 * in one transaction: when a file was added, removed or changed (or a
 * migration just ran), every function the files created last time is
 * dropped and every file runs again, in order. Dropping first lets a file
 * change a function's arguments or result, which CREATE OR REPLACE cannot,
 * and leaves no stale overload behind; running every file checks each SQL
 * function body against the schema and functions as they are now. The
 * functions each file created are recorded, found as the functions that
 * did not exist before it ran. Returns the files run.
 */
async function refreshFunctions(
  client: pg.PoolClient,
  files: FunctionFile[],
  migrated: boolean,
): Promise<string[]> {
  await client.query(`CREATE TABLE IF NOT EXISTS schema_functions (
    file text PRIMARY KEY,
    checksum text NOT NULL,
    -- What the file created (regprocedure), dropped before it runs again.
    functions text[] NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`);
  const recorded = (
    await client.query<{ file: string; checksum: string; functions: string[] }>(
      "SELECT file, checksum, functions FROM schema_functions",
    )
  ).rows;
  const current =
    !migrated &&
    recorded.length === files.length &&
    files.every((f) => recorded.some((r) => r.file === f.file && r.checksum === f.checksum));
  if (current) return [];

  const own = async () =>
    new Set(
      (await client.query<{ signature: string }>(OWN_FUNCTIONS)).rows.map((r) => r.signature),
    );
  await client.query("BEGIN");
  try {
    for (const signature of recorded.flatMap((r) => r.functions)) {
      await client.query(`DROP ROUTINE IF EXISTS ${signature}`);
    }
    await client.query("DELETE FROM schema_functions");
    for (const f of files) {
      const before = await own();
      try {
        await client.query(f.sql);
      } catch (err) {
        throw new Error(`function file ${f.file} failed: ${(err as Error).message}`, {
          cause: err,
        });
      }
      const created = [...(await own())].filter((s) => !before.has(s)).sort();
      await client.query(
        "INSERT INTO schema_functions (file, checksum, functions) VALUES ($1, $2, $3)",
        [f.file, f.checksum, created],
      );
    }
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK");
    throw err;
  }
  return files.map((f) => f.file);
}

/** The newest migration this code ships. */
export async function latestVersion(): Promise<number> {
  return Math.max(0, ...(await readMigrations()).map((m) => m.version));
}

/**
 * The newest migration applied to a database that has been migrated, in
 * one statement (the health check's probe).
 */
export async function migratedVersion(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ version: number | null }>(
    "SELECT max(version) AS version FROM schema_migrations",
  );
  return rows[0]?.version ?? 0;
}

/** The newest migration applied to the database (0 when none has been). */
export async function appliedVersion(q: Queryable): Promise<number> {
  // The table is made by the first migrate(); a query naming it would fail before.
  const { rows: exists } = await q.query<{ found: boolean }>(
    "SELECT to_regclass('schema_migrations') IS NOT NULL AS found",
  );
  if (!exists[0]?.found) return 0;
  return migratedVersion(q);
}

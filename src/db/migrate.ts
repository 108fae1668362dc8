import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import type pg from "pg";
import { log } from "../log.js";

const MIGRATIONS_DIR = new URL("./migrations/", import.meta.url);

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

/** What one call to `migrate` did. */
export type MigrationReport = {
  /** Versions of the numbered migrations applied, in order. */
  migrations: number[];
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

/**
 * Brings the database up to the code: checks that every migration it
 * already applied is unchanged (else MigrationChangedError, before anything
 * is written), then applies the rest, each in its own transaction that
 * records its version and checksum first. A session-level advisory lock
 * makes instances that boot at once take turns; the later ones find nothing
 * left to do.
 */
export async function migrate(pool: pg.Pool): Promise<MigrationReport> {
  const migrations = await readMigrations();
  const client = await pool.connect();
  const report: MigrationReport = { migrations: [] };
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
  } finally {
    await client.query("SELECT pg_advisory_unlock($1)", [MIGRATION_LOCK_KEY]).catch(() => {});
    client.release();
  }
  return report;
}

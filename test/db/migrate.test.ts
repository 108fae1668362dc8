import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { migrate, readMigrations } from "../../src/db/migrate.js";
import { freshDatabase } from "../support/database.js";
import { startTestServer } from "../support/server.js";

/** A fresh, migrated database and a pool on it, closed after the file's tests. */
async function migratedDatabase(): Promise<{ pool: pg.Pool; url: string }> {
  const url = await freshDatabase();
  const pool = new pg.Pool({ connectionString: url, max: 2 });
  afterAll(() => pool.end());
  return { pool, url };
}

describe("migrations", () => {
  it("are numbered, and applied once even when several instances boot at once", async () => {
    const migrations = await readMigrations();
    expect(migrations.map((m) => m.version)).toEqual(migrations.map((_, i) => i + 1));

    // freshDatabase is already migrated (cloned from the template): wipe it
    // back to empty, then race four migrators.
    const url = await freshDatabase();
    const pools = Array.from({ length: 4 }, () => new pg.Pool({ connectionString: url, max: 2 }));
    try {
      await pools[0]?.query("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
      const reports = await Promise.all(pools.map((p) => migrate(p)));
      expect(reports.flatMap((r) => r.migrations).sort()).toEqual(migrations.map((m) => m.version));
      const { rows } = await (pools[0] as pg.Pool).query(
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
      expect((await migrate(pools[1] as pg.Pool)).migrations).toEqual([]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });

  it("record each file's checksum, and refuse to run on a database where an applied one changed, naming it", async () => {
    const { pool, url } = await migratedDatabase();
    const migrations = await readMigrations();
    const { rows } = await pool.query<{ version: number; checksum: string }>(
      "SELECT version, checksum FROM schema_migrations ORDER BY version",
    );
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, checksum: m.checksum })));

    // What a database migrated with an older text of 0002 looks like: the
    // file as applied then no longer matches the file now.
    await pool.query("UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 2");
    const err = await migrate(pool).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(
      /^migration 0002_bookings\.sql was changed after this database applied it/,
    );
    expect((err as Error).message).not.toMatch(/0001|0003/);
    await expect(startTestServer({}, url)).rejects.toThrow(/^migration 0002_bookings\.sql/);
  });

  it("take the checksums of a database migrated before they were recorded from the files", async () => {
    const { pool } = await migratedDatabase();
    await pool.query("ALTER TABLE schema_migrations DROP COLUMN checksum");
    expect((await migrate(pool)).migrations).toEqual([]);
    const { rows } = await pool.query<{ version: number; checksum: string }>(
      "SELECT version, checksum FROM schema_migrations ORDER BY version",
    );
    const migrations = await readMigrations();
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, checksum: m.checksum })));
  });
});

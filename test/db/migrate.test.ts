import { readFile } from "node:fs/promises";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { migrate, readFunctionFiles, readMigrations } from "../../src/db/migrate.js";
import { dumpSchema } from "../../src/db/schema-dump.js";
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
      expect(reports.flatMap((r) => r.migrations).sort((a, b) => a - b)).toEqual(
        migrations.map((m) => m.version),
      );
      const { rows } = await (pools[0] as pg.Pool).query(
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
      // One of them created the functions; the others found them current.
      const files = (await readFunctionFiles()).map((f) => f.file);
      expect(reports.map((r) => r.functions).filter((f) => f.length > 0)).toEqual([files]);
      expect(await migrate(pools[1] as pg.Pool)).toEqual({ migrations: [], functions: [] });
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

describe("function files", () => {
  it("are re-created when their text changes, and functions no file defines any more are dropped", async () => {
    const { pool } = await migratedDatabase();
    const files = await readFunctionFiles();
    const recorded = () =>
      pool
        .query<{ file: string; checksum: string }>(
          "SELECT file, checksum FROM schema_functions ORDER BY file",
        )
        .then((r) => r.rows);
    expect(await recorded()).toEqual(files.map((f) => ({ file: f.file, checksum: f.checksum })));
    const current = await dumpSchema(pool);

    // A database whose functions came from older texts: another body under
    // the checksum of that text, and a function whose file was removed since.
    await pool.query(`
      CREATE OR REPLACE FUNCTION rejection(p_reason text, p_message text, p_details jsonb DEFAULT '{}')
      RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$ SELECT '{"stale": true}'::jsonb $$;
      UPDATE schema_functions SET checksum = repeat('0', 64) WHERE file = '01_json.sql';
      CREATE FUNCTION retired_rule() RETURNS integer LANGUAGE sql AS $$ SELECT 1 $$;
      INSERT INTO schema_functions (file, checksum, functions)
      VALUES ('99_retired.sql', repeat('0', 64), ARRAY['retired_rule()']);`);
    expect(await migrate(pool)).toEqual({ migrations: [], functions: files.map((f) => f.file) });

    const { rows } = await pool.query("SELECT rejection('X', 'm') AS r");
    expect(rows[0].r).toEqual({ error: { reason: "X", message: "m" } });
    expect(await dumpSchema(pool)).toBe(current);
    expect(await recorded()).toEqual(files.map((f) => ({ file: f.file, checksum: f.checksum })));
    expect(await migrate(pool)).toEqual({ migrations: [], functions: [] });
  });

  it("take over cleanly on a database migrated when functions lived in migrations and nothing had checksums", async () => {
    const { pool } = await migratedDatabase();
    const fresh = await dumpSchema(pool);
    await pool.query("DROP SCHEMA public CASCADE; CREATE SCHEMA public");
    await pool.query(
      await readFile(new URL("./fixtures/migrated-before-checksums.sql", import.meta.url), "utf8"),
    );
    // Data written by the old code, through its own create_booking.
    await pool.query(`
      INSERT INTO tenants (id, name) VALUES ('ten_a', 'a');
      INSERT INTO resources (tenant_id, id, name, kind, time_zone) VALUES ('ten_a', 'rsc_1', 'R', 'room', 'UTC');
      INSERT INTO services (tenant_id, id, name) VALUES ('ten_a', 'svc_1', 'S');
      INSERT INTO policy_versions (tenant_id, service_id, version, policy, time_zone) VALUES ('ten_a', 'svc_1', 1, '{}', 'UTC');
      SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_1'], 1, ARRAY[1], 1, '2031-01-01T10:00Z',
                            '2031-01-01T11:00Z', '0 ms', '0 ms', '0 ms', NULL, NULL,
                            '{}', '{}', 'CreateBooking', NULL, NULL);`);

    const migrations = await readMigrations();
    const files = await readFunctionFiles();
    expect(await migrate(pool)).toEqual({
      migrations: migrations.filter((m) => m.version > 5).map((m) => m.version),
      functions: files.map((f) => f.file),
    });
    const { rows } = await pool.query(
      "SELECT version, checksum FROM schema_migrations ORDER BY version",
    );
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, checksum: m.checksum })));
    // The old functions are gone; the files' functions, and only those, are
    // there, and the whole schema is what a new database gets.
    expect(await dumpSchema(pool)).toBe(fresh);

    // The old booking still holds its time against the new functions.
    const outcome = await pool.query(
      `SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_1'], 1, ARRAY[1], 1, '2031-01-01T10:30Z',
                             '2031-01-01T11:30Z', '0 ms', '0 ms', '0 ms', NULL, NULL,
                             '{}', '{}', 'CreateBooking', NULL, NULL) AS o`,
    );
    expect(outcome.rows[0].o.error.reason).toBe("SLOT_UNAVAILABLE");
  });
});

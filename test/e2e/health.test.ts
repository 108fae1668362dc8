import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/health/v1/health_pb.js";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { sleep } from "../support/booking.js";
import { clientFor } from "../support/clients.js";
import { descendants, spawnServer } from "../support/process.js";
import { ADMIN_KEY } from "../support/server.js";

describe("health while Postgres hangs", { timeout: 120_000 }, async () => {
  // A Postgres of this test's own, to freeze without disturbing other tests.
  const dir = await mkdtemp(join(tmpdir(), "holdfast-health-"));
  const postgres = await startEmbeddedPostgres({
    dataDir: join(dir, "pg"),
    persistent: false,
    fsync: false,
  });
  const server = await spawnServer({
    DATABASE_URL: postgres.url,
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
  });
  const postmaster = Number.parseInt(readFileSync(join(dir, "pg", "postmaster.pid"), "utf8"), 10);
  const freeze = (signal: "SIGSTOP" | "SIGCONT") => {
    for (const pid of [postmaster, ...descendants(postmaster)]) {
      try {
        process.kill(pid, signal);
      } catch {
        // A backend that ended meanwhile.
      }
    }
  };
  afterAll(async () => {
    freeze("SIGCONT");
    await server.stop();
    await postgres.stop();
    await rm(dir, { recursive: true, force: true });
  });

  // Within 2 s, the bound the check promises: a deadline, not a measurement.
  const check = () =>
    clientFor(Health, server.url, undefined)
      .check({}, { timeoutMs: 2_000 })
      .then((r) => r.status);

  const readyz = async () => {
    const res = await fetch(`${server.url}/readyz`, { signal: AbortSignal.timeout(2_000) });
    return { status: res.status, body: await res.json() };
  };

  it('GET /readyz answers 503 with database "timeout" while Postgres is stopped, /healthz stays 200', async () => {
    expect(await readyz()).toEqual({
      status: 200,
      body: { status: "ready", database: "ok", migrations: "applied", draining: false },
    });
    freeze("SIGSTOP");
    try {
      for (let i = 0; i < 2; i++) {
        expect(await readyz()).toEqual({
          status: 503,
          body: {
            status: "not ready",
            database: "timeout",
            migrations: "unknown",
            draining: false,
          },
        });
      }
      const alive = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(2_000) });
      expect(alive.status).toBe(200);
      expect(await alive.json()).toEqual({ status: "alive" });
    } finally {
      freeze("SIGCONT");
    }
    let seen = await readyz();
    for (let i = 0; i < 100 && seen.status !== 200; i++) {
      await sleep(100);
      seen = await readyz();
    }
    expect(seen.status).toBe(200);
  });

  it("answers NOT_SERVING within 2 s while Postgres is stopped, and SERVING once it resumes", async () => {
    expect(await check()).toBe(Status.SERVING);

    freeze("SIGSTOP");
    try {
      // Again and again: checks must not pile up behind the hung one.
      for (let i = 0; i < 3; i++) expect(await check()).toBe(Status.NOT_SERVING);
    } finally {
      freeze("SIGCONT");
    }

    let status = await check();
    for (let i = 0; i < 100 && status !== Status.SERVING; i++) {
      await sleep(100);
      status = await check();
    }
    expect(status).toBe(Status.SERVING);
  });
});

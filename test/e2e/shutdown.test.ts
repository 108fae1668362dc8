import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { connect as netConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/health/v1/health_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { type Event, EventService } from "../../gen/holdfast/v1/event_pb.js";
import { loadConfig } from "../../src/config.js";
import { startHoldfast } from "../../src/server.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { bearer, clientFor } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import { descendants, spawnRaw, spawnServer, stillRunningAfter } from "../support/process.js";
import { ADMIN_KEY, startTestServer } from "../support/server.js";

/** Waits until a session of the server waits for a lock (bounded: fails after `ms`). */
async function untilServerWaitsForLock(url: string, ms = 30_000): Promise<void> {
  const watcher = new pg.Client({ connectionString: url });
  await watcher.connect();
  try {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const { rows } = await watcher.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE datname = current_database() AND application_name = 'holdfast' AND wait_event_type = 'Lock'`,
      );
      if (rows[0].n > 0) return;
      await sleep(20);
    }
    throw new Error("the server never waited for the lock");
  } finally {
    await watcher.end();
  }
}

/**
 * A server in a process of its own on a fresh database, killed if the test
 * leaves it running. Lock waits and statements may last a minute, so a
 * call waiting for a lock ends only as the test (or the stop) decides.
 */
async function serverProcess(shutdownGraceMs: string) {
  const databaseUrl = await freshDatabase();
  const server = await spawnServer({
    DATABASE_URL: databaseUrl,
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    HOLDFAST_DB_LOCK_TIMEOUT_MS: "60000",
    HOLDFAST_DB_STATEMENT_TIMEOUT_MS: "60000",
    HOLDFAST_SHUTDOWN_GRACE_MS: shutdownGraceMs,
  });
  onTestFinished(async () => {
    if (server.child.exitCode === null && server.child.signalCode === null)
      server.child.kill("SIGKILL");
  });
  return { databaseUrl, server };
}

/** Takes a resource's lock in a transaction of the test's own, held until ROLLBACK. */
async function holdResourceLock(databaseUrl: string, tenantId: string, resourceId: string) {
  const holder = new pg.Client({ connectionString: databaseUrl });
  await holder.connect();
  onTestFinished(() => holder.end());
  await holder.query("BEGIN");
  await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
    tenantId,
    resourceId,
  ]);
  return holder;
}

describe("graceful stop", () => {
  it("on SIGTERM: refuses new connections, ends streams with UNAVAILABLE, finishes calls in flight, exits 0", async () => {
    // Generous, so the test depends on no timing: the call in flight
    // finishes because the test lets it, not because a limit passed.
    const { databaseUrl, server } = await serverProcess("60000");
    const w = await bookingWorld(server.url);

    // A consumer, live: it has received the first hold's event.
    const received: Event[] = [];
    const ended = (async () => {
      try {
        for await (const res of clientFor(EventService, server.url, w.key).watchEvents({})) {
          if (res.event) received.push(res.event);
        }
        return "ended with OK";
      } catch (err) {
        return err;
      }
    })();
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(2, 9) });
    while (received.length === 0) await sleep(20);

    // A call in flight: its hold waits for the resource's lock, held here.
    const holder = await holdResourceLock(databaseUrl, w.tenantId, w.resourceId);
    const inFlight = w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(2, 11),
    });
    await untilServerWaitsForLock(databaseUrl);

    server.child.kill("SIGTERM");

    // The stream ends with Unavailable and the cursor to resume from.
    const outcome = await ended;
    expect(outcome).toBeInstanceOf(ConnectError);
    const err = outcome as ConnectError;
    const info = err.findDetails(ErrorInfoSchema)[0];
    expect({ code: Code[err.code], reason: info?.reason }).toEqual({
      code: "Unavailable",
      reason: "UNAVAILABLE",
    });
    const cursor = info?.metadata.cursor as string;
    expect(cursor).toMatch(/^ev2_/);

    // New connections are refused while the call in flight goes on.
    const fresh = clientFor(Health, server.url, undefined).check({}, { timeoutMs: 10_000 });
    await expect(fresh).rejects.toMatchObject({ code: Code.Unavailable });
    expect(server.child.exitCode).toBeNull();

    // Released, the call in flight finishes with its answer; then the process exits 0.
    await holder.query("ROLLBACK");
    const { booking } = await inFlight;
    expect(booking?.status).toBe(BookingStatus.HELD);
    expect(await server.exited).toBe(0);

    // The cursor is past the event received (and any the stream read past),
    // never past one that had not committed: from it, on another instance,
    // comes exactly the hold that was in flight.
    const next = await startTestServer({}, databaseUrl);
    let after: Event[] = [];
    for (let i = 0; i < 250 && after.length === 0; i++) {
      after = (await clientFor(EventService, next.url, w.key).listEvents({ after: cursor })).events;
      if (after.length === 0) await sleep(20);
    }
    expect(after.map((e) => [e.type, e.booking?.id])).toEqual([["booking.held", booking?.id]]);
  });
});

describe("stopping", { timeout: 120_000 }, () => {
  it("ends every Health/Watch stream: NOT_SERVING, then UNAVAILABLE", async () => {
    const holdfast = await startHoldfast(
      loadConfig({
        PORT: "0",
        HOLDFAST_ADMIN_KEY: ADMIN_KEY,
        HOLDFAST_LOG_LEVEL: "error",
        // Generous: the streams end because the stop ends them, not because a limit passed.
        HOLDFAST_SHUTDOWN_GRACE_MS: "60000",
      }),
      await freshDatabase(),
    );
    let closed: Promise<void> | undefined;
    onTestFinished(() => closed ?? holdfast.close());
    const watch = async (protocol: "grpc" | "grpc-web" | "connect") => {
      const seen: string[] = [];
      try {
        for await (const res of clientFor(Health, holdfast.url, undefined, protocol).watch({})) {
          seen.push(Status[res.status]);
        }
        seen.push("ended with OK");
      } catch (err) {
        const e = ConnectError.from(err);
        seen.push(`${Code[e.code]} ${e.findDetails(ErrorInfoSchema)[0]?.reason}`);
      }
      return seen;
    };
    const streams = (["grpc", "grpc-web", "connect"] as const).map(watch);
    // Every stream has said SERVING before the stop: a check answers once they all have.
    const health = clientFor(Health, holdfast.url, undefined);
    expect((await health.check({})).status).toBe(Status.SERVING);
    await sleep(300);
    closed = holdfast.close();
    const outcomes = await Promise.all(streams);
    await closed;
    for (const seen of outcomes) {
      expect(seen).toEqual(["SERVING", "NOT_SERVING", "Unavailable UNAVAILABLE"]);
    }
  });

  it("delivers every stream's closing error and cursor, to clients that keep writing to the connection too", async () => {
    // A client pinging every millisecond has bytes in flight whenever the
    // stop ends: destroying its connection then resets it, and the client
    // drops the closing error it had been sent (http/2 CANCEL instead).
    const databaseUrl = await freshDatabase();
    const outcomes = new Map<string, number>();
    for (let round = 0; round < 5; round++) {
      const server = await startTestServer({}, databaseUrl);
      const w = await bookingWorld(server.url);
      // Each on a connection of its own: 40 clients, 40 connections.
      const streams = Array.from({ length: 40 }, async () => {
        const client = createClient(
          EventService,
          createGrpcTransport({
            baseUrl: server.url,
            pingIntervalMs: 1,
            interceptors: [bearer(w.key)],
          }),
        );
        try {
          for await (const _ of client.watchEvents({})) {
          }
          return "ended with OK";
        } catch (err) {
          const e = ConnectError.from(err);
          const info = e.findDetails(ErrorInfoSchema)[0];
          return `${Code[e.code]} ${info?.reason} ${info?.metadata.cursor ? "with" : "without"} a cursor`;
        }
      });
      await vi.waitFor(
        async () => expect((await scrape(server.url)).get("holdfast_event_streams")).toBe(40),
        { timeout: 30_000, interval: 50 },
      );
      await server.close();
      for (const outcome of await Promise.all(streams)) {
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
      }
    }
    expect(Object.fromEntries(outcomes)).toEqual({ "Unavailable UNAVAILABLE with a cursor": 200 });
  });

  it("serves no request that arrives once its calls are done: not on a stream's kept-alive connection, nor on one that had said nothing", async () => {
    const databaseUrl = await freshDatabase();
    const server = await startTestServer({}, databaseUrl);
    const w = await bookingWorld(server.url);
    const rename = (name: string) =>
      JSON.stringify({ resource: { id: w.resourceId, name }, updateMask: "name" });
    const request = (body: string) =>
      `POST /holdfast.v1.ResourceService/UpdateResource HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nauthorization: Bearer ${w.key}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    /** A raw HTTP/1.1 connection and what it has been sent. */
    const open = async () => {
      const socket = netConnect(server.port, "127.0.0.1");
      let got = "";
      socket.on("data", (d) => {
        got += d.toString();
      });
      socket.on("error", () => {});
      await new Promise((r) => socket.once("connect", r));
      return { socket, got: () => got };
    };
    // A Server-Sent Events stream, kept alive, and a connection that has said nothing yet.
    const sse = await open();
    sse.socket.write(
      `GET /v1/events/stream HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${w.key}\r\n\r\n`,
    );
    const silent = await open();
    await vi.waitFor(
      async () => expect((await scrape(server.url)).get("holdfast_event_streams")).toBe(1),
      { timeout: 10_000 },
    );
    const closed = server.close();
    // The stream ends with the stop (its last chunk); then each sends a write.
    await vi.waitFor(() => expect(sse.got()).toMatch(/\r\n0\r\n\r\n$/), { timeout: 10_000 });
    await sleep(100);
    for (const [i, c] of [sse, silent].entries()) {
      if (!c.socket.destroyed) c.socket.write(request(rename(`late ${i}`)));
    }
    await closed;
    for (const c of [sse, silent]) {
      expect(c.got().split("HTTP/1.1 200 OK").length).toBeLessThanOrEqual(2);
      expect(c.got()).not.toContain("late");
      c.socket.destroy();
    }
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    const { rows } = await db.query("SELECT name FROM resources WHERE id = $1", [w.resourceId]);
    await db.end();
    expect(rows[0].name).toBe("R0");
  });

  it("when asked to stop while starting: finishes starting, stops everything and exits 0", async () => {
    const parent = await mkdtemp(join(tmpdir(), "holdfast-stop-"));
    onTestFinished(() => rm(parent, { recursive: true, force: true }));
    await chmod(parent, 0o755);
    const dataDir = join(parent, "data");
    const server = spawnRaw({ HOLDFAST_DATA_DIR: dataDir, PORT: "0", HOLDFAST_LOG_LEVEL: "info" });
    onTestFinished(() => {
      if (server.child.exitCode === null && server.child.signalCode === null)
        server.child.kill("SIGKILL");
    });
    // The embedded Postgres is being created (initdb, then its start): stop now.
    while (!server.stderr().includes("starting embedded Postgres")) {
      if (server.child.exitCode !== null) throw new Error(`exited early:\n${server.stderr()}`);
      await sleep(10);
    }
    const tree = () => descendants(server.child.pid as number);
    server.child.kill("SIGTERM");
    let seenBelow: number[] = [];
    const exited = server.exited;
    // Whatever it started below it (initdb, Postgres) while stopping is gone after it.
    while (server.child.exitCode === null) {
      seenBelow = [...new Set([...seenBelow, ...tree()])];
      await sleep(20);
    }
    expect(await exited).toBe(0);
    expect(await stillRunningAfter(seenBelow, 10_000)).toEqual([]);
    expect(server.stdout()).not.toContain("Holdfast listening");
    // The data directory is released: the next start takes it without complaint.
    expect(existsSync(join(dataDir, "holdfast.pid"))).toBe(false);
    expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);
  });

  it("cuts calls still running after HOLDFAST_SHUTDOWN_GRACE_MS and exits 0", async () => {
    // The call below would wait a minute for its lock; the grace is 1 s.
    const { databaseUrl, server } = await serverProcess("1000");
    const w = await bookingWorld(server.url);
    const holder = await holdResourceLock(databaseUrl, w.tenantId, w.resourceId);
    const inFlight = w.bookings
      .createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(2, 11) })
      .then(
        () => "answered",
        (err: unknown) => Code[ConnectError.from(err).code],
      );
    await untilServerWaitsForLock(databaseUrl);

    server.child.kill("SIGTERM");
    // It exits while the lock is still held: the call was cut, not waited for.
    expect(await server.exited).toBe(0);
    expect(await inFlight).not.toBe("answered");
    expect(server.stderr()).toContain("calls still running after the grace period were cut");
    await holder.query("ROLLBACK");
    // Nothing of the cut call is left in Postgres, and it changed nothing.
    let left = -1;
    for (let i = 0; i < 500 && left !== 0; i++) {
      if (i > 0) await sleep(20);
      const { rows } = await holder.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'holdfast'",
      );
      left = rows[0].n;
    }
    expect(left).toBe(0);
    const { rows } = await holder.query(
      "SELECT count(*)::int AS n FROM bookings WHERE tenant_id = $1",
      [w.tenantId],
    );
    expect(rows[0].n).toBe(0);
  });
});

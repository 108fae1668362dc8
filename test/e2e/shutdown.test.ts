import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { describe, expect, it, onTestFinished } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { type Event, EventService } from "../../gen/holdfast/v1/event_pb.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { spawnServer } from "../support/process.js";
import { ADMIN_KEY } from "../support/server.js";

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

describe("graceful stop", () => {
  it("on SIGTERM: refuses new connections, ends streams with UNAVAILABLE, finishes calls in flight, exits 0", async () => {
    const databaseUrl = await freshDatabase();
    const server = await spawnServer({
      DATABASE_URL: databaseUrl,
      PORT: "0",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
      // Generous, so the test depends on no timing: the call in flight
      // finishes because the test lets it, not because a limit passed.
      HOLDFAST_DB_LOCK_TIMEOUT_MS: "60000",
      HOLDFAST_DB_STATEMENT_TIMEOUT_MS: "60000",
      HOLDFAST_SHUTDOWN_GRACE_MS: "60000",
    });
    onTestFinished(async () => {
      if (server.child.exitCode === null && server.child.signalCode === null)
        server.child.kill("SIGKILL");
    });
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
    const holder = new pg.Client({ connectionString: databaseUrl });
    await holder.connect();
    onTestFinished(() => holder.end());
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      w.tenantId,
      w.resourceId,
    ]);
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
    expect(info?.metadata.cursor).toBe(received.at(-1)?.cursor);

    // New connections are refused while the call in flight goes on.
    const fresh = clientFor(Health, server.url, undefined).check({}, { timeoutMs: 10_000 });
    await expect(fresh).rejects.toMatchObject({ code: Code.Unavailable });
    expect(server.child.exitCode).toBeNull();

    // Released, the call in flight finishes with its answer; then the process exits 0.
    await holder.query("ROLLBACK");
    const { booking } = await inFlight;
    expect(booking?.status).toBe(BookingStatus.HELD);
    expect(await server.exited).toBe(0);
  });
});

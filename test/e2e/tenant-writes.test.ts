import pg from "pg";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase, lockWaiters } from "../support/database.js";
import { startTestServer } from "../support/server.js";

/**
 * One tenant's writes queued on a resource whose lock is held take at most
 * HOLDFAST_WRITE_LANES connections of the pool at once: the other tenants'
 * calls keep theirs.
 */

/** Until `n` sessions of the servers wait for a lock. */
const untilWaiting = (databaseUrl: string, n: number) =>
  vi.waitFor(async () => expect(await lockWaiters(databaseUrl)).toBe(n), {
    timeout: 30_000,
    interval: 20,
  });

describe("a tenant's writes waiting for a lock", { timeout: 120_000 }, () => {
  it("take at most its write lanes' connections; other tenants' reads and writes go on, and its own finish once the lock is free", async () => {
    const databaseUrl = await freshDatabase();
    const server = await startTestServer(
      {
        HOLDFAST_DB_POOL_SIZE: "4",
        HOLDFAST_WRITE_LANES: "2",
        HOLDFAST_DB_LOCK_TIMEOUT_MS: "20000",
      },
      databaseUrl,
    );
    const busy = await bookingWorld(server.url);
    const holds = [];
    for (let i = 0; i < 12; i++) {
      const { booking } = await busy.bookings.createHold({
        serviceId: busy.serviceId,
        resourceId: busy.resourceId,
        ...at(3, 8, i * 30),
      });
      holds.push(booking?.id as string);
    }
    // Another session holds the resource's lock, as a stuck writer would.
    const holder = new pg.Client({ connectionString: databaseUrl });
    await holder.connect();
    onTestFinished(() => holder.end());
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      busy.tenantId,
      busy.resourceId,
    ]);
    // Each hold moved a day later: twelve writes queue on the lock.
    const settled: string[] = [];
    const moves = holds.map((bookingId, i) =>
      busy.bookings.rescheduleBooking({ bookingId, ...at(4, 8, i * 30) }).then(
        () => settled.push("moved"),
        (err: unknown) => settled.push(String(err)),
      ),
    );
    await untilWaiting(databaseUrl, 2);

    // Another tenant reads and writes meanwhile, on a connection of its own.
    const other = await bookingWorld(server.url);
    const resources = clientFor(ResourceService, server.url, other.key);
    for (let i = 0; i < 5; i++) {
      await resources.listResources({});
      await resources.updateResource({
        resource: { id: other.resourceId, name: `Room ${i}` },
        updateMask: { paths: ["name"] },
      });
    }
    await other.bookings.createHold({
      serviceId: other.serviceId,
      resourceId: other.resourceId,
      ...at(3, 9),
    });
    expect(settled).toEqual([]);
    // No more of the busy tenant's writes than its lanes wait in Postgres.
    await untilWaiting(databaseUrl, 2);

    await holder.query("COMMIT");
    await Promise.all(moves);
    expect(settled).toEqual(holds.map(() => "moved"));
  });
});

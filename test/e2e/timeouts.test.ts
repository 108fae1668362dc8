import { Code } from "@connectrpc/connect";
import pg from "pg";
import { describe, expect, it, onTestFinished } from "vitest";
import { at, bookingWorld } from "../support/booking.js";
import { rejected } from "../support/clients.js";
import { startTestServer } from "../support/server.js";

describe("time limits toward Postgres", async () => {
  // Small limits so the test is quick; the defaults are in the README.
  const server = await startTestServer({ HOLDFAST_DB_LOCK_TIMEOUT_MS: "300" });

  it("answers a writer stuck behind another session's lock on the resource with UNAVAILABLE", async () => {
    const world = await bookingWorld(server.url);
    const holder = new pg.Pool({ connectionString: server.databaseUrl, max: 1 });
    onTestFinished(() => holder.end());
    const stuck = await holder.connect();
    await stuck.query("BEGIN");
    await stuck.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      world.tenantId,
      world.resourceId,
    ]);
    try {
      // A deadline far past the limit: the answer must come from the limit.
      const hold = world.bookings.createHold(
        { serviceId: world.serviceId, resourceId: world.resourceId, ...at(3, 10) },
        { timeoutMs: 60_000 },
      );
      const err = await rejected(hold, Code.Unavailable, "UNAVAILABLE");
      expect(err.message).toContain("retry");
    } finally {
      await stuck.query("ROLLBACK");
      stuck.release();
    }
    // Once the holder is gone the same request goes through.
    const { booking } = await world.bookings.createHold({
      serviceId: world.serviceId,
      resourceId: world.resourceId,
      ...at(3, 10),
    });
    expect(booking?.id).toMatch(/^bkg_/);
  });
});

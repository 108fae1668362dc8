import { ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, jsonReason, postJson } from "../support/clients.js";
import { type ServerProcess, spawnServer } from "../support/process.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

type Result = {
  won: boolean;
  reason?: string;
  conflicts?: [bigint | undefined, bigint | undefined][];
};

async function settle(call: Promise<unknown>): Promise<Result> {
  try {
    await call;
    return { won: true };
  } catch (err) {
    const ce = ConnectError.from(err);
    const conflicts = ce
      .findDetails(SlotConflictSchema)[0]
      ?.conflicts.map(
        (c) =>
          [c.startTime?.seconds, c.endTime?.seconds] as [bigint | undefined, bigint | undefined],
      );
    return { won: false, reason: ce.findDetails(ErrorInfoSchema)[0]?.reason, conflicts };
  }
}

async function activeBookings(resourceId: string): Promise<number> {
  const { rows } = await server.pool.query(
    "SELECT count(*)::int AS n FROM bookings WHERE resource_id = $1 AND status IN ('held', 'confirmed')",
    [resourceId],
  );
  return rows[0].n;
}

describe("one slot, many callers", () => {
  it("50 concurrent holds over gRPC: exactly one HELD, 49 SLOT_UNAVAILABLE naming the winner's range", async () => {
    const w = await bookingWorld(server.url);
    const slot = at(1, 10);
    // Ten connections, five calls each, all in flight at once.
    const clients = Array.from({ length: 10 }, () =>
      clientFor(BookingService, server.url, w.key, "grpc"),
    );
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        settle(
          (clients[i % 10] as (typeof clients)[number]).createHold({
            serviceId: w.serviceId,
            resourceId: w.resourceId,
            ...slot,
            attendee: { name: `caller ${i}` },
          }),
        ),
      ),
    );
    expect(results.filter((r) => r.won)).toHaveLength(1);
    const losers = results.filter((r) => !r.won);
    expect(losers).toHaveLength(49);
    for (const l of losers) {
      expect(l.reason).toBe("SLOT_UNAVAILABLE");
      expect(l.conflicts).toEqual([[slot.startTime.seconds, slot.endTime.seconds]]);
    }
    expect(await activeBookings(w.resourceId)).toBe(1);
  });

  it("50 concurrent holds as plain JSON posts: one 200, 49 HTTP 409 SLOT_UNAVAILABLE", async () => {
    const w = await bookingWorld(server.url);
    const slot = { startTime: "2030-01-07T10:00:00Z", endTime: "2030-01-07T10:30:00Z" };
    const replies = await Promise.all(
      Array.from({ length: 50 }, () =>
        postJson(
          server.url,
          "holdfast.v1.BookingService/CreateHold",
          { serviceId: w.serviceId, resourceId: w.resourceId, ...slot },
          w.key,
        ),
      ),
    );
    expect(replies.filter((r) => r.status === 200)).toHaveLength(1);
    const conflicts = replies.filter((r) => r.status === 409);
    expect(conflicts).toHaveLength(49);
    for (const c of conflicts) {
      expect(c.body.code).toBe("aborted");
      expect(jsonReason(c)).toBe("SLOT_UNAVAILABLE");
      const detail = (c.body.details as { type: string; debug: { conflicts: unknown[] } }[]).find(
        (d) => d.type === "holdfast.v1.SlotConflict",
      );
      expect(detail?.debug.conflicts).toEqual([
        {
          ...slot,
          status: "BOOKING_STATUS_HELD",
          // On the resource's clock (UTC here).
          resourceId: w.resourceId,
          timeZone: "UTC",
          localStartTime: slot.startTime.replace("Z", "+00:00"),
          localEndTime: slot.endTime.replace("Z", "+00:00"),
        },
      ]);
    }
    expect(await activeBookings(w.resourceId)).toBe(1);
  });

  it("capacity 3: exactly three of 50 win", async () => {
    const w = await bookingWorld(server.url, { capacity: 3 });
    const results = await Promise.all(
      Array.from({ length: 50 }, () =>
        settle(
          w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) }),
        ),
      ),
    );
    expect(results.filter((r) => r.won)).toHaveLength(3);
    expect(results.filter((r) => r.reason === "SLOT_UNAVAILABLE")).toHaveLength(47);
    expect(await activeBookings(w.resourceId)).toBe(3);
  });

  it("holds and direct bookings racing on overlapping ranges never overlap", async () => {
    const w = await bookingWorld(server.url);
    const ranges = [at(1, 12), at(1, 12, 30), at(1, 12, 0, 60), at(1, 12, 15, 30), at(1, 13)];
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => {
        const r = ranges[i % ranges.length] as (typeof ranges)[number];
        const call = i % 2 ? w.bookings.createHold : w.bookings.createBooking;
        return settle(
          call({
            serviceId: w.serviceId,
            resourceId: w.resourceId,
            startTime: r.startTime,
            endTime: r.endTime,
          }),
        );
      }),
    );
    expect(results.some((r) => r.won)).toBe(true);
    const { rows } = await server.pool.query(
      `SELECT count(*)::int AS n FROM bookings a JOIN bookings b ON a.resource_id = b.resource_id AND a.id < b.id
       WHERE a.resource_id = $1 AND a.status IN ('held','confirmed') AND b.status IN ('held','confirmed')
         AND tstzrange(a.start_time, a.end_time) && tstzrange(b.start_time, b.end_time)`,
      [w.resourceId],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("two server processes on one database", () => {
  let other: ServerProcess;
  afterAll(async () => {
    await other?.stop();
  });

  it("split the race between them and still get exactly one winner", async () => {
    other = await spawnServer({
      DATABASE_URL: server.databaseUrl,
      PORT: "0",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    });
    const w = await bookingWorld(server.url);
    const here = clientFor(BookingService, server.url, w.key);
    const there = clientFor(BookingService, other.url, w.key);
    const slot = at(1, 15);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        settle(
          (i % 2 ? here : there).createHold({
            serviceId: w.serviceId,
            resourceId: w.resourceId,
            ...slot,
          }),
        ),
      ),
    );
    expect(results.filter((r) => r.won)).toHaveLength(1);
    expect(results.filter((r) => r.reason === "SLOT_UNAVAILABLE")).toHaveLength(49);
    const winner = (await here.listBookings({ resourceId: w.resourceId })).bookings;
    expect(winner.map((b) => b.status)).toEqual([BookingStatus.HELD]);
    expect(await activeBookings(w.resourceId)).toBe(1);
  });
});

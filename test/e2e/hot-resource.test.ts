import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import {
  BookingService,
  BookingStatus,
  type CreateHoldResponse,
} from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { at, type BookingWorld, bookingWorld } from "../support/booking.js";
import { clientFor, keyed, rejected } from "../support/clients.js";
import { scrape } from "../support/metrics.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * Concurrent holds on one resource through a real server, over real
 * clients: the server batches them (src/booking/batches.ts). Batches are
 * forced by holding the resource's advisory lock from another session
 * while the calls arrive and queue behind the first; the xmin of what was
 * written shows which transaction wrote it.
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

/**
 * Holds the resource's lock while `calls` start, each waiting until the
 * server has queued it (so they queue in this order), then lets go.
 */
async function batched<T>(
  w: BookingWorld,
  calls: (() => Promise<T>)[],
): Promise<(T | ConnectError)[]> {
  const holder = new pg.Client({ connectionString: server.databaseUrl });
  await holder.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      w.tenantId,
      w.resourceId,
    ]);
    const answers: Promise<T | ConnectError>[] = [];
    for (const call of calls) {
      const before = server.batches.pending(w.tenantId, w.resourceId);
      answers.push(call().catch((err: unknown) => ConnectError.from(err)));
      for (let i = 0; server.batches.pending(w.tenantId, w.resourceId) === before; i++) {
        if (i > 2000) throw new Error("the call never reached the resource's queue");
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    await holder.query("ROLLBACK");
    return await Promise.all(answers);
  } finally {
    await holder.end();
  }
}

const reasonOf = (e: unknown) =>
  e instanceof ConnectError ? e.findDetails(ErrorInfoSchema)[0]?.reason : undefined;

async function xmins(sql: string, tenantId: string): Promise<Map<string, string>> {
  const { rows } = await server.pool.query<{ k: string; x: string }>(sql, [tenantId]);
  return new Map(rows.map((r) => [r.k, r.x]));
}

describe("holds on one hot resource, batched by the server", () => {
  it("give each caller its own answer in one batch: a winner, a loser of its slot, a replay, a refusal", async () => {
    const w = await bookingWorld(server.url);
    const req = (slot: ReturnType<typeof at>) => ({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      startTime: slot.startTime,
      endTime: slot.endTime,
    });
    const first = await w.bookings.createHold(req(at(1, 11)), keyed("first").options);
    const [good, second, replay, soon] = [
      keyed("good"),
      keyed("second"),
      keyed("first"),
      keyed("soon"),
    ];
    const [opener, won, lost, replayed, tooSoon] = await batched<CreateHoldResponse>(w, [
      () => w.bookings.createHold(req(at(1, 9))),
      () => w.bookings.createHold(req(at(1, 10)), good.options),
      () => w.bookings.createHold(req(at(1, 10)), second.options),
      () => w.bookings.createHold(req(at(1, 11)), replay.options),
      // Yesterday: refused by the clock under the lock.
      () => w.bookings.createHold(req(at(-1, 10)), soon.options),
    ]);

    expect((opener as CreateHoldResponse).booking?.status).toBe(BookingStatus.HELD);
    const booking = (won as CreateHoldResponse).booking;
    expect(booking?.status).toBe(BookingStatus.HELD);
    expect(good.seen.replayed).toBe(false);
    // The second for 10:00 came after the first in the batch: refused with
    // the winner's range, and alternatives as for any conflict.
    expect(lost).toBeInstanceOf(ConnectError);
    expect((lost as ConnectError).code).toBe(Code.Aborted);
    expect(reasonOf(lost)).toBe("SLOT_UNAVAILABLE");
    const detail = (lost as ConnectError).findDetails(SlotConflictSchema)[0];
    expect(detail?.conflicts.map((c) => c.startTime && timestampMs(c.startTime))).toEqual([
      at(1, 10).startMs,
    ]);
    expect(detail?.alternatives).toHaveLength(3);
    for (const a of detail?.alternatives ?? []) {
      expect([9, 10, 11].map((h) => at(1, h).startMs)).not.toContain(
        a.startTime && timestampMs(a.startTime),
      );
    }
    expect(replay.seen.replayed).toBe(true);
    expect(replayed).toEqual(first);
    expect(reasonOf(tooSoon)).toBe("TOO_SOON");

    // One transaction wrote the batch: the winner's booking and event, and
    // the outcome of each new key in it.
    const bookings = await xmins(
      "SELECT id AS k, xmin::text AS x FROM bookings WHERE tenant_id = $1",
      w.tenantId,
    );
    const keys = await xmins(
      "SELECT key AS k, xmin::text AS x FROM idempotency_keys WHERE tenant_id = $1",
      w.tenantId,
    );
    const events = await xmins(
      "SELECT booking_id || ' ' || type AS k, xmin::text AS x FROM outbox WHERE tenant_id = $1",
      w.tenantId,
    );
    const batch = bookings.get(booking?.id as string);
    for (const key of ["good", "second", "soon"]) expect(keys.get(key)).toBe(batch);
    expect(keys.get("first")).not.toBe(batch);
    const ids = [first, opener, won].map((r) => (r as CreateHoldResponse).booking?.id);
    expect([...events.keys()].sort()).toEqual(ids.map((id) => `${id} booking.held`).sort());
    expect(events.get(`${booking?.id} booking.held`)).toBe(batch);

    // Each refusal was kept under its key and replays.
    await rejected(
      w.bookings.createHold(req(at(1, 10)), keyed("second").options),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
  });

  it("50 concurrent holds on one slot, over two protocols: one winner, batched", async () => {
    const w = await bookingWorld(server.url);
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(2, 10) };
    const clients = [
      clientFor(BookingService, server.url, w.key, "grpc"),
      clientFor(BookingService, server.url, w.key, "connect"),
    ];
    const before = await scrape(server.url);
    const answers = await batched(
      w,
      Array.from(
        { length: 50 },
        (_, i) => () =>
          (clients[i % 2] as (typeof clients)[number]).createHold(slot, keyed(`race-${i}`).options),
      ),
    );
    const winners = answers.filter((a) => !(a instanceof ConnectError));
    expect(winners).toHaveLength(1);
    expect(answers.filter((a) => reasonOf(a) === "SLOT_UNAVAILABLE")).toHaveLength(49);
    // The metrics count the three writes: one alone, then 32 and 17 together.
    const after = await scrape(server.url);
    const grew = (sample: string) => (after.get(sample) ?? 0) - (before.get(sample) ?? 0);
    expect(grew("holdfast_booking_batch_creates_count")).toBe(3);
    expect(grew("holdfast_booking_batch_creates_sum")).toBe(50);
    expect(grew('holdfast_booking_batch_creates_bucket{le="1"}')).toBe(1);
    expect(grew('holdfast_booking_batch_creates_bucket{le="16"}')).toBe(1);
    expect(grew('holdfast_booking_batch_creates_bucket{le="32"}')).toBe(3);
    const { rows } = await server.pool.query(
      "SELECT count(*)::int AS n FROM outbox WHERE tenant_id = $1",
      [w.tenantId],
    );
    expect(rows[0].n).toBe(1);
    const keys = await xmins(
      "SELECT key AS k, xmin::text AS x FROM idempotency_keys WHERE tenant_id = $1",
      w.tenantId,
    );
    const sizes = new Map<string, number>();
    for (const x of keys.values()) sizes.set(x, (sizes.get(x) ?? 0) + 1);
    expect([...sizes.values()].sort((a, b) => a - b)).toEqual([1, 17, 32]);
  });
});

import { ConnectError } from "@connectrpc/connect";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { at, bookingWorld, minutes, seconds, sleep } from "../support/booking.js";
import { clientFor } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  // A busy sweeper, so expiry by the sweeper and by writes interleave too.
  server = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "100" });
});

type Op =
  | {
      kind: "hold" | "book";
      service: number;
      resource: number;
      slot: number;
      length: 30 | 60;
      ttl: 1 | 2 | 60;
    }
  | { kind: "confirm" | "cancel" | "extend"; target: number }
  | { kind: "wait"; ms: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constantFrom("hold" as const, "book" as const),
      service: fc.nat(1),
      resource: fc.nat(2),
      slot: fc.nat(7),
      length: fc.constantFrom(30 as const, 60 as const),
      ttl: fc.constantFrom(1 as const, 2 as const, 60 as const),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constantFrom("confirm" as const, "cancel" as const, "extend" as const),
      target: fc.nat(40),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("wait" as const),
      ms: fc.constantFrom(0, 300, 1_100),
    }),
  },
);

/** Batches of operations; each batch runs concurrently, batches run in order. */
const scenario = fc.array(fc.array(op, { minLength: 1, maxLength: 8 }), {
  minLength: 3,
  maxLength: 8,
});

/**
 * Capacity was never exceeded: each booking occupies its block range from
 * its creation until it was cancelled, completed or (as a hold never
 * confirmed) reached its expire_time. The busiest moment is at some
 * booking's creation, and the busiest instant of the day at some block's
 * start, so checking every such pair covers every moment and instant.
 */
async function overbooked(tenantId: string) {
  const { rows } = await server.pool.query(
    `WITH life AS (
       SELECT b.id, b.resource_id, r.capacity, b.block_start, b.block_end, b.create_time AS born,
              least(coalesce((SELECT min(o.occur_time) FROM outbox o
                              WHERE o.booking_id = b.id AND o.type IN ('booking.cancelled', 'booking.completed', 'booking.no_show')),
                             'infinity'),
                    coalesce(b.expire_time, 'infinity')) AS death
       FROM bookings b JOIN resources r ON r.tenant_id = b.tenant_id AND r.id = b.resource_id
       WHERE b.tenant_id = $1),
     points AS (
       SELECT DISTINCT a.resource_id, a.capacity, a.born AS t, c.block_start AS p
       FROM life a JOIN life c ON c.resource_id = a.resource_id)
     SELECT points.resource_id, points.t, points.p, points.capacity, count(*)::int AS n
     FROM points JOIN life z ON z.resource_id = points.resource_id
       AND z.born <= points.t AND points.t < z.death
       AND z.block_start <= points.p AND points.p < z.block_end
     GROUP BY 1, 2, 3, 4
     HAVING count(*) > points.capacity`,
    [tenantId],
  );
  return rows;
}

describe("the overbooking check", () => {
  it("finds two overlapping live bookings written behind the API's back", async () => {
    const w = await bookingWorld(server.url);
    const r = at(1, 9);
    const insert = (start: number, minutesLong: number) =>
      server.pool.query(
        `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                               status, policy_version, exclusive, create_time, update_time)
         VALUES ($1, $2, $3, $4, $5, $4, $5, 'confirmed', 1, false, now(), now())`,
        [
          w.tenantId,
          w.serviceId,
          w.resourceId,
          new Date(start),
          new Date(start + minutesLong * 60_000),
        ],
      );
    await insert(r.startMs, 30);
    expect(await overbooked(w.tenantId)).toEqual([]);
    await insert(r.startMs + 15 * 60_000, 30);
    expect(await overbooked(w.tenantId)).toHaveLength(1);
  });
});

describe("random interleavings of holds, bookings, confirms, extends, cancels and expiries", () => {
  it("never exceed any resource's capacity, at any moment", async () => {
    let runs = 0;
    let written = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (batches) => {
        runs++;
        const w = await bookingWorld(server.url, { resources: 3, capacity: 1 });
        // A second resource capacity and a second service with a buffer.
        await w.resources.updateResource({
          resource: { id: w.resourceIds[2] as string, capacity: 2 },
        });
        const buffered = await clientFor(CatalogService, server.url, w.key).createService({
          name: "Buffered",
          resourceIds: w.resourceIds,
          policy: {
            durations: [minutes(30), minutes(60)],
            bufferBefore: minutes(15),
            slotInterval: minutes(15),
            holdTtl: seconds(60),
          },
        });
        const services = [w.serviceId, buffered.service?.id as string];
        const made: string[] = [];
        for (const batch of batches) {
          await Promise.allSettled(
            batch.map(async (o) => {
              if (o.kind === "wait") return sleep(o.ms);
              if (o.kind === "hold" || o.kind === "book") {
                const r = at(1, 9, o.slot * 15, o.length);
                const req = {
                  serviceId: services[o.service] as string,
                  resourceId: w.resourceIds[o.resource] as string,
                  startTime: r.startTime,
                  endTime: r.endTime,
                };
                const res =
                  o.kind === "hold"
                    ? await w.bookings.createHold({ ...req, ttl: seconds(o.ttl) })
                    : await w.bookings.createBooking(req);
                made.push(res.booking?.id as string);
                return;
              }
              const bookingId =
                made[(o as Extract<Op, { target: number }>).target % Math.max(made.length, 1)];
              if (!bookingId) return;
              if (o.kind === "confirm") await w.bookings.confirmBooking({ bookingId });
              else if (o.kind === "cancel") await w.bookings.cancelBooking({ bookingId });
              else await w.bookings.extendHold({ bookingId, ttl: seconds(2) });
            }),
          ).then((results) => {
            for (const r of results) {
              // Refusals are expected; anything but a Holdfast rejection is a bug.
              if (
                r.status === "rejected" &&
                !(r.reason instanceof ConnectError && r.reason.code !== 13)
              )
                throw r.reason;
            }
          });
        }
        written += made.length;
        expect(await overbooked(w.tenantId)).toEqual([]);
      }),
      { numRuns: 12 },
    );
    expect(runs).toBe(12);
    // The property was exercised, not vacuous.
    expect(written).toBeGreaterThan(20);
  }, 120_000);
});

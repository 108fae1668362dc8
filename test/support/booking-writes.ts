import { randomBytes } from "node:crypto";
import type pg from "pg";
import { BookingBatches } from "../../src/booking/batches.js";
import { SlotFinder } from "../../src/booking/slot-finder.js";
import type { BookingWrites } from "../../src/booking/writes.js";
import { CatalogCache } from "../../src/db/catalog-cache.js";
import { poolDb } from "../../src/db/pool.js";
import { insertResource } from "../../src/db/resources.js";
import { insertService } from "../../src/db/services.js";
import type { Policy } from "../../src/domain/catalog.js";

const MINUTE = 60_000;

/** The policy of the writes tests' services: 30-minute bookings, no buffers, notice or grid. */
export const thirtyMinutePolicy: Policy = {
  durationsMs: [30 * MINUTE],
  slotIntervalMs: null,
  bufferBeforeMs: 0,
  bufferAfterMs: 0,
  minNoticeMs: 0,
  maxAdvanceMs: null,
  businessHours: [],
  holdTtlMs: 120_000,
  maxHoldTtlMs: 30 * MINUTE,
};

/**
 * What the booking writes need, on `pool`, as a server wires it
 * (src/server.ts), without one; `lanes` as HOLDFAST_WRITE_LANES, and
 * `maxBatch` the most creates one write carries.
 */
export function bookingWritesOn(pool: pg.Pool, lanes?: number, maxBatch?: number): BookingWrites {
  const catalog = new CatalogCache(pool, undefined);
  return {
    db: pool,
    catalog,
    finder: new SlotFinder(pool, catalog, randomBytes(32)),
    batches: new BookingBatches(pool, lanes, undefined, maxBatch),
  };
}

/**
 * A thirty-minute service of a tenant over `n` new resources of capacity 1
 * (UTC, all hours unless a weekly schedule is given).
 */
export async function serviceOver(
  pool: pg.Pool,
  tenantId: string,
  n: number,
  weeklySchedule: { weekday: number; start: number; end: number }[] | null = null,
): Promise<{ serviceId: string; resourceIds: string[] }> {
  const resourceIds: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await insertResource(pool, tenantId, {
      name: `r${i}`,
      kind: "room",
      timeZone: "UTC",
      capacity: 1,
      metadata: {},
      weeklySchedule,
    });
    resourceIds.push(r.id);
  }
  const s = await insertService(poolDb(pool), tenantId, {
    name: "s",
    resourceIds,
    policy: thirtyMinutePolicy,
    timeZone: "UTC",
    metadata: {},
  });
  return { serviceId: s.id, resourceIds };
}

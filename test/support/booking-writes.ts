import { randomBytes } from "node:crypto";
import type pg from "pg";
import { BookingBatches } from "../../src/booking/batches.js";
import { SlotFinder } from "../../src/booking/slot-finder.js";
import type { BookingWrites } from "../../src/booking/writes.js";
import { CatalogCache } from "../../src/db/catalog-cache.js";
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
 * (src/server.ts), without one; `lanes` as HOLDFAST_WRITE_LANES.
 */
export function bookingWritesOn(pool: pg.Pool, lanes?: number): BookingWrites {
  const catalog = new CatalogCache(pool, undefined);
  return {
    db: pool,
    catalog,
    finder: new SlotFinder(pool, catalog, randomBytes(32)),
    batches: new BookingBatches(pool, lanes),
  };
}

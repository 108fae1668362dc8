import { log } from "../log.js";
import { expireLapsedHolds } from "./bookings.js";
import { pruneKeys } from "./idempotency.js";
import { pruneEvents } from "./outbox.js";
import type { Queryable } from "./pool.js";
import { pruneDeliveries } from "./webhooks.js";

const BATCH = 500;
const PRUNE_EVERY_MS = 60_000;
const PRUNE_BATCH = 5_000;
/** How long one pass may prune before it lets the sweep run again. */
const PRUNE_SLICE_MS = 1_000;

/**
 * Background upkeep that every instance runs: marking lapsed holds EXPIRED
 * (which only records the transition and emits booking.expired; a lapsed
 * hold stops blocking at its expire_time whether or not this has run),
 * dropping idempotency keys older than a day, and events and ended webhook
 * deliveries (with their attempts) older than the retention. Safe in many instances at once: the sweep skips rows another
 * instance holds.
 */
export function startMaintenance(
  db: Queryable,
  opts: { sweepIntervalMs: number; eventRetentionMs: number; onExpired?: (count: number) => void },
): { stop(): Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  let lastPrune = 0;

  const tick = async () => {
    try {
      let n: number;
      do {
        n = await expireLapsedHolds(db, BATCH);
        if (n > 0) opts.onExpired?.(n);
      } while (n === BATCH && !stopped);
      if (Date.now() - lastPrune > PRUNE_EVERY_MS) {
        // Everything due goes, batch by batch, however fast it was written;
        // a backlog is taken a slice at a time, the next slice on the next pass.
        const until = Date.now() + PRUNE_SLICE_MS;
        let backlog = false;
        for (const prune of [
          () => pruneKeys(db, PRUNE_BATCH),
          () => pruneEvents(db, opts.eventRetentionMs, PRUNE_BATCH),
          () => pruneDeliveries(db, opts.eventRetentionMs, PRUNE_BATCH),
        ]) {
          let n: number;
          do n = await prune();
          while (n === PRUNE_BATCH && !stopped && Date.now() < until);
          if (n === PRUNE_BATCH) backlog = true;
        }
        lastPrune = backlog ? 0 : Date.now();
      }
    } catch (err) {
      if (!stopped) log.warn("maintenance pass failed; retrying", { err });
    }
    if (!stopped) {
      timer = setTimeout(() => {
        running = tick();
      }, opts.sweepIntervalMs);
    }
  };
  running = tick();

  return {
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}

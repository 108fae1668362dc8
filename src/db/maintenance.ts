import { log } from "../log.js";
import { expireLapsedHolds } from "./bookings.js";
import { pruneKeys } from "./idempotency.js";
import { pruneEvents } from "./outbox.js";
import type { Queryable } from "./pool.js";

const BATCH = 500;
const PRUNE_EVERY_MS = 60_000;

/**
 * Background upkeep that every instance runs: marking lapsed holds EXPIRED
 * (which only records the transition and emits booking.expired; a lapsed
 * hold stops blocking at its expire_time whether or not this has run),
 * dropping idempotency keys older than a day and events older than the
 * retention. Safe in many instances at once: the sweep skips rows another
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
        lastPrune = Date.now();
        await pruneKeys(db, 5_000);
        await pruneEvents(db, opts.eventRetentionMs, 5_000);
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

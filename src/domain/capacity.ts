import { type Interval, occupancySteps } from "./availability.js";
import { Rejection } from "./rejection.js";
import { localDateTime, msInstantText } from "./time.js";

/**
 * Whether a resource's capacity may be set to a new value: never below
 * what its live bookings already take. Pure: the caller reads the blocks
 * under the resource's lock, with the database's clock.
 */

/** Where live bookings overlap more than a capacity allows. */
export type Overbooking = {
  /** The first span in which more than the capacity overlap (half-open, epoch ms). */
  start: number;
  end: number;
  /** The most that overlap at one instant of that span. */
  bookings: number;
  /** The most that overlap at any instant: the lowest capacity that takes them all. */
  peak: number;
};

/**
 * The first span in which more than `capacity` of `blocks` overlap, or
 * undefined when they all fit. Blocks are half-open: one ending when
 * another starts does not overlap it.
 */
export function firstOverbooking(
  blocks: readonly Interval[],
  capacity: number,
): Overbooking | undefined {
  const { times, counts } = occupancySteps(blocks);
  let found: Overbooking | undefined;
  let open = false;
  let peak = 0;
  counts.forEach((count, k) => {
    peak = Math.max(peak, count);
    const t = times[k] as number;
    if (count > capacity) {
      if (!found) {
        found = { start: t, end: t, bookings: count, peak: 0 };
        open = true;
      } else if (open) found.bookings = Math.max(found.bookings, count);
    } else if (open && found) {
      found.end = t;
      open = false;
    }
  });
  return found && { ...found, peak };
}

/**
 * Refuses a capacity below what the resource's live bookings take (their
 * blocks: HELD and unexpired, or CONFIRMED, not yet ended), naming the
 * first span where they would be more than it, on the resource's clock.
 */
export function checkCapacity(
  resource: { id: string; timeZone: string },
  capacity: number,
  blocks: readonly Interval[],
): void {
  const over = firstOverbooking(blocks, capacity);
  if (!over) return;
  const zone = resource.timeZone;
  const from = localDateTime(over.start, zone);
  const to = localDateTime(over.end, zone);
  const wall = (t: string) => `${t.slice(0, 10)} ${t.slice(11, 16)}`;
  throw new Rejection(
    "CAPACITY_BELOW_BOOKINGS",
    `resource "${resource.id}" has ${over.bookings} bookings at once from ${wall(from)} to ${wall(to)} (${zone}), more than a capacity of ${capacity}; its live bookings need at least ${over.peak}`,
    {
      fieldViolations: [
        {
          field: "resource.capacity",
          description: `must be at least ${over.peak} while the live bookings overlap`,
        },
      ],
      metadata: {
        start_time: msInstantText(over.start),
        end_time: msInstantText(over.end),
        local_start_time: from,
        local_end_time: to,
        time_zone: zone,
        bookings: String(over.bookings),
        min_capacity: String(over.peak),
      },
    },
  );
}

import { Temporal } from "temporal-polyfill";
import type { Policy, WeeklyWindow } from "./catalog.js";
import type { OverrideRule } from "./override-rule.js";
import {
  calendarDate,
  fallsOnEveryDay,
  isoWeekday,
  occurrenceBounds,
  occurrenceDays,
} from "./recurrence.js";
import { DAY_MS, HOUR_MS, MINUTE_MS, utcOffsetMs } from "./time.js";

/**
 * When a resource can be booked for a service: one implementation of every
 * rule, used both to list free slots and to check a hold or booking before
 * it is written. Pure: no clock (the caller passes the database's `now`),
 * no I/O. Times are epoch milliseconds; intervals are half-open [start, end).
 * Wall-clock rules are read in each resource's IANA time zone (business
 * hours in the service's) with the Temporal API, across daylight-saving
 * changes.
 */

export type Interval = { start: number; end: number };

/** A resource's calendar: zone, capacity, weekly schedule (null: all hours) and overrides. */
export type ResourceCalendar = {
  resourceId: string;
  timeZone: string;
  capacity: number;
  weeklySchedule: WeeklyWindow[] | null;
  overrides: OverrideRule[];
};

/** The service's rules: its policy, and the zone its business hours are read in. */
export type ServiceRules = { policy: Policy; timeZone: string };

/** The block (range widened by its own buffers) of an existing HELD-unexpired or CONFIRMED booking. */
export type BusyBlock = { resourceId: string; start: number; end: number };

/**
 * The resource's working time for the service within `range`, as sorted,
 * merged intervals: ((weekly schedule ∩ business hours) ∪ opens) − blocks.
 * Blocks beat opens where both apply. A resource without a schedule works
 * all hours; a service without business hours does not limit it. Intervals
 * that touch across midnight are merged, so a booking may span midnight.
 * `blocked` is the blocks' time within range (to tell SCHEDULE_BLOCKED from
 * OUTSIDE_WORKING_HOURS).
 */
export function workingTime(
  resource: ResourceCalendar,
  service: ServiceRules,
  range: Interval,
): { open: Interval[]; blocked: Interval[] } {
  const { open, blocked } = layers(resource, service, range);
  return { open, blocked };
}

export type SlotQuery = {
  service: ServiceRules;
  resources: ResourceCalendar[];
  /** Slots whose start lies in [range.start, range.end). */
  range: Interval;
  durationMs: number;
  /** The database's clock, for min_notice and max_advance. */
  nowMs: number;
  /** Existing blocks of these resources around the range (already widened by their own buffers). */
  busy: BusyBlock[];
};

export type FreeSlot = { resourceId: string; start: number; end: number; remaining: number };

/** Whether `s` comes after `key` in slot order: by start, then resource id. */
export function slotFollows(s: FreeSlot, key: { start: number; resourceId: string }): boolean {
  return (
    s.start > key.start || (s.start === key.start && compareIds(s.resourceId, key.resourceId) > 0)
  );
}

/**
 * Every bookable slot: starts on the grid (the instants whose wall-clock
 * time in the resource's zone is a multiple of policy.slotIntervalMs ??
 * durationMs after local midnight: a time skipped by a DST change has no
 * start, a repeated one has two, so none is produced twice or lost),
 * [start, start + duration) inside working time, start >= now + min_notice,
 * start <= now + max_advance (when set), and remaining = capacity − the most
 * busy blocks overlapping at any instant of the slot's own block
 * [start − buffer_before, end + buffer_after) > 0. Sorted by start, then
 * resource id.
 */
export function computeSlots(q: SlotQuery): FreeSlot[] {
  const { policy } = q.service;
  const step = policy.slotIntervalMs ?? q.durationMs;
  const earliest = Math.max(q.range.start, q.nowMs + policy.minNoticeMs);
  const latest =
    policy.maxAdvanceMs === null
      ? q.range.end - 1
      : Math.min(q.range.end - 1, q.nowMs + policy.maxAdvanceMs);
  if (earliest > latest || q.durationMs <= 0 || step <= 0) return [];

  const busyByResource = new Map<string, BusyBlock[]>();
  for (const block of q.busy) {
    const blocks = busyByResource.get(block.resourceId);
    if (blocks) blocks.push(block);
    else busyByResource.set(block.resourceId, [block]);
  }
  const slots: FreeSlot[] = [];
  // Resources in id order, and a stable sort by start below, give ties by id
  // without comparing ids slot by slot.
  for (const resource of [...q.resources].sort((a, b) => compareIds(a.resourceId, b.resourceId))) {
    // Reaching one duration past the last start judges slots that end after
    // the range, or run past midnight, against the time they really cover.
    const { open } = layers(resource, q.service, { start: earliest, end: latest + q.durationMs });
    if (open.length === 0) continue;
    const occupancy = new Occupancy(busyByResource.get(resource.resourceId) ?? []);
    const local = zoneDays(resource.timeZone);
    let w = 0;
    for (let day = local.dayOf(earliest); w < open.length; day++) {
      if (local.midnight(day) > latest) break;
      for (const start of local.gridStarts(day, step, earliest)) {
        if (start > latest) break;
        const end = start + q.durationMs;
        // Slot ends only grow, so an interval ending before this one can hold no later slot.
        while (w < open.length && (open[w]?.end ?? 0) < end) w++;
        const interval = open[w];
        if (!interval) break;
        if (interval.start > start) continue;
        const remaining =
          resource.capacity -
          occupancy.peak(start - policy.bufferBeforeMs, end + policy.bufferAfterMs);
        if (remaining > 0) slots.push({ resourceId: resource.resourceId, start, end, remaining });
      }
    }
  }
  return slots.sort((a, b) => a.start - b.start);
}

export type TimeRuleViolation =
  | "INVALID_DURATION"
  | "OFF_GRID"
  | "OUTSIDE_WORKING_HOURS"
  | "SCHEDULE_BLOCKED";

/**
 * The first rule a requested [start, end) breaks, checked in this order:
 * INVALID_DURATION (not one of the policy's durations), OFF_GRID (start not
 * on the grid), SCHEDULE_BLOCKED (inside working time but for a block),
 * OUTSIDE_WORKING_HOURS (not inside one working interval). undefined when
 * it breaks none. Exactly the rules computeSlots applies, minus the clock
 * and occupancy, which the write checks under the lock.
 */
export function checkRequestedTime(
  service: ServiceRules,
  resource: ResourceCalendar,
  start: number,
  end: number,
): TimeRuleViolation | undefined {
  const duration = end - start;
  if (!service.policy.durationsMs.includes(duration)) return "INVALID_DURATION";
  if (!zoneDays(resource.timeZone).onGrid(start, service.policy.slotIntervalMs ?? duration))
    return "OFF_GRID";
  const { available, open } = layers(resource, service, { start, end });
  if (covers(open, start, end)) return undefined;
  return covers(available, start, end) ? "SCHEDULE_BLOCKED" : "OUTSIDE_WORKING_HOURS";
}

/**
 * Up to `limit` free slots nearest to a requested start, for a
 * SLOT_UNAVAILABLE answer: slots of the requested resource first (nearest
 * first, ties to the earlier), then other resources' (nearest first, ties
 * to the earlier, then by resource id). The requested slot itself is never
 * offered.
 */
export function nearestAlternatives(
  slots: readonly FreeSlot[],
  requested: { resourceId: string; start: number },
  limit: number,
): FreeSlot[] {
  if (limit <= 0) return [];
  const byNearness = (a: FreeSlot, b: FreeSlot) =>
    Math.abs(a.start - requested.start) - Math.abs(b.start - requested.start) ||
    a.start - b.start ||
    compareIds(a.resourceId, b.resourceId);
  const own: FreeSlot[] = [];
  const others: FreeSlot[] = [];
  for (const slot of slots) {
    if (slot.resourceId !== requested.resourceId) others.push(slot);
    else if (slot.start !== requested.start) own.push(slot);
  }
  return [...own.sort(byNearness), ...others.sort(byNearness)].slice(0, limit);
}

/**
 * The fair pick among resources free at a time: fewest bookings on that
 * day first, then the service's own order of resources. Returns resource
 * ids in the order to try.
 */
export function fairOrder(
  candidates: readonly string[],
  bookingsThatDay: ReadonlyMap<string, number>,
  serviceOrder: readonly string[],
): string[] {
  // Resources the service no longer lists go last, in id order, rather than being dropped.
  const rank = (id: string) => {
    const i = serviceOrder.indexOf(id);
    return i === -1 ? serviceOrder.length : i;
  };
  return [...candidates].sort(
    (a, b) =>
      (bookingsThatDay.get(a) ?? 0) - (bookingsThatDay.get(b) ?? 0) ||
      rank(a) - rank(b) ||
      compareIds(a, b),
  );
}

/**
 * The blocks in the way of `range`: each BLOCK override with an occurrence
 * overlapping it, in override order, and the whole stretch of time it
 * blocks there without a break (its occurrences that touch joined: the days
 * of a multi-day all-day block, a weekly all-day block's consecutive
 * weekdays). A block on every day with no last day has a span ending at
 * Infinity. The work is bounded by the range's days, not by the blocks'
 * length: a block to the year 9999 costs what a block of a day does.
 */
export function blocksOverlapping(
  resource: ResourceCalendar,
  range: Interval,
): { rule: OverrideRule; span: Interval }[] {
  if (range.end <= range.start) return [];
  const local = zoneDays(resource.timeZone);
  const firstDay = local.dayOf(range.start);
  const lastDay = local.dayOf(range.end - 1);
  const found: { rule: OverrideRule; span: Interval }[] = [];
  for (const rule of resource.overrides) {
    if (rule.kind !== "block") continue;
    const span = stretchOver(rule, local, firstDay, lastDay, range);
    if (span) found.push({ rule, span });
  }
  return found;
}

/**
 * The most consecutive days whose occurrences can touch, for an override
 * that does not cover every day whole (see stretchOver): seven, a weekly
 * all-day override on every weekday of every second (or later) week.
 */
const MAX_RUN_DAYS = 7;

/**
 * The stretch of time an override covers without a break that overlaps
 * `range` (on local days firstDay..lastDay), or undefined: its occurrences
 * that touch, joined, each whole.
 *
 * An override on every day (no repetition, or weekly on all seven
 * weekdays) that is all day (or 00:00-24:00) covers one stretch from its
 * first day's local midnight to the midnight after its last: that is read
 * from two midnights, never by walking its days. Any other override's
 * occurrences touch for at most MAX_RUN_DAYS days in a row (a weekly
 * all-day one; a timed one's do not touch, and a monthly one's are weeks
 * apart): its occurrences on the days and a day either side are read, and
 * one in the way is followed outward day by day while the next touches it.
 */
function stretchOver(
  rule: OverrideRule,
  local: ZoneDays,
  firstDay: number,
  lastDay: number,
  range: Interval,
): Interval | undefined {
  const { first, last } = occurrenceBounds(rule);
  // An occurrence lies within its own local day: a day's margin either side is plenty.
  if (first > last || first > lastDay + 1 || last < firstDay - 1) return undefined;
  const overlaps = (i: Interval) => i.start < range.end && i.end > range.start;
  const wholeDays =
    rule.allDay ||
    rule.startMinute === null ||
    rule.endMinute === null ||
    (rule.startMinute === 0 && rule.endMinute === 1440);
  if (wholeDays && fallsOnEveryDay(rule)) {
    const end = last === Infinity ? Infinity : local.midnight(last + 1);
    const stretch = { start: local.midnight(first), end };
    return overlaps(stretch) ? stretch : undefined;
  }
  const span = merge(occurrences(rule, local, firstDay - 1, lastDay + 1)).find(overlaps);
  if (!span) return undefined;
  for (let day = firstDay - 2; day >= Math.max(first, firstDay - 1 - MAX_RUN_DAYS); day--) {
    const before = occurrences(rule, local, day, day).at(-1);
    if (!before || before.end < span.start) break;
    span.start = Math.min(span.start, before.start);
  }
  for (let day = lastDay + 2; day <= Math.min(last, lastDay + 1 + MAX_RUN_DAYS); day++) {
    const after = occurrences(rule, local, day, day)[0];
    if (!after || after.start > span.end) break;
    span.end = Math.max(span.end, after.end);
  }
  return span;
}

/** The local calendar day [midnight, next midnight) containing `instant` in `timeZone`. */
export function localDay(instant: number, timeZone: string): Interval {
  const local = zoneDays(timeZone);
  const day = local.dayOf(instant);
  return { start: local.midnight(day), end: local.midnight(day + 1) };
}

/** Local midnights of one zone by day number, each read from the zone database once. */
class ZoneDays {
  private readonly midnights = new Map<number, number>();

  constructor(readonly timeZone: string) {}

  /** The day number of the local date containing `instant`. */
  dayOf(instant: number): number {
    // Start from the UTC date, at most a day off, and let the (cached) midnights settle it.
    let day = Math.floor(instant / DAY_MS);
    while (instant < this.midnight(day)) day--;
    while (instant >= this.midnight(day + 1)) day++;
    return day;
  }

  /** The first instant of the local day. */
  midnight(day: number): number {
    let midnight = this.midnights.get(day);
    if (midnight === undefined) {
      const { year, month, day: dayOfMonth } = calendarDate(day);
      midnight = new Temporal.PlainDate(year, month, dayOfMonth).toZonedDateTime(
        this.timeZone,
      ).epochMilliseconds;
      if (this.midnights.size >= MAX_CACHED_DAYS) this.midnights.clear();
      this.midnights.set(day, midnight);
    }
    return midnight;
  }

  /**
   * The grid of a local day from `from` on, ascending: the instants whose
   * wall-clock time is a multiple of `stepMs` (whole minutes) after local
   * midnight. A wall time skipped by a spring-forward change gives none; a
   * repeated one gives both of its instants.
   */
  gridStarts(day: number, stepMs: number, from: number): number[] {
    const midnight = this.midnight(day);
    const nextMidnight = this.midnight(day + 1);
    const starts: number[] = [];
    if (nextMidnight - midnight === DAY_MS) {
      // One offset all day (see wallSpans): wall time is elapsed time.
      const first = Math.max(0, Math.ceil((from - midnight) / stepMs));
      for (let t = midnight + first * stepMs; t < nextMidnight; t += stepMs) starts.push(t);
      return starts;
    }
    const { year, month, day: dayOfMonth } = calendarDate(day);
    for (let wall = 0; wall < DAY_MS; wall += stepMs) {
      const local = new Temporal.PlainDateTime(
        year,
        month,
        dayOfMonth,
        Math.floor(wall / HOUR_MS),
        (wall % HOUR_MS) / MINUTE_MS,
      );
      const earlier = local.toZonedDateTime(this.timeZone, { disambiguation: "earlier" });
      // In a spring-forward gap the nearest instant has another wall time.
      if (!earlier.toPlainDateTime().equals(local)) continue;
      const later = local.toZonedDateTime(this.timeZone, { disambiguation: "later" });
      for (const t of new Set([earlier.epochMilliseconds, later.epochMilliseconds])) {
        if (t >= from) starts.push(t);
      }
    }
    return starts.sort((a, b) => a - b);
  }

  /** Whether `instant` is on the grid of its local day (see gridStarts). */
  onGrid(instant: number, stepMs: number): boolean {
    const day = this.dayOf(instant);
    const midnight = this.midnight(day);
    if (this.midnight(day + 1) - midnight === DAY_MS) {
      return (instant - midnight) % stepMs === 0;
    }
    const wall = Temporal.Instant.fromEpochMilliseconds(instant).toZonedDateTimeISO(this.timeZone);
    const msOfDay =
      wall.hour * HOUR_MS + wall.minute * MINUTE_MS + wall.second * 1000 + wall.millisecond;
    return msOfDay % stepMs === 0;
  }

  /**
   * The instants of a local day at which the clock reads a minute in
   * [startMinute, endMinute) (0..1440, 1440 the day's end): one interval,
   * or on a day the clock changes, one on each side of the change. So a
   * window 01:00-02:30 on New York's spring-forward day ends when the clock
   * jumps to 03:00, one 02:30-05:00 starts then, and a block 02:30-03:30
   * covers 03:00-03:30 (the wall times skipped are in neither side); on
   * fall-back a window 01:30-02:00 covers 01:30-02:00 twice, once per
   * occurrence, and not the 01:00-01:30 between them.
   */
  wallSpans(day: number, startMinute: number, endMinute: number): Interval[] {
    const midnight = this.midnight(day);
    const nextMidnight = this.midnight(day + 1);
    // A day of exactly 24 hours keeps one offset throughout (no zone has had
    // two changes within two days since 1970), so its minutes need no lookup.
    if (nextMidnight - midnight === DAY_MS) {
      const start = midnight + startMinute * MINUTE_MS;
      const end = midnight + endMinute * MINUTE_MS;
      return end > start ? [{ start, end }] : [];
    }
    const change = Temporal.Instant.fromEpochMilliseconds(midnight)
      .toZonedDateTimeISO(this.timeZone)
      .getTimeZoneTransition("next")?.epochMilliseconds;
    const sides =
      change !== undefined && change < nextMidnight
        ? [
            { start: midnight, end: change },
            { start: change, end: nextMidnight },
          ]
        : [{ start: midnight, end: nextMidnight }];
    // On each side the clock reads instant + offset: wall minutes as if in UTC.
    const wallStart = day * DAY_MS + startMinute * MINUTE_MS;
    const wallEnd = day * DAY_MS + endMinute * MINUTE_MS;
    const spans: Interval[] = [];
    for (const side of sides) {
      const offset = utcOffsetMs(side.start, this.timeZone);
      const start = Math.max(side.start, wallStart - offset);
      const end = Math.min(side.end, wallEnd - offset);
      if (end > start) spans.push({ start, end });
    }
    return spans;
  }
}

/**
 * Midnights are fixed facts of the zone database, so they are kept across
 * calls; both maps are bounded, as a long-running server meets ever more
 * dates.
 */
const zoneCache = new Map<string, ZoneDays>();
const MAX_CACHED_ZONES = 1000;
const MAX_CACHED_DAYS = 10_000;

function zoneDays(timeZone: string): ZoneDays {
  let days = zoneCache.get(timeZone);
  if (!days) {
    if (zoneCache.size >= MAX_CACHED_ZONES) zoneCache.clear();
    days = new ZoneDays(timeZone);
    zoneCache.set(timeZone, days);
  }
  return days;
}

/**
 * Working time within `range` in layers: `available` is working time with
 * blocks ignored, `blocked` the blocks, `open` what is left of available.
 */
function layers(
  resource: ResourceCalendar,
  service: ServiceRules,
  range: Interval,
): { available: Interval[]; blocked: Interval[]; open: Interval[] } {
  if (range.end <= range.start) return { available: [], blocked: [], open: [] };
  const local = zoneDays(resource.timeZone);
  const firstDay = local.dayOf(range.start);
  const lastDay = local.dayOf(range.end - 1);

  let scheduled =
    resource.weeklySchedule === null
      ? [{ start: local.midnight(firstDay), end: local.midnight(lastDay + 1) }]
      : weeklyIntervals(resource.weeklySchedule, local, firstDay, lastDay);
  const { businessHours } = service.policy;
  if (businessHours.length > 0) {
    const business = zoneDays(service.timeZone);
    scheduled = intersect(
      scheduled,
      weeklyIntervals(
        businessHours,
        business,
        business.dayOf(range.start),
        business.dayOf(range.end - 1),
      ),
    );
  }

  const opens: Interval[] = [];
  const blocks: Interval[] = [];
  for (const rule of resource.overrides) {
    (rule.kind === "open" ? opens : blocks).push(...occurrences(rule, local, firstDay, lastDay));
  }

  const available = clip(merge([...scheduled, ...opens]), range);
  const blocked = clip(merge(blocks), range);
  return { available, blocked, open: subtract(available, blocked) };
}

/** The times an override covers on local days firstDay..lastDay, by day (two on a day the clock changes; see wallSpans). */
function occurrences(
  rule: OverrideRule,
  local: ZoneDays,
  firstDay: number,
  lastDay: number,
): Interval[] {
  return occurrenceDays(rule, firstDay, lastDay).flatMap((day) =>
    rule.allDay || rule.startMinute === null || rule.endMinute === null
      ? [{ start: local.midnight(day), end: local.midnight(day + 1) }]
      : local.wallSpans(day, rule.startMinute, rule.endMinute),
  );
}

/** Weekly windows as instants on local days firstDay..lastDay, sorted and merged. */
function weeklyIntervals(
  windows: readonly WeeklyWindow[],
  zone: ZoneDays,
  firstDay: number,
  lastDay: number,
): Interval[] {
  const intervals: Interval[] = [];
  for (let day = firstDay; day <= lastDay; day++) {
    const weekday = isoWeekday(day);
    for (const w of windows) {
      if (w.weekday === weekday) {
        intervals.push(...zone.wallSpans(day, w.start, w.end));
      }
    }
  }
  return merge(intervals);
}

/** Sorted, with overlapping and touching intervals joined and empty ones (skipped wall time) dropped. */
function merge(intervals: Interval[]): Interval[] {
  const merged: Interval[] = [];
  for (const i of [...intervals].sort((a, b) => a.start - b.start)) {
    if (i.end <= i.start) continue;
    const last = merged[merged.length - 1];
    if (last && i.start <= last.end) last.end = Math.max(last.end, i.end);
    else merged.push({ ...i });
  }
  return merged;
}

/** Where both sorted, merged lists have time. */
function intersect(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const result: Interval[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i] as Interval;
    const y = b[j] as Interval;
    const start = Math.max(x.start, y.start);
    const end = Math.min(x.end, y.end);
    if (start < end) result.push({ start, end });
    if (x.end < y.end) i++;
    else j++;
  }
  return result;
}

/** The time of sorted, merged `a` outside sorted, merged `b`. */
function subtract(a: readonly Interval[], b: readonly Interval[]): Interval[] {
  const result: Interval[] = [];
  let j = 0;
  for (const x of a) {
    let start = x.start;
    while (j < b.length && (b[j] as Interval).end <= start) j++;
    for (let k = j; k < b.length; k++) {
      const y = b[k] as Interval;
      if (y.start >= x.end) break;
      if (y.start > start) result.push({ start, end: y.start });
      start = Math.max(start, y.end);
    }
    if (start < x.end) result.push({ start, end: x.end });
  }
  return result;
}

function clip(intervals: readonly Interval[], range: Interval): Interval[] {
  const result: Interval[] = [];
  for (const i of intervals) {
    const start = Math.max(i.start, range.start);
    const end = Math.min(i.end, range.end);
    if (start < end) result.push({ start, end });
  }
  return result;
}

/** Whether intervals clipped to [start, end) fill it in one piece. */
function covers(clipped: readonly Interval[], start: number, end: number): boolean {
  const first = clipped[0];
  return first !== undefined && first.start === start && first.end === end;
}

/**
 * How many of `blocks` overlap at each instant, as a step function:
 * counts[k] blocks overlap during [times[k], times[k + 1]); none before
 * times[0] or from the last time on (where the count is 0).
 */
export function occupancySteps(blocks: readonly Interval[]): { times: number[]; counts: number[] } {
  const times: number[] = [];
  const counts: number[] = [];
  const real = blocks.filter((b) => b.end > b.start);
  // Typed arrays sort numerically without a comparator call per step.
  const starts = new Float64Array(real.length);
  const ends = new Float64Array(real.length);
  real.forEach((b, k) => {
    starts[k] = b.start;
    ends[k] = b.end;
  });
  starts.sort();
  ends.sort();
  let i = 0;
  let j = 0;
  let count = 0;
  while (i < starts.length || j < ends.length) {
    const t = Math.min(starts[i] ?? Infinity, ends[j] ?? Infinity);
    // Half-open blocks: one ending when another starts never overlap it.
    while (ends[j] === t) {
      count--;
      j++;
    }
    while (starts[i] === t) {
      count++;
      i++;
    }
    times.push(t);
    counts.push(count);
  }
  return { times, counts };
}

/**
 * How many of a resource's busy blocks overlap at each instant, as a step
 * function, so the peak within a slot's block is read off a few steps
 * rather than by testing every busy block against every slot.
 */
class Occupancy {
  /** counts[k] blocks overlap during [times[k], times[k + 1]); none before times[0] or from the last time on. */
  private readonly times: number[];
  private readonly counts: number[];
  /** The last step starting at or before the previous query's start; -1 before the first. */
  private cursor = -1;

  constructor(blocks: readonly BusyBlock[]) {
    ({ times: this.times, counts: this.counts } = occupancySteps(blocks));
  }

  /** The most blocks overlapping at one instant of [from, to). Calls must not decrease `from`. */
  peak(from: number, to: number): number {
    while (this.cursor + 1 < this.times.length && (this.times[this.cursor + 1] as number) <= from) {
      this.cursor++;
    }
    let peak = this.counts[this.cursor] ?? 0;
    for (let k = this.cursor + 1; k < this.times.length && (this.times[k] as number) < to; k++) {
      peak = Math.max(peak, this.counts[k] as number);
    }
    return peak;
  }
}

/** Ids in code-unit order, the same on every machine and locale. */
function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

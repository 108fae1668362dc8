import {
  blocksOverlapping,
  checkRequestedTime,
  localDay,
  type ResourceCalendar,
  type ServiceRules,
  workingTime,
} from "./availability.js";
import type { Policy, WeeklyWindow } from "./catalog.js";
import type { OverrideRule } from "./override-rule.js";
import { dayNumber, isoWeekday } from "./recurrence.js";
import { Rejection } from "./rejection.js";
import { localDateTime, MINUTE_MS } from "./time.js";

/**
 * The rules a hold, booking or move must pass before it is written,
 * checked against the service and resource as read (their revisions go with
 * the write, which refuses if either changed meanwhile). Rules that need the
 * clock (min notice, max advance) and occupancy are checked inside the
 * write, against the database's clock, under the resource's lock.
 */

export type ServiceSnapshot = {
  id: string;
  active: boolean;
  revision: number;
  policyVersion: number;
  policy: Policy;
  timeZone: string;
  resourceIds: string[];
};

export type ResourceSnapshot = {
  id: string;
  active: boolean;
  revision: number;
  capacity: number;
  timeZone: string;
  weeklySchedule: WeeklyWindow[] | null;
  overrides: OverrideRule[];
};

export type RequestedTime = { startMs: number; endMs: number };

/** The part of a resource availability reads. */
export function calendarOf(r: ResourceSnapshot): ResourceCalendar {
  return {
    resourceId: r.id,
    timeZone: r.timeZone,
    capacity: r.capacity,
    weeklySchedule: r.weeklySchedule,
    overrides: r.overrides,
  };
}

export function rulesOf(s: ServiceSnapshot): ServiceRules {
  return { policy: s.policy, timeZone: s.timeZone };
}

/** A new hold or booking: an active service, and a resource and time it allows. */
export function checkBookable(
  service: ServiceSnapshot,
  resource: ResourceSnapshot,
  time: RequestedTime,
): void {
  if (!service.active) {
    throw new Rejection(
      "SERVICE_INACTIVE",
      `service "${service.id}" is inactive and takes no new bookings`,
    );
  }
  checkResource(service, resource);
  checkTime(rulesOf(service), resource, time);
}

/** The resource delivers the service and takes bookings. */
export function checkResource(service: ServiceSnapshot, resource: ResourceSnapshot): void {
  if (!service.resourceIds.includes(resource.id)) {
    throw new Rejection(
      "RESOURCE_NOT_IN_SERVICE",
      `resource "${resource.id}" does not deliver service "${service.id}"`,
      {
        fieldViolations: [
          { field: "resource_id", description: "is not one of the service's resources" },
        ],
      },
    );
  }
  if (!resource.active) {
    throw new Rejection(
      "RESOURCE_INACTIVE",
      `resource "${resource.id}" is inactive and takes no new bookings`,
    );
  }
}

/** The time's length, grid and working time, by the same rules ListSlots applies. */
export function checkTime(
  rules: ServiceRules,
  resource: ResourceSnapshot,
  time: RequestedTime,
): void {
  const violation = checkRequestedTime(rules, calendarOf(resource), time.startMs, time.endMs);
  if (violation === undefined) return;
  if (violation === "INVALID_DURATION") checkDuration(rules.policy, time.endMs - time.startMs);
  if (violation === "OFF_GRID") {
    const step = (rules.policy.slotIntervalMs ?? time.endMs - time.startMs) / MINUTE_MS;
    throw new Rejection(
      "OFF_GRID",
      `bookings start every ${step} min from midnight in ${resource.timeZone}; list slots for the exact times`,
      {
        fieldViolations: [
          { field: "start_time", description: `must be on the ${step}-minute grid` },
        ],
      },
    );
  }
  if (violation === "SCHEDULE_BLOCKED") throw scheduleBlocked(resource, time);
  throw outsideWorkingHours(rules, resource, time);
}

const WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/** "HH:MM" in the zone; the end of `day` reads 24:00. */
function clock(ms: number, timeZone: string, day?: { end: number }): string {
  return ms === day?.end ? "24:00" : localDateTime(ms, timeZone).slice(11, 16);
}

/**
 * OUTSIDE_WORKING_HOURS, saying when the resource does work for the service
 * on the local day of the requested start (or that it does not work that
 * day), so a caller can pick a time without listing slots first.
 */
function outsideWorkingHours(
  rules: ServiceRules,
  resource: ResourceSnapshot,
  time: RequestedTime,
): Rejection {
  const zone = resource.timeZone;
  const day = localDay(time.startMs, zone);
  const { open } = workingTime(calendarOf(resource), rules, day);
  const date = localDateTime(day.start, zone).slice(0, 10);
  const on = `on ${WEEKDAYS[isoWeekday(dayNumber(date)) - 1]} ${date} (${zone})`;
  const hours = open.map((i) => `${clock(i.start, zone, day)}-${clock(i.end, zone, day)}`);
  const requested = `${clock(time.startMs, zone)}-${clock(time.endMs, zone)}`;
  return new Rejection(
    "OUTSIDE_WORKING_HOURS",
    hours.length === 0
      ? `resource "${resource.id}" does not work ${on}`
      : `resource "${resource.id}" works ${hours.join(", ")} ${on}; ${requested} is outside those hours`,
    { metadata: { local_date: date, time_zone: zone, working_hours: hours.join(", ") } },
  );
}

/**
 * SCHEDULE_BLOCKED, naming the block in the way (its title) and the whole
 * stretch of it that covers the time, in local time (see blocksOverlapping:
 * the days of a multi-day block joined, the run of a repeating one's
 * occurrences that covers the time). A stretch with no end, or whose end
 * RFC 3339 cannot write (after the year 9999, only of an override stored
 * before dates were bounded), has an empty `block_end`; the message says
 * "with no end", or names the end as the last day's 24:00.
 */
function scheduleBlocked(resource: ResourceSnapshot, time: RequestedTime): Rejection {
  const zone = resource.timeZone;
  const block = blocksOverlapping(calendarOf(resource), {
    start: time.startMs,
    end: time.endMs,
  })[0];
  if (!block)
    return new Rejection("SCHEDULE_BLOCKED", `resource "${resource.id}" has that time blocked`);
  const from = localDateTime(block.span.start, zone);
  const to = writableLocalTime(block.span.end, zone);
  const title = block.rule.title ? `"${block.rule.title}"` : "a block";
  const wall = (t: string) => `${t.slice(0, 10)} ${t.slice(11, 16)}`;
  const until =
    to !== undefined
      ? `to ${wall(to)} (${zone})`
      : block.span.end === Infinity
        ? `(${zone}) with no end`
        : // Only a whole day ends past 9999-12-31 (at the next local midnight).
          `to ${localDateTime(block.span.end - 1, zone).slice(0, 10)} 24:00 (${zone})`;
  return new Rejection(
    "SCHEDULE_BLOCKED",
    `resource "${resource.id}" is blocked for ${title} from ${wall(from)} ${until}`,
    {
      metadata: {
        override_id: block.rule.id,
        block_title: block.rule.title ?? "",
        block_start: from,
        block_end: to ?? "",
      },
    },
  );
}

/**
 * An instant as local RFC 3339 (localDateTime), or undefined when there is
 * none: Infinity, or a time after 9999-12-31T23:59:59 local, which RFC 3339's
 * four-digit years cannot write.
 */
function writableLocalTime(ms: number, timeZone: string): string | undefined {
  if (!Number.isFinite(ms)) return undefined;
  const text = localDateTime(ms, timeZone);
  return /^\d{4}-/.test(text) ? text : undefined;
}

export function checkDuration(policy: Policy, durationMs: number, field = "end_time"): void {
  if (policy.durationsMs.includes(durationMs)) return;
  const allowed = policy.durationsMs.map((ms) => `${ms / MINUTE_MS} min`).join(", ");
  throw new Rejection(
    "INVALID_DURATION",
    `a booking of ${durationMs / MINUTE_MS} min is not offered; allowed: ${allowed}`,
    {
      fieldViolations: [{ field, description: `the duration must be one of ${allowed}` }],
    },
  );
}

/** A hold's lifetime: the request's ttl or the policy's default, never beyond max_hold_ttl. */
export function holdTtlMs(policy: Policy, requestedMs: number | null): number {
  return Math.min(requestedMs ?? policy.holdTtlMs, policy.maxHoldTtlMs);
}

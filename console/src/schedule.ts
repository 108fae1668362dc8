import type { Override, Resource } from "../../gen/holdfast/v1/resource_pb.js";
import { OverrideKind, RecurrenceFrequency } from "../../gen/holdfast/v1/resource_pb.js";
import {
  blocksOverlapping,
  type Interval,
  type ResourceCalendar,
  workingTime,
} from "../../src/domain/availability.js";
import { checkWeeklyWindows, type Policy } from "../../src/domain/catalog.js";
import type { OverrideRule } from "../../src/domain/override-rule.js";
import { checkOverride } from "../../src/domain/overrides.js";

/**
 * A resource's working time and its override blocks as the server reads
 * them: the console hands the resource and its overrides to the same pure
 * rules (src/domain/availability.ts) that list slots, so the shading on the
 * calendar is the time availability uses, not a second reading of it.
 */

// The resource's own time: no service's business hours narrow it.
const NO_SERVICE = {
  timeZone: "UTC",
  policy: {
    durationsMs: [],
    slotIntervalMs: null,
    bufferBeforeMs: 0,
    bufferAfterMs: 0,
    minNoticeMs: 0,
    maxAdvanceMs: null,
    businessHours: [],
    holdTtlMs: 0,
    maxHoldTtlMs: 0,
  } satisfies Policy,
};

export function calendarOf(r: Resource, overrides: Override[]): ResourceCalendar {
  const windows = r.weeklySchedule?.windows;
  return {
    resourceId: r.id,
    timeZone: r.timeZone || "UTC",
    capacity: r.capacity || 1,
    weeklySchedule: windows ? checkWeeklyWindows(windows, "windows").value : null,
    overrides: overrides.map(ruleOf),
  };
}

function ruleOf(o: Override): OverrideRule {
  const r = o.recurrence;
  const { value } = checkOverride({
    kind: o.kind === OverrideKind.BLOCK ? "block" : "open",
    allDay: o.allDay,
    startDate: o.startDate,
    endDate: o.endDate,
    startTime: o.startTime,
    endTime: o.endTime,
    recurrence: r
      ? {
          frequency:
            r.frequency === RecurrenceFrequency.WEEKLY
              ? "weekly"
              : r.frequency === RecurrenceFrequency.MONTHLY
                ? "monthly"
                : "unspecified",
          interval: r.interval,
          weekdays: r.weekdays,
          monthDay: r.monthDay,
          weekOfMonth: r.weekOfMonth,
          weekday: r.weekday,
          until: r.until,
        }
      : null,
  });
  return { ...value, id: o.id, title: o.title };
}

/** Within `range`: the open working time, and each override block with its title. */
export function shading(
  calendar: ResourceCalendar,
  range: Interval,
): { open: Interval[]; blocks: { title: string; span: Interval }[] } {
  const { open } = workingTime(calendar, NO_SERVICE, range);
  const blocks = blocksOverlapping(calendar, range).map(({ rule, span }) => ({
    title: rule.title || "Blocked",
    span: { start: Math.max(span.start, range.start), end: Math.min(span.end, range.end) },
  }));
  return { open, blocks };
}

import type { OverrideRule } from "./override-rule.js";
import { type FieldViolation, Rejection } from "./rejection.js";
import { EARLIEST_DATE, isCalendarDate, LATEST_DATE, parseClockTime } from "./time.js";

/** An override as a caller sends it; "" and 0 mean unset, as in protobuf. */
export type OverrideInput = {
  kind: "block" | "open";
  allDay: boolean;
  startDate: string;
  endDate: string;
  startTime: string;
  endTime: string;
  recurrence: null | {
    frequency: "weekly" | "monthly" | "unspecified";
    interval: number;
    weekdays: number[];
    monthDay: number;
    weekOfMonth: number;
    weekday: number;
    until: string;
  };
};

/**
 * Validates an override and turns it into the rule availability reads.
 * Violations name fields by their proto path: start_date, end_date,
 * start_time, end_time, recurrence.frequency, recurrence.interval,
 * recurrence.weekdays[i], recurrence.month_day, recurrence.week_of_month,
 * recurrence.weekday, recurrence.until.
 */
export function checkOverride(input: OverrideInput): {
  value: Omit<OverrideRule, "id">;
  violations: FieldViolation[];
} {
  const violations: FieldViolation[] = [];
  const violate = (field: string, description: string) => violations.push({ field, description });

  const startDateValid = isCalendarDate(input.startDate);
  if (!startDateValid) violate("start_date", 'must be a calendar date "YYYY-MM-DD"');
  else if (!inDateRange(input.startDate)) violate("start_date", DATE_RANGE);
  // Dates after a start date that is itself wrong are only checked for their form and range.
  const checkLaterDate = (text: string, field: string): string | null => {
    if (text === "") return null;
    if (!isCalendarDate(text)) violate(field, 'must be a calendar date "YYYY-MM-DD", or empty');
    else if (!inDateRange(text)) violate(field, DATE_RANGE);
    else if (startDateValid && text < input.startDate)
      violate(field, "must not be before start_date");
    return text;
  };
  const endDate = checkLaterDate(input.endDate, "end_date");

  let startMinute: number | null = null;
  let endMinute: number | null = null;
  if (input.allDay) {
    if (input.startTime !== "") violate("start_time", "must be empty for an all-day override");
    if (input.endTime !== "") violate("end_time", "must be empty for an all-day override");
  } else {
    startMinute = parseClockTime(input.startTime, false) ?? null;
    endMinute = parseClockTime(input.endTime, true) ?? null;
    if (startMinute === null) {
      violate(
        "start_time",
        input.startTime === ""
          ? "is required unless the override is all day"
          : 'must be "HH:MM" from 00:00 to 23:59',
      );
    }
    if (endMinute === null) {
      violate(
        "end_time",
        input.endTime === ""
          ? "is required unless the override is all day"
          : 'must be "HH:MM" from 00:01 to 24:00',
      );
    }
    if (startMinute !== null && endMinute !== null && endMinute <= startMinute)
      violate("end_time", "must be after start_time");
  }

  let recurrence: Omit<OverrideRule, "id">["recurrence"] = null;
  const r = input.recurrence;
  if (r !== null) {
    if (r.frequency === "unspecified") violate("recurrence.frequency", "must be weekly or monthly");
    const maxInterval = r.frequency === "monthly" ? 24 : 52;
    if (!Number.isInteger(r.interval) || r.interval < 0 || r.interval > maxInterval) {
      violate("recurrence.interval", `must be 1 to ${maxInterval} (0 means 1)`);
    }
    const until = checkLaterDate(r.until, "recurrence.until");
    r.weekdays.forEach((d, i) => {
      const field = `recurrence.weekdays[${i}]`;
      if (r.frequency === "monthly") violate(field, "must be empty for a monthly recurrence");
      else if (!isWeekday(d)) violate(field, "must be 1 (Monday) to 7 (Sunday)");
    });
    let monthDay: number | null = null;
    let weekOfMonth: number | null = null;
    let weekday: number | null = null;
    if (r.frequency === "weekly") {
      for (const [field, value] of [
        ["recurrence.month_day", r.monthDay],
        ["recurrence.week_of_month", r.weekOfMonth],
        ["recurrence.weekday", r.weekday],
      ] as const) {
        if (value !== 0) violate(field, "must be unset for a weekly recurrence");
      }
    } else if (r.frequency === "monthly") {
      const byDate = r.monthDay !== 0;
      const byWeekday = r.weekOfMonth !== 0 || r.weekday !== 0;
      if (byDate && byWeekday) {
        violate("recurrence.month_day", "set month_day, or week_of_month with weekday, not both");
      } else if (!byDate && !byWeekday) {
        violate(
          "recurrence.month_day",
          "a monthly recurrence needs month_day, or week_of_month with weekday",
        );
      }
      if (byDate) {
        if (!Number.isInteger(r.monthDay) || r.monthDay < 1 || r.monthDay > 31)
          violate("recurrence.month_day", "must be 1 to 31");
        monthDay = r.monthDay;
      }
      if (byWeekday) {
        if (![1, 2, 3, 4, 5, -1].includes(r.weekOfMonth))
          violate("recurrence.week_of_month", "must be 1 to 5, or -1 for the last");
        if (!isWeekday(r.weekday))
          violate("recurrence.weekday", "must be 1 (Monday) to 7 (Sunday)");
        weekOfMonth = r.weekOfMonth;
        weekday = r.weekday;
      }
    }
    if (r.frequency !== "unspecified") {
      recurrence = {
        frequency: r.frequency,
        interval: Math.max(1, r.interval),
        weekdays:
          r.frequency === "weekly"
            ? [...new Set(r.weekdays.filter(isWeekday))].sort((a, b) => a - b)
            : [],
        monthDay,
        weekOfMonth,
        weekday,
        until,
      };
    }
  }

  return {
    value: {
      kind: input.kind,
      allDay: input.allDay,
      startDate: input.startDate,
      endDate,
      startMinute,
      endMinute,
      recurrence,
    },
    violations,
  };
}

const DATE_RANGE = `must be a date from ${EARLIEST_DATE} to ${LATEST_DATE}`;

/** Within the dates an override may name (four-digit "YYYY-MM-DD" compare as text). */
function inDateRange(date: string): boolean {
  return date >= EARLIEST_DATE && date <= LATEST_DATE;
}

function isWeekday(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 7;
}

/**
 * The most overrides a resource may have: every slot listing and booking
 * check of the resource reads them all. A fixed bound, the same for every
 * tenant (the console lists up to as many).
 */
export const MAX_OVERRIDES_PER_RESOURCE = 1_000;

/**
 * LIMIT_REACHED when a resource that has `count` overrides may have no
 * more, with the metadata of a used-up quota (`quota`, `limit`, `usage`)
 * and the resource it is counted on.
 */
export function checkOverrideRoom(resourceId: string, count: number): void {
  if (count < MAX_OVERRIDES_PER_RESOURCE) return;
  throw new Rejection(
    "LIMIT_REACHED",
    `resource "${resourceId}" has ${count} overrides, the most a resource may have (${MAX_OVERRIDES_PER_RESOURCE}); delete one to add another`,
    {
      metadata: {
        quota: "overrides_per_resource",
        limit: String(MAX_OVERRIDES_PER_RESOURCE),
        usage: String(count),
        resource_id: resourceId,
      },
    },
  );
}

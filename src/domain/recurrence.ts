import type { OverrideRule } from "./override-rule.js";
import { DAY_MS, daysInMonth } from "./time.js";

/**
 * Calendar days as day numbers (days since 1970-01-01), and the days an
 * override falls on. Zone-free: a day number names a local date, whatever
 * the zone it is read in.
 */

export type CalendarDate = { year: number; month: number; day: number };

/** The day number of a valid "YYYY-MM-DD". */
export function dayNumber(date: string): number {
  return Date.parse(`${date}T00:00:00Z`) / DAY_MS;
}

export function dayNumberOf(year: number, month: number, day: number): number {
  // setUTCFullYear, unlike Date.UTC, does not read years 0..99 as 1900..1999.
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date.getTime() / DAY_MS;
}

export function calendarDate(dayNumber: number): CalendarDate {
  const date = new Date(dayNumber * DAY_MS);
  return { year: date.getUTCFullYear(), month: date.getUTCMonth() + 1, day: date.getUTCDate() };
}

/** ISO weekday: 1 (Monday) .. 7 (Sunday). */
export function isoWeekday(dayNumber: number): number {
  // Day 0, 1970-01-01, was a Thursday.
  return ((((dayNumber + 3) % 7) + 7) % 7) + 1;
}

/**
 * The first and last day an override may fall on: startDate, and endDate
 * or until, whichever comes first (startDate when neither is set and it
 * does not repeat; Infinity when it repeats with no end).
 */
export function occurrenceBounds(
  rule: Pick<OverrideRule, "startDate" | "endDate" | "recurrence">,
): {
  first: number;
  last: number;
} {
  const first = dayNumber(rule.startDate);
  const recurrence = rule.recurrence;
  let last = rule.endDate !== null ? dayNumber(rule.endDate) : recurrence ? Infinity : first;
  if (recurrence?.until) last = Math.min(last, dayNumber(recurrence.until));
  return { first, last };
}

/**
 * Whether the override falls on every day from its first to its last
 * (occurrenceBounds): it does not repeat, or repeats weekly, every week, on
 * all seven weekdays.
 */
export function fallsOnEveryDay(rule: Pick<OverrideRule, "recurrence">): boolean {
  const r = rule.recurrence;
  if (r === null) return true;
  return (
    r.frequency === "weekly" &&
    r.interval === 1 &&
    [1, 2, 3, 4, 5, 6, 7].every((d) => r.weekdays.includes(d))
  );
}

/**
 * The days in [from, to] the override falls on, ascending. Without
 * recurrence: every day from startDate to endDate. With it: the occurrences
 * from startDate on, up to endDate and until, whichever comes first. The
 * work is that of the days in [from, to], however long the override.
 */
export function occurrenceDays(
  rule: Pick<OverrideRule, "startDate" | "endDate" | "recurrence">,
  from: number,
  to: number,
): number[] {
  const { first, last } = occurrenceBounds(rule);
  const recurrence = rule.recurrence;
  const lo = Math.max(first, from);
  const hi = Math.min(last, to);
  const days: number[] = [];
  if (lo > hi) return days;

  if (recurrence === null) {
    for (let d = lo; d <= hi; d++) days.push(d);
  } else if (recurrence.frequency === "weekly") {
    const weekdays = new Set(
      recurrence.weekdays.length > 0 ? recurrence.weekdays : [isoWeekday(first)],
    );
    const firstMonday = first - (isoWeekday(first) - 1);
    for (let d = lo; d <= hi; d++) {
      const week = Math.floor((d - firstMonday) / 7);
      if (week % recurrence.interval === 0 && weekdays.has(isoWeekday(d))) days.push(d);
    }
  } else {
    const start = calendarDate(first);
    const startMonth = start.year * 12 + start.month - 1;
    const a = calendarDate(lo);
    const b = calendarDate(hi);
    for (let m = a.year * 12 + a.month - 1; m <= b.year * 12 + b.month - 1; m++) {
      if ((m - startMonth) % recurrence.interval !== 0) continue;
      const year = Math.floor(m / 12);
      const month = (m % 12) + 1;
      const dayOfMonth = monthlyDay(recurrence, year, month, start.day, isoWeekday(first));
      if (dayOfMonth === undefined) continue;
      const d = dayNumberOf(year, month, dayOfMonth);
      if (d >= lo && d <= hi) days.push(d);
    }
  }
  return days;
}

/**
 * The day of the month a monthly recurrence falls on, or undefined when the
 * month has no such day (a 31st, a fifth Monday). A rule naming neither a
 * date nor a weekday repeats startDate's date.
 */
function monthlyDay(
  recurrence: NonNullable<OverrideRule["recurrence"]>,
  year: number,
  month: number,
  startDay: number,
  startWeekday: number,
): number | undefined {
  const length = daysInMonth(year, month);
  if (recurrence.weekOfMonth === null) {
    const day = recurrence.monthDay ?? startDay;
    return day <= length ? day : undefined;
  }
  const weekday = recurrence.weekday ?? startWeekday;
  if (recurrence.weekOfMonth === -1) {
    const lastWeekday = isoWeekday(dayNumberOf(year, month, length));
    return length - ((lastWeekday - weekday + 7) % 7);
  }
  const firstWeekday = isoWeekday(dayNumberOf(year, month, 1));
  const day = 1 + ((weekday - firstWeekday + 7) % 7) + 7 * (recurrence.weekOfMonth - 1);
  return day <= length ? day : undefined;
}

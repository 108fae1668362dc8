import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { Temporal } from "temporal-polyfill";

/** Wall-clock arithmetic in a resource's zone, which is what the calendar shows. */

export const MINUTE = 60_000;

export function msOf(t: Timestamp | undefined): number {
  return t ? timestampMs(t) : 0;
}

export { timestampFromMs };

export function zoned(ms: number, zone: string): Temporal.ZonedDateTime {
  return Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone);
}

/** Today's date on the zone's wall clock. */
export function today(zone: string): Temporal.PlainDate {
  return Temporal.Now.plainDateISO(zone);
}

/** The Monday of the week `date` is in. */
export function mondayOf(date: Temporal.PlainDate): Temporal.PlainDate {
  return date.subtract({ days: date.dayOfWeek - 1 });
}

/** The instant a day starts in the zone (midnight, or the first time that exists). */
export function dayStartMs(date: Temporal.PlainDate, zone: string): number {
  return date.toZonedDateTime({ timeZone: zone }).epochMilliseconds;
}

/** Minutes since the day's midnight on the wall clock. */
export function minuteOfDay(z: Temporal.ZonedDateTime): number {
  return z.hour * 60 + z.minute;
}

export function clock(z: Temporal.ZonedDateTime): string {
  return `${String(z.hour).padStart(2, "0")}:${String(z.minute).padStart(2, "0")}`;
}

const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

export function dayLabel(d: Temporal.PlainDate): string {
  return `${WEEKDAYS[d.dayOfWeek - 1]} ${d.day}/${d.month}`;
}

/** "Mon 2030-03-04 09:00" in the zone. */
export function wallTime(ms: number, zone: string): string {
  const z = zoned(ms, zone);
  return `${WEEKDAYS[z.dayOfWeek - 1]} ${z.toPlainDate().toString()} ${clock(z)}`;
}

/** "1:05" until `ms`, or "" once it has passed. */
export function countdown(untilMs: number, nowMs: number): string {
  const left = Math.ceil((untilMs - nowMs) / 1000);
  if (left <= 0) return "";
  const m = Math.floor(left / 60);
  const s = left % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

/** The instant of a `datetime-local` input's value read on the zone's wall clock. */
export function instantOfLocalInput(value: string, zone: string): number {
  return Temporal.PlainDateTime.from(value).toZonedDateTime(zone).epochMilliseconds;
}

/** A `datetime-local` input's value for an instant, on the zone's wall clock. */
export function localInputOf(ms: number, zone: string): string {
  return zoned(ms, zone).toPlainDateTime().toString({ smallestUnit: "minute" });
}

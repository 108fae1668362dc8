import { Temporal } from "temporal-polyfill";
import { instantOfWallClock, isCalendarDate } from "../domain/time.js";
import { badArgument } from "./results.js";

/**
 * Times as a model gives them: an instant in RFC 3339 with "Z" or an
 * offset ("2030-03-04T14:00:00Z", "2030-03-04T09:00-05:00"), or a local
 * wall-clock time without one ("2030-03-04T09:00"), read in the resource's
 * zone. A wall time that clocks going back repeat takes its earlier
 * instant; one that clocks going forward skip does not exist, and is refused
 * with where the clocks jump.
 */

const WITH_OFFSET = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;
const WALL = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2}))?$/;

export const TIME_FORMATS =
  'RFC 3339 in UTC ("2030-03-04T14:00:00Z") or with an offset ("2030-03-04T09:00:00-05:00"), or the local wall-clock time of the resource\'s time zone without an offset ("2030-03-04T09:00")';

export const NOT_A_DATE = 'is not a date: give one such as "2030-03-04" (YYYY-MM-DD)';

/** `text` as milliseconds since the epoch; `zone` is asked for only for a wall-clock time. */
export async function readTime(
  field: string,
  text: string,
  zone: (field: string) => Promise<string>,
): Promise<number> {
  const t = text.trim();
  if (WITH_OFFSET.test(t)) {
    const ms = Date.parse(t);
    if (!Number.isNaN(ms) && isCalendarDate(t.slice(0, 10))) return ms;
  }
  const wall = WALL.exec(t);
  if (wall) {
    const [, date, hh, mm, ss] = wall;
    const hour = Number(hh);
    const minute = Number(mm);
    const second = Number(ss ?? "0");
    if (isCalendarDate(date as string) && hour < 24 && minute < 60 && second < 60) {
      const [year, month, day] = (date as string).split("-").map(Number) as [
        number,
        number,
        number,
      ];
      const timeZone = await zone(field);
      const at = instantOfWallClock({ year, month, day, hour, minute, second }, timeZone);
      if ("ms" in at) return at.ms;
      const { from, to } = at.skipped;
      throw badArgument(
        field,
        `"${text}" does not exist in ${timeZone}: the clocks jump from ${from} to ${to}. The nearest local times that exist are ${lastMinuteBefore(from)} and ${to} (or give a time with a UTC offset)`,
      );
    }
  }
  throw badArgument(field, `"${text}" is not a time: give ${TIME_FORMATS}`);
}

/**
 * A local calendar day "YYYY-MM-DD" in the resource's zone, as [its first
 * instant, the next day's); `zone` is asked for only once the date is one.
 */
export async function localDayRange(
  field: string,
  date: string,
  zone: (field: string) => Promise<string>,
): Promise<[number, number]> {
  if (!isCalendarDate(date)) {
    throw badArgument(field, `"${date}" ${NOT_A_DATE}`);
  }
  const day = Temporal.PlainDate.from(date);
  const timeZone = await zone(field);
  return [
    day.toZonedDateTime({ timeZone }).epochMilliseconds,
    day.add({ days: 1 }).toZonedDateTime({ timeZone }).epochMilliseconds,
  ];
}

/** "2027-03-28T01:00" -> "2027-03-28T00:59". */
function lastMinuteBefore(wall: string): string {
  return Temporal.PlainDateTime.from(wall)
    .subtract({ minutes: 1 })
    .toString({ smallestUnit: "minute" });
}

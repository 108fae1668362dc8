import { Temporal } from "temporal-polyfill";

/**
 * Wall-clock and zone primitives shared by schedules, overrides and
 * policies. Pure: no clock reads, no I/O.
 */

/**
 * The IANA spelling of a time zone name ("asia/kolkata" -> "Asia/Kolkata"),
 * or undefined when the name is not one. Names are kept as given, not
 * replaced by ICU's legacy aliases (Kolkata stays Kolkata). Bare UTC offsets
 * such as "+02:00" are refused: a resource's zone names a place.
 */
export function canonicalTimeZone(name: string): string | undefined {
  if (!/^[A-Za-z][A-Za-z0-9_+\-/]*$/.test(name) || name.length > 64) return undefined;
  try {
    return Temporal.Instant.fromEpochMilliseconds(0).toZonedDateTimeISO(name).timeZoneId;
  } catch {
    return undefined;
  }
}

/** Minutes since midnight for "HH:MM" (00:00..23:59, and "24:00" when `allowEndOfDay`). */
export function parseClockTime(text: string, allowEndOfDay: boolean): number | undefined {
  const m = /^(\d{2}):(\d{2})$/.exec(text);
  if (!m) return undefined;
  const hours = Number(m[1]);
  const minutes = Number(m[2]);
  if (minutes > 59) return undefined;
  if (hours === 24 && minutes === 0 && allowEndOfDay) return 24 * 60;
  if (hours > 23) return undefined;
  return hours * 60 + minutes;
}

export function formatClockTime(minuteOfDay: number): string {
  const h = Math.floor(minuteOfDay / 60);
  const m = minuteOfDay % 60;
  return `${String(h).padStart(2, "0")}:${String(m).padStart(2, "0")}`;
}

/** A calendar date "YYYY-MM-DD" that exists (no 2026-02-30, no year 0000). */
export function isCalendarDate(text: string): boolean {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(text);
  if (!m) return false;
  const [y, mo, d] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (y < 1 || mo < 1 || mo > 12 || d < 1) return false;
  return d <= daysInMonth(y, mo);
}

/**
 * The instants the API takes: every Timestamp of a request lies in
 * [EARLIEST_MS, LATEST_MS), 2000-01-01 to 2200-01-01 UTC.
 */
export const EARLIEST_MS = Date.UTC(2000, 0, 1);
export const LATEST_MS = Date.UTC(2200, 0, 1);

/**
 * The dates an override may name (start_date, end_date, recurrence.until):
 * the years of those instants, 2000-01-01 to 2199-12-31. What is stored is
 * read however far it reaches (overrides added before this bound may run
 * to 9999-12-31), at the cost of the days asked about, not the days named.
 */
export const EARLIEST_DATE = "2000-01-01";
export const LATEST_DATE = "2199-12-31";

export function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

/** "90s", "30m", "2h", "1d", "500ms" → milliseconds; undefined when it is not one such duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+)\s*(ms|s|m|h|d)\s*$/.exec(text);
  if (!m) return undefined;
  const unit = { ms: 1, s: 1000, m: MINUTE_MS, h: HOUR_MS, d: DAY_MS }[m[2] as string] as number;
  return Number(m[1]) * unit;
}

export const MINUTE_MS = 60_000;
export const HOUR_MS = 60 * MINUTE_MS;
export const DAY_MS = 24 * HOUR_MS;

/**
 * An instant as the wall-clock time of a zone, in RFC 3339 with the zone's
 * UTC offset at that instant ("2030-03-04T09:00:00-05:00"), so a caller
 * can say "9 AM" without converting. Offsets are whole minutes, as RFC 3339
 * requires: for the seconds-precise local mean times of before about 1900,
 * the offset is rounded and the wall time follows it, so the text still
 * names the exact instant.
 */
export function localDateTime(ms: number, timeZone: string): string {
  const offsetMin = Math.round(utcOffsetMs(ms, timeZone) / MINUTE_MS);
  const wall = ms + offsetMin * MINUTE_MS;
  const day = Math.floor(wall / DAY_MS);
  const msOfDay = wall - day * DAY_MS;
  const seconds = Math.floor(msOfDay / 1000) % 60;
  const millis = msOfDay % 1000;
  const time =
    formatClockTime(Math.floor(msOfDay / MINUTE_MS)) +
    `:${String(seconds).padStart(2, "0")}` +
    (millis === 0 ? "" : `.${String(millis).padStart(3, "0")}`);
  const sign = offsetMin < 0 ? "-" : "+";
  return `${isoDate(day)}T${time}${sign}${formatClockTime(Math.abs(offsetMin))}`;
}

/** "YYYY-MM-DD" of a day number (days since 1970-01-01); a page of times shares a few days. */
const isoDates = new Map<number, string>();
function isoDate(day: number): string {
  let text = isoDates.get(day);
  if (text === undefined) {
    text = new Date(day * DAY_MS).toISOString().slice(0, 10);
    if (isoDates.size >= 10_000) isoDates.clear();
    isoDates.set(day, text);
  }
  return text;
}

/**
 * Offsets change a few times a year at most, and reading one through the
 * Temporal polyfill costs about 80 µs: a page of slots or bookings would
 * spend milliseconds on it. So each zone keeps the spans between its
 * transitions it has met, each read from the zone database once.
 */
type OffsetSpan = { start: number; end: number; offsetMs: number };
const offsetSpans = new Map<string, OffsetSpan[]>();
const MAX_OFFSET_ZONES = 1000;
const MAX_SPANS_PER_ZONE = 64;

/** The zone's UTC offset at `ms`, in milliseconds (negative west of Greenwich). */
export function utcOffsetMs(ms: number, timeZone: string): number {
  let spans = offsetSpans.get(timeZone);
  const known = spans?.find((s) => s.start <= ms && ms < s.end);
  if (known) return known.offsetMs;
  const here = Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(timeZone);
  // "previous" is strictly before its instant: asked from just after `ms`,
  // it is the transition at `ms` itself when there is one.
  const since = Temporal.Instant.fromEpochMilliseconds(ms + 1)
    .toZonedDateTimeISO(timeZone)
    .getTimeZoneTransition("previous");
  const until = here.getTimeZoneTransition("next");
  const span = {
    start: since?.epochMilliseconds ?? Number.NEGATIVE_INFINITY,
    end: until?.epochMilliseconds ?? Number.POSITIVE_INFINITY,
    offsetMs: here.offsetNanoseconds / 1_000_000,
  };
  if (!spans || spans.length >= MAX_SPANS_PER_ZONE) {
    if (!spans && offsetSpans.size >= MAX_OFFSET_ZONES) offsetSpans.clear();
    spans = [];
    offsetSpans.set(timeZone, spans);
  }
  spans.push(span);
  return span.offsetMs;
}

/** The wall-clock fields of a local time; all exist on the calendar and the clock. */
export type WallClock = {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
};

/**
 * Where a zone's clocks jump forward over a wall time: the wall time they
 * leave and the one they reach, "YYYY-MM-DDTHH:MM" (e.g. 01:00 and 02:00).
 */
export type ClockJump = { from: string; to: string };

/**
 * The instant of a local wall-clock time in `timeZone`. A wall time that
 * clocks going back repeat is its earlier instant. One that clocks going
 * forward skip has no instant, as the slot grid has none there (see
 * gridStarts in availability.ts): the answer is then the jump that skips it.
 */
export function instantOfWallClock(
  wall: WallClock,
  timeZone: string,
): { ms: number } | { skipped: ClockJump } {
  const local = new Temporal.PlainDateTime(
    wall.year,
    wall.month,
    wall.day,
    wall.hour,
    wall.minute,
    wall.second,
  );
  // In a gap, "earlier" is the wall time read with the offset before the
  // jump: an instant before it, whose wall time differs from the one asked.
  const earlier = local.toZonedDateTime(timeZone, { disambiguation: "earlier" });
  if (earlier.toPlainDateTime().equals(local)) return { ms: earlier.epochMilliseconds };
  const jump = earlier.getTimeZoneTransition("next") as Temporal.ZonedDateTime;
  const to = jump.toPlainDateTime();
  const from = to.subtract({ nanoseconds: jump.offsetNanoseconds - earlier.offsetNanoseconds });
  const text = (t: Temporal.PlainDateTime) => t.toString({ smallestUnit: "minute" });
  return { skipped: { from: text(from), to: text(to) } };
}

/**
 * An instant in milliseconds written as every instant in a refusal is
 * (ts_text in SQL, instantText in src/zod-messages.ts for a Timestamp): RFC
 * 3339 in UTC as protobuf JSON writes a Timestamp, with no fraction at a
 * whole second and else 3 digits ("2030-03-04T09:00:00Z",
 * "2030-03-04T09:00:00.250Z").
 */
export function msInstantText(ms: number): string {
  return new Date(ms).toISOString().replace(/\.000Z$/, "Z");
}

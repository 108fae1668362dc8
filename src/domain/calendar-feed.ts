import { setImmediate as setImmediatePromise } from "node:timers/promises";
import ical, {
  ICalAttendee,
  type ICalAttendeeData,
  ICalAttendeeRole,
  ICalAttendeeStatus,
  type ICalDayJsStub,
  type ICalEvent,
  ICalEventStatus,
  ICalEventTransparency,
} from "ical-generator";
import { Temporal } from "temporal-polyfill";
import { Rejection } from "./rejection.js";
import { DAY_MS, localDateTime, MINUTE_MS, utcOffsetMs } from "./time.js";

/**
 * What an iCalendar (RFC 5545) feed of bookings shows, and its text. Pure:
 * the caller reads the bookings and the clock.
 */

/** A feed shows bookings that start from this long ago... */
export const FEED_PAST_MS = 31 * DAY_MS;
/** ...to this far ahead... */
export const FEED_AHEAD_MS = 366 * DAY_MS;
/** ...at most this many, the earliest first. */
export const MAX_FEED_EVENTS = 2_000;
/** How often a calendar app is asked to fetch the feed again (REFRESH-INTERVAL). */
export const FEED_REFRESH_MS = 15 * MINUTE_MS;

/**
 * The most feeds a tenant may have that are not revoked: every one may be
 * fetched every few minutes by whoever holds its URL. A fixed bound, the
 * same for every tenant.
 */
export const MAX_CALENDAR_FEEDS_PER_TENANT = 1_000;

/**
 * LIMIT_REACHED when a tenant that has `count` feeds not revoked may have no
 * more, with the metadata of a used-up quota (`quota`, `limit`, `usage`).
 */
export function checkCalendarFeedRoom(count: number): void {
  if (count < MAX_CALENDAR_FEEDS_PER_TENANT) return;
  throw new Rejection(
    "LIMIT_REACHED",
    `the tenant has ${count} calendar feeds, the most it may have (${MAX_CALENDAR_FEEDS_PER_TENANT}); revoke one to add another`,
    {
      metadata: {
        quota: "calendar_feeds",
        limit: String(MAX_CALENDAR_FEEDS_PER_TENANT),
        usage: String(count),
      },
    },
  );
}

export type FeedOptions = { freeBusy: boolean; includeHolds: boolean };

/**
 * The booking statuses a feed reads. A free/busy feed shows only what keeps
 * the time busy; a full feed also shows cancelled bookings as cancelled, so
 * a calendar that had the event removes it, and lapsed holds when it shows
 * holds at all.
 */
export function feedStatuses(f: FeedOptions): string[] {
  const busy = ["confirmed", "completed", "no_show", ...(f.includeHolds ? ["held"] : [])];
  if (f.freeBusy) return busy;
  return [...busy, "cancelled", ...(f.includeHolds ? ["expired"] : [])];
}

/** How a booking in `status` reads in a calendar (RFC 5545 STATUS of a VEVENT). */
export function eventStatus(status: string): ICalEventStatus {
  switch (status) {
    case "held":
      return ICalEventStatus.TENTATIVE;
    case "cancelled":
    case "expired":
      return ICalEventStatus.CANCELLED;
    default:
      return ICalEventStatus.CONFIRMED;
  }
}

export type FeedBooking = {
  id: string;
  status: string;
  startMs: number;
  endMs: number;
  createMs: number;
  updateMs: number;
  /** For holds: when the hold lapses. */
  expireMs: number | null;
  attendee: { name?: string; email?: string; phone?: string };
  cancelReason: string;
  serviceName: string;
  resourceName: string;
  /** The resource's IANA zone: the event's times are written in it. */
  timeZone: string;
};

export type FeedCalendar = {
  /** The resource's or service's name. */
  name: string;
  /** The zone the calendar is shown in (X-WR-TIMEZONE). */
  timeZone: string;
  /** The window the bookings were read for; VTIMEZONEs cover it. */
  fromMs: number;
  toMs: number;
  /** Set when the cap cut the list short: said in the calendar's description. */
  truncated: boolean;
};

/**
 * The feed as iCalendar text. Each event's UID is its booking id, so a
 * calendar app updates an event in place when the booking changes. Times are
 * written as wall-clock times of the resource's zone with a TZID, and every
 * zone used gets a VTIMEZONE built from the runtime's zone database (the one
 * Holdfast computes local times with), covering the window's transitions.
 */
export function renderCalendarFeed(
  cal: FeedCalendar,
  bookings: readonly FeedBooking[],
  f: FeedOptions,
): string {
  return [...calendarFeedParts(cal, bookings, f)].join("");
}

/** Events rendered between two turns of the event loop by renderCalendarFeedInTurns. */
export const FEED_EVENTS_PER_TURN = 100;

/**
 * renderCalendarFeed's text, giving the event loop a turn after every
 * FEED_EVENTS_PER_TURN events, so that a feed of thousands of bookings
 * never holds up other requests for the whole of its rendering.
 */
export async function renderCalendarFeedInTurns(
  cal: FeedCalendar,
  bookings: readonly FeedBooking[],
  f: FeedOptions,
): Promise<string> {
  const parts: string[] = [];
  for (const part of calendarFeedParts(cal, bookings, f)) {
    parts.push(part);
    if (parts.length % FEED_EVENTS_PER_TURN === 0) await setImmediatePromise();
  }
  return parts.join("");
}

/** The feed's text in parts: the calendar's properties and zones, then one part per event. */
function* calendarFeedParts(
  cal: FeedCalendar,
  bookings: readonly FeedBooking[],
  f: FeedOptions,
): Generator<string> {
  const calendar = ical({
    prodId: { company: "Holdfast", product: "Holdfast", language: "EN" },
    // ical-generator writes the name as it is given, into NAME and
    // X-WR-CALNAME: escaped here, or a line break in a resource's or
    // service's name would end the line and start properties of its own.
    name: textValue(cal.name),
    description: cal.truncated
      ? `The first ${MAX_FEED_EVENTS} bookings of the window only`
      : undefined,
    ttl: FEED_REFRESH_MS / 1000,
    // No calendar-wide zone in ical-generator's sense: it would write
    // DTSTAMP and the other UTC stamps as floating local times. Each event
    // names its zone, and X-WR-TIMEZONE tells apps which zone to show.
    timezone: { name: null },
  });
  calendar.x("X-WR-TIMEZONE", cal.timeZone);
  // The calendar's own properties, as ical-generator writes them for a
  // calendar of no events; the zones and events follow them. Not
  // calendar.toString() with the events in it: its line folding encodes
  // each character with a TextEncoder of its own, most of a millisecond per
  // event with long names (seconds for 2,000 bookings), while each event's
  // own text, folded here, costs some 30 to 50 microseconds.
  const head = calendar.toString();
  const end = "END:VCALENDAR";
  yield head.slice(0, head.lastIndexOf(end));
  // Every zone used gets a VTIMEZONE, in the order events first use it,
  // with transitions up to a day past the window: its last events end there.
  for (const zone of new Set(bookings.map((b) => b.timeZone))) {
    yield `${vtimezone(zone, cal.fromMs, cal.toMs + DAY_MS)}\r\n`;
  }
  for (const b of bookings) {
    const status = eventStatus(b.status);
    const event = calendar.createEvent({
      id: b.id,
      start: wallClock(b.startMs, b.timeZone),
      end: wallClock(b.endMs, b.timeZone),
      timezone: b.timeZone,
      stamp: new Date(b.updateMs),
      created: new Date(b.createMs),
      lastModified: new Date(b.updateMs),
      status,
      transparency:
        status === ICalEventStatus.CANCELLED
          ? ICalEventTransparency.TRANSPARENT
          : ICalEventTransparency.OPAQUE,
      summary: f.freeBusy ? "Busy" : printable(summaryOf(b)),
    });
    if (!f.freeBusy) {
      // ical-generator escapes these as TEXT, line breaks included, but keeps
      // other control characters, which TEXT may not hold.
      event.location(printable(b.resourceName));
      event.description(printable(descriptionOf(b)));
      if (b.attendee.email) {
        const attendee = {
          email: printable(b.attendee.email),
          role: ICalAttendeeRole.REQ,
          status: {
            [ICalEventStatus.CONFIRMED]: ICalAttendeeStatus.ACCEPTED,
            [ICalEventStatus.TENTATIVE]: ICalAttendeeStatus.TENTATIVE,
            [ICalEventStatus.CANCELLED]: ICalAttendeeStatus.DECLINED,
          }[status],
          rsvp: false,
        };
        event.createAttendee(new NamedAttendee(attendee, event, b.attendee.name));
      }
    }
    yield foldLines(event.toString());
    // The event was only wanted for its text.
    calendar.clear();
  }
  // Every content line ends with CRLF (RFC 5545 3.1), the last one too.
  yield `${end}\r\n`;
}

/**
 * The instant `ms` as the wall-clock time of `zone`, for ical-generator to
 * write after a TZID: the interface it takes from Day.js, kept to what it
 * calls. The offset comes from time.ts's cache of the zone's offsets, not
 * from a Temporal object per time.
 */
function wallClock(ms: number, zone: string): ICalDayJsStub {
  const iso = new Date(ms + utcOffsetMs(ms, zone)).toISOString();
  const date = iso.slice(0, 10).replace(/-/g, "");
  const time = iso.slice(11, 19).replace(/:/g, "");
  const self: ICalDayJsStub = {
    format: (pattern) => (pattern === "HHmmss" ? time : date),
    isValid: () => true,
    toDate: () => new Date(ms),
    toJSON: () => new Date(ms).toISOString(),
    tz: () => self,
  };
  return self;
}

/**
 * `text` with every content line longer than 75 octets folded (RFC 5545
 * 3.1): a CRLF and a space before the octet that would pass 74, never
 * inside a UTF-8 sequence. Where ical-generator folds its lines (its
 * foldLines), at a small part of its cost.
 */
export function foldLines(text: string): string {
  return text
    .split("\r\n")
    .map((line) => (Buffer.byteLength(line) <= 74 ? line : foldLine(line)))
    .join("\r\n");
}

function foldLine(line: string): string {
  let out = "";
  let from = 0;
  let octets = 0;
  for (let i = 0; i < line.length; ) {
    const cp = line.codePointAt(i) as number;
    const units = cp > 0xffff ? 2 : 1;
    const size = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp > 0xffff ? 4 : 3;
    octets += size;
    if (octets > 74) {
      out += `${line.slice(from, i)}\r\n `;
      from = i;
      octets = size;
    }
    i += units;
  }
  return out + line.slice(from);
}

/**
 * An ATTENDEE with its name (CN) encoded as a parameter value must be.
 * ical-generator escapes a CN as if it were TEXT (`\"`, `\n`), but a
 * parameter value has no backslash escapes: a parser ends the value at the
 * first `"`, and reads the rest of the name as garbage or fails on it.
 */
class NamedAttendee extends ICalAttendee {
  readonly #cn: string | undefined;

  constructor(data: ICalAttendeeData, event: ICalEvent, cn: string | undefined) {
    super(data, event);
    this.#cn = cn || undefined;
  }

  override toString(): string {
    const line = super.toString();
    const name = "ATTENDEE";
    if (this.#cn === undefined || !line.startsWith(name)) return line;
    return `${name};CN=${paramValue(this.#cn)}${line.slice(name.length)}`;
  }
}

/**
 * `text` as an iCalendar parameter value: quoted (RFC 5545 3.2: a value
 * holding `:`, `;` or `,` must be, and any may be), with RFC 6868's caret
 * encoding for what a quoted value cannot hold: `^'` for `"`, `^n` for a
 * line break, and `^^` for `^` itself. Other control characters, which no
 * parameter value may hold and no name needs, are left out (tabs are kept).
 */
export function paramValue(text: string): string {
  const encoded = text
    .replace(/\^/g, "^^")
    .replace(/"/g, "^'")
    .replace(/\r\n|\r|\n/g, "^n")
    .replace(/\p{Cc}/gu, (c) => (c === "\t" ? c : ""));
  return `"${encoded}"`;
}

/**
 * `text` as an iCalendar TEXT value (RFC 5545 3.3.11): `\\`, `\;` and `\,`
 * for what the format reserves, `\n` for a line break (CRLF, CR or LF), and
 * other control characters, which TEXT may not hold, left out (tabs are
 * kept). For the properties ical-generator writes without escaping.
 */
export function textValue(text: string): string {
  return printable(text.replace(/\r\n|\r|\n/g, "\n"))
    .replace(/[\\;,]/g, (c) => `\\${c}`)
    .replace(/\n/g, "\\n");
}

/** `text` without the control characters no TEXT value may hold; tabs and line breaks stay. */
export function printable(text: string): string {
  return text.replace(/\p{Cc}/gu, (c) => (c === "\t" || c === "\r" || c === "\n" ? c : ""));
}

function summaryOf(b: FeedBooking): string {
  const who = b.attendee.name?.trim();
  const what = b.status === "held" ? `Held: ${b.serviceName}` : b.serviceName;
  return who ? `${what}, ${who}` : what;
}

function descriptionOf(b: FeedBooking): string {
  const lines = [`Booking ${b.id} (${b.status})`, `Resource: ${b.resourceName}`];
  if (b.status === "held" && b.expireMs !== null) {
    lines.push(`Held until ${localDateTime(b.expireMs, b.timeZone)}`);
  }
  const a = b.attendee;
  const contact = [a.name, a.email, a.phone].filter((s) => s?.trim()).join(", ");
  if (contact) lines.push(`Attendee: ${contact}`);
  if (b.cancelReason) lines.push(`Cancelled: ${b.cancelReason}`);
  return lines.join("\n");
}

/**
 * A VTIMEZONE for `zone` valid over [fromMs, toMs]: the observance in force
 * at `fromMs`, then one per transition up to `toMs`, each with its exact
 * onset (no RRULE to approximate the rules). Enough for every time the
 * feed writes, and right for zones whose rules changed.
 */
export function vtimezone(zone: string, fromMs: number, toMs: number): string {
  const at = (ms: number) => Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone);
  const offsetAt = (ms: number) => at(ms).offsetNanoseconds / 1e6;
  const onsets: { ms: number; fromOffset: number; toOffset: number }[] = [];
  const first = at(fromMs + 1).getTimeZoneTransition("previous");
  const startMs = first?.epochMilliseconds ?? Date.UTC(1970, 0, 1);
  onsets.push({
    ms: startMs,
    fromOffset: first ? offsetAt(startMs - 1) : offsetAt(fromMs),
    toOffset: offsetAt(fromMs),
  });
  let next = at(fromMs).getTimeZoneTransition("next");
  // A zone changes its offset a few times a year at most; the bound only
  // guards against a window far wider than any feed asks for.
  while (next && next.epochMilliseconds <= toMs && onsets.length < 100) {
    const ms = next.epochMilliseconds;
    onsets.push({ ms, fromOffset: offsetAt(ms - 1), toOffset: offsetAt(ms) });
    next = next.getTimeZoneTransition("next");
  }
  const lines = ["BEGIN:VTIMEZONE", `TZID:${zone}`];
  for (const o of onsets) {
    // DAYLIGHT for a change that moves clocks forward; a zone with one
    // offset all year has only STANDARD.
    const kind = o.toOffset > o.fromOffset ? "DAYLIGHT" : "STANDARD";
    lines.push(
      `BEGIN:${kind}`,
      // The onset as the wall-clock time it had before the change.
      `DTSTART:${basicDateTime(o.ms + o.fromOffset)}`,
      `TZOFFSETFROM:${icalOffset(o.fromOffset)}`,
      `TZOFFSETTO:${icalOffset(o.toOffset)}`,
      `TZNAME:${zoneAbbreviation(zone, o.ms)}`,
      `END:${kind}`,
    );
  }
  lines.push("END:VTIMEZONE");
  return lines.join("\r\n");
}

/** "YYYYMMDDTHHMMSS" of a wall-clock time given as ms since the epoch, as if UTC. */
function basicDateTime(wallMs: number): string {
  return new Date(wallMs).toISOString().slice(0, 19).replace(/[-:]/g, "");
}

/** "+HHMM" (or "+HHMMSS" for the seconds-precise offsets of local mean time). */
function icalOffset(offsetMs: number): string {
  const sign = offsetMs < 0 ? "-" : "+";
  const total = Math.round(Math.abs(offsetMs) / 1000);
  const pad = (n: number) => String(n).padStart(2, "0");
  const hhmm = `${pad(Math.floor(total / 3600))}${pad(Math.floor(total / 60) % 60)}`;
  return `${sign}${hhmm}${total % 60 === 0 ? "" : pad(total % 60)}`;
}

function zoneAbbreviation(zone: string, ms: number): string {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    timeZoneName: "short",
  }).formatToParts(new Date(ms));
  return parts.find((p) => p.type === "timeZoneName")?.value ?? zone;
}

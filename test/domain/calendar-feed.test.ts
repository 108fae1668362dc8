import ICAL from "ical.js";
import { foldLines as libraryFoldLines } from "ical-generator";
import { describe, expect, it } from "vitest";
import {
  FEED_EVENTS_PER_TURN,
  type FeedBooking,
  feedStatuses,
  foldLines,
  MAX_FEED_EVENTS,
  paramValue,
  renderCalendarFeed,
  renderCalendarFeedInTurns,
  textValue,
  vtimezone,
} from "../../src/domain/calendar-feed.js";

const HOUR = 3_600_000;

function booking(id: string, startMs: number, timeZone: string): FeedBooking {
  return {
    id,
    status: "confirmed",
    startMs,
    endMs: startMs + HOUR,
    createMs: startMs - 10 * HOUR,
    updateMs: startMs - 10 * HOUR,
    expireMs: null,
    attendee: { name: "Ada" },
    cancelReason: "",
    serviceName: "Visit",
    resourceName: "Room",
    timeZone,
  };
}

/** Each event's UID, wall-clock hour and instant, as ical.js reads them from the text. */
function parse(text: string) {
  const cal = new ICAL.Component(ICAL.parse(text));
  return cal.getAllSubcomponents("vevent").map((v) => {
    const e = new ICAL.Event(v);
    return { uid: e.uid, hour: e.startDate.hour, ms: e.startDate.toJSDate().getTime() };
  });
}

describe("calendar feed text", () => {
  it("writes times that a parser maps back to the same instants in a southern zone across its clock change", () => {
    // Sydney leaves daylight time (+11:00 -> +10:00) on 2030-04-07.
    const zone = "Australia/Sydney";
    const before = Date.UTC(2030, 3, 5, 22); // 09:00 on 6 April, +11:00
    const after = Date.UTC(2030, 3, 7, 23); // 09:00 on 8 April, +10:00
    const text = renderCalendarFeed(
      {
        name: "Room",
        timeZone: zone,
        fromMs: Date.UTC(2030, 2, 1),
        toMs: Date.UTC(2030, 5, 1),
        truncated: false,
      },
      [booking("a", before, zone), booking("b", after, zone)],
      { freeBusy: false, includeHolds: false },
    );
    expect(parse(text)).toEqual([
      { uid: "a", hour: 9, ms: before },
      { uid: "b", hour: 9, ms: after },
    ]);
  });

  it("describes a zone without clock changes with a single observance", () => {
    const text = vtimezone("Asia/Kolkata", Date.UTC(2030, 0, 1), Date.UTC(2031, 0, 1));
    expect(text.match(/BEGIN:(STANDARD|DAYLIGHT)/g)).toEqual(["BEGIN:STANDARD"]);
    expect(text).toContain("TZOFFSETTO:+0530");
  });

  it("encodes parameter values per RFC 6868, leaving out controls no value may hold", () => {
    expect(paramValue('say "hi"^\r\nbye')).toBe(`"say ^'hi^'^^^nbye"`);
    expect(paramValue("a\tb\u0000c\u001bd\u007fe")).toBe('"a\tbcde"');
    expect(paramValue("Zoë; Dr., MD: x\\y")).toBe('"Zoë; Dr., MD: x\\y"');
  });

  it("encodes TEXT values per RFC 5545, leaving out controls no value may hold", () => {
    expect(textValue("a\\b;c,d\r\ne\rf\ng")).toBe("a\\\\b\\;c\\,d\\ne\\nf\\ng");
    expect(textValue("a\tb\u0000c\u001bd\u007fe\u0085f")).toBe("a\tbcdef");
  });

  it("folds lines at 75 octets where ical-generator does, never inside a character", () => {
    const long = "Zoë Ångström 王小明 🙂 ".repeat(12);
    const texts = [
      `SUMMARY:${long}\r\nDESCRIPTION:${"a".repeat(74)}\r\nX:${"é".repeat(37)}x\r\n`,
      `${"a".repeat(73)}🙂🙂\r\n${"b".repeat(75)}\r\n${"\ud83d".repeat(30)}`,
      "",
    ];
    for (const text of texts) {
      const folded = foldLines(text);
      expect(folded).toBe(libraryFoldLines(text));
      expect(folded.replace(/\r\n /g, "")).toBe(text);
      for (const line of folded.split("\r\n")) {
        expect(Buffer.byteLength(line)).toBeLessThanOrEqual(75);
      }
    }
  });

  it("renders in turns the same text, letting other work run between them", async () => {
    const zone = "Europe/Berlin";
    const name = "Zoë Ångström 王小明 🙂 ".repeat(12).slice(0, 200);
    const start = Date.UTC(2030, 0, 1, 8);
    const bookings = Array.from({ length: MAX_FEED_EVENTS }, (_, i) => ({
      ...booking(`b${i}`, start + i * HOUR, zone),
      attendee: { name, email: `p${i}@example.com` },
    }));
    const cal = {
      name: "Room",
      timeZone: zone,
      fromMs: start - 31 * 24 * HOUR,
      toMs: start + 366 * 24 * HOUR,
      truncated: false,
    };
    const options = { freeBusy: false, includeHolds: false };
    let turns = 0;
    const count = () => {
      turns++;
      ticker = setImmediate(count);
    };
    let ticker = setImmediate(count);
    const text = await renderCalendarFeedInTurns(cal, bookings, options).finally(() =>
      clearImmediate(ticker),
    );
    // One turn at least per FEED_EVENTS_PER_TURN events: the event loop
    // was never held for the whole feed.
    expect(turns).toBeGreaterThanOrEqual(MAX_FEED_EVENTS / FEED_EVENTS_PER_TURN - 1);
    expect(text).toBe(renderCalendarFeed(cal, bookings, options));
    const events = new ICAL.Component(ICAL.parse(text)).getAllSubcomponents("vevent");
    expect(events.map((v) => new ICAL.Event(v).uid)).toEqual(bookings.map((b) => b.id));
    for (const v of events) {
      expect(String(v.getFirstProperty("attendee")?.getParameter("cn"))).toBe(name);
    }
  });

  it("says when the cap cut the feed short", () => {
    const cal = { name: "Room", timeZone: "UTC", fromMs: 0, toMs: HOUR, truncated: true };
    const text = renderCalendarFeed(cal, [], { freeBusy: true, includeHolds: false });
    expect(text).toContain(`X-WR-CALDESC:The first ${MAX_FEED_EVENTS} bookings`);
  });

  it("reads busy statuses only for a free/busy feed, and lapsed holds only with holds", () => {
    expect(feedStatuses({ freeBusy: true, includeHolds: false }).sort()).toEqual([
      "completed",
      "confirmed",
      "no_show",
    ]);
    expect(feedStatuses({ freeBusy: false, includeHolds: true }).sort()).toEqual([
      "cancelled",
      "completed",
      "confirmed",
      "expired",
      "held",
      "no_show",
    ]);
  });
});

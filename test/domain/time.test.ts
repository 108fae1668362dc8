import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import fc from "fast-check";
import { Temporal } from "temporal-polyfill";
import { describe, expect, it } from "vitest";
import {
  canonicalTimeZone,
  EARLIEST_MS,
  formatClockTime,
  instantOfWallClock,
  isCalendarDate,
  LATEST_MS,
  localDateTime,
  msInstantText,
  parseClockTime,
  parseDuration,
  utcOffsetMs,
} from "../../src/domain/time.js";
import { instantText } from "../../src/zod-messages.js";

describe("canonicalTimeZone", () => {
  it.each([
    ["America/New_York", "America/New_York"],
    ["america/new_york", "America/New_York"],
    ["Asia/Kolkata", "Asia/Kolkata"],
    ["Europe/Kyiv", "Europe/Kyiv"],
    ["Australia/Lord_Howe", "Australia/Lord_Howe"],
    ["UTC", "UTC"],
    ["utc", "UTC"],
    ["Etc/GMT+5", "Etc/GMT+5"],
    ["america/port-au-prince", "America/Port-au-Prince"],
  ])("accepts %s as %s", (input, expected) => {
    expect(canonicalTimeZone(input)).toBe(expected);
  });

  it.each([
    "",
    "Mars/Olympus",
    "+02:00",
    "-0500",
    "Europe/",
    "/London",
    "Europe/London; DROP",
    "x".repeat(65),
  ])("refuses %j", (input) => {
    expect(canonicalTimeZone(input)).toBeUndefined();
  });
});

describe("parseClockTime", () => {
  it.each([
    ["00:00", false, 0],
    ["09:30", false, 570],
    ["23:59", false, 1439],
    ["24:00", true, 1440],
  ])("%s (end of day allowed: %s) is minute %i", (text, allow, minute) => {
    expect(parseClockTime(text, allow)).toBe(minute);
  });

  it.each([
    ["24:00", false],
    ["24:01", true],
    ["9:30", false],
    ["09:60", false],
    ["25:00", true],
    ["09:30:00", false],
    ["", false],
    ["ab:cd", false],
  ])("refuses %j (end of day allowed: %s)", (text, allow) => {
    expect(parseClockTime(text, allow)).toBeUndefined();
  });

  it("round-trips through formatClockTime", () => {
    for (let m = 0; m <= 1440; m += 7) expect(parseClockTime(formatClockTime(m), true)).toBe(m);
  });
});

describe("isCalendarDate", () => {
  it.each(["2026-01-01", "2024-02-29", "2026-12-31"])("accepts %s", (d) =>
    expect(isCalendarDate(d)).toBe(true));
  it.each([
    "2026-02-29",
    "2026-13-01",
    "2026-00-10",
    "2026-04-31",
    "26-01-01",
    "2026-1-1",
    "2026-01-00",
    "0000-01-01",
  ])("refuses %s", (d) => expect(isCalendarDate(d)).toBe(false));
});

describe("localDateTime", () => {
  it.each([
    // New York before, at and after the 2030 spring-forward (02:00 -> 03:00 on 10 March).
    ["2030-03-04T14:00:00Z", "America/New_York", "2030-03-04T09:00:00-05:00"],
    ["2030-03-10T06:59:59Z", "America/New_York", "2030-03-10T01:59:59-05:00"],
    ["2030-03-10T06:59:59.999Z", "America/New_York", "2030-03-10T01:59:59.999-05:00"],
    ["2030-03-10T07:00:00Z", "America/New_York", "2030-03-10T03:00:00-04:00"],
    // The repeated hour of the fall-back (3 November) twice, told apart by the offset.
    ["2030-11-03T05:30:00Z", "America/New_York", "2030-11-03T01:30:00-04:00"],
    ["2030-11-03T06:30:00Z", "America/New_York", "2030-11-03T01:30:00-05:00"],
    // Half- and three-quarter-hour zones.
    ["2030-03-04T03:30:00Z", "Asia/Kolkata", "2030-03-04T09:00:00+05:30"],
    ["2030-03-04T03:15:00Z", "Asia/Kathmandu", "2030-03-04T09:00:00+05:45"],
    ["2030-03-04T14:00:00Z", "America/St_Johns", "2030-03-04T10:30:00-03:30"],
    // A half-hour zone with daylight saving: Adelaide falls back from
    // 03:00 +10:30 to 02:00 +09:30 on 7 April 2030 (16:30 UTC the day before).
    ["2030-04-06T16:00:00Z", "Australia/Adelaide", "2030-04-07T02:30:00+10:30"],
    ["2030-04-06T16:30:00Z", "Australia/Adelaide", "2030-04-07T02:00:00+09:30"],
    ["2030-04-06T17:00:00Z", "Australia/Adelaide", "2030-04-07T02:30:00+09:30"],
    ["2030-03-04T09:00:00Z", "UTC", "2030-03-04T09:00:00+00:00"],
    ["2030-03-04T14:00:00.250Z", "America/New_York", "2030-03-04T09:00:00.250-05:00"],
  ])("%s in %s is %s", (utc, zone, local) => {
    expect(localDateTime(Date.parse(utc), zone)).toBe(local);
  });

  it("rounds a local mean time offset to minutes and keeps the instant", () => {
    // New York kept -04:56:02 until 1883.
    const ms = Date.UTC(1850, 0, 1, 12);
    const text = localDateTime(ms, "America/New_York");
    expect(text).toBe("1850-01-01T07:04:00-04:56");
    expect(Date.parse(text)).toBe(ms);
  });

  it("names the same instant, with Temporal's wall clock, at any instant of any zone", () => {
    const zones = [
      "America/New_York",
      "Australia/Adelaide",
      "Asia/Kolkata",
      "Europe/London",
      "Pacific/Chatham",
      "Australia/Lord_Howe",
      "UTC",
    ];
    fc.assert(
      fc.property(
        fc.integer({ min: Date.UTC(1990, 0, 1), max: Date.UTC(2060, 0, 1) }),
        fc.constantFrom(...zones),
        (ms, zone) => {
          const text = localDateTime(ms, zone);
          expect(Date.parse(text)).toBe(ms);
          const wall = Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(zone);
          expect(text.slice(0, 19)).toBe(wall.toPlainDateTime().toString().slice(0, 19));
          expect(utcOffsetMs(ms, zone)).toBe(wall.offsetNanoseconds / 1_000_000);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("parseDuration", () => {
  it("reads one whole number with a unit", () => {
    expect(parseDuration("250ms")).toBe(250);
    expect(parseDuration("90s")).toBe(90_000);
    expect(parseDuration(" 30m ")).toBe(1_800_000);
    expect(parseDuration("2h")).toBe(7_200_000);
    expect(parseDuration("1d")).toBe(86_400_000);
    expect(parseDuration("0s")).toBe(0);
  });

  it.each([
    "",
    "30",
    "m",
    "1.5h",
    "-1s",
    "1w",
    "1h30m",
    "1m,2m",
    "30 minutes",
  ])("refuses %j", (text) => expect(parseDuration(text)).toBeUndefined());
});

describe("instantOfWallClock", () => {
  const wall = (text: string) => {
    const t = Temporal.PlainDateTime.from(text);
    return {
      year: t.year,
      month: t.month,
      day: t.day,
      hour: t.hour,
      minute: t.minute,
      second: t.second,
    };
  };

  it("reads an ordinary wall time with the zone's offset", () => {
    expect(instantOfWallClock(wall("2027-03-28T00:30"), "Europe/London")).toEqual({
      ms: Date.parse("2027-03-28T00:30:00Z"),
    });
    expect(instantOfWallClock(wall("2027-03-28T02:00"), "Europe/London")).toEqual({
      ms: Date.parse("2027-03-28T01:00:00Z"),
    });
  });

  it("takes the earlier instant of a wall time that clocks going back repeat", () => {
    expect(instantOfWallClock(wall("2027-10-31T01:30"), "Europe/London")).toEqual({
      ms: Date.parse("2027-10-31T00:30:00Z"),
    });
  });

  it("gives no instant for a wall time that clocks going forward skip, but the jump", () => {
    expect(instantOfWallClock(wall("2027-03-28T01:30"), "Europe/London")).toEqual({
      skipped: { from: "2027-03-28T01:00", to: "2027-03-28T02:00" },
    });
    expect(instantOfWallClock(wall("2027-03-14T02:00"), "America/New_York")).toEqual({
      skipped: { from: "2027-03-14T02:00", to: "2027-03-14T03:00" },
    });
    // Lord Howe moves its clocks by half an hour.
    expect(instantOfWallClock(wall("2026-10-04T02:15"), "Australia/Lord_Howe")).toEqual({
      skipped: { from: "2026-10-04T02:00", to: "2026-10-04T02:30" },
    });
    // Samoa skipped a whole day.
    expect(instantOfWallClock(wall("2011-12-30T12:00"), "Pacific/Apia")).toEqual({
      skipped: { from: "2011-12-30T00:00", to: "2011-12-31T00:00" },
    });
  });
});

describe("msInstantText", () => {
  it("writes an instant in milliseconds as protobuf JSON writes its Timestamp (instantText)", () => {
    expect(msInstantText(Date.UTC(2030, 2, 4, 9))).toBe("2030-03-04T09:00:00Z");
    expect(msInstantText(Date.UTC(2030, 2, 4, 9, 0, 0, 250))).toBe("2030-03-04T09:00:00.250Z");
    fc.assert(
      fc.property(fc.integer({ min: EARLIEST_MS, max: LATEST_MS - 1 }), (ms) => {
        expect(msInstantText(ms)).toBe(instantText(timestampFromMs(ms)));
      }),
    );
  });
});

import fc from "fast-check";
import { Temporal } from "temporal-polyfill";
import { afterEach, describe, expect, it } from "vitest";
import { blocksOverlapping, type Interval } from "../../src/domain/availability.js";
import { checkTime, type ResourceSnapshot } from "../../src/domain/booking.js";
import type { Policy } from "../../src/domain/catalog.js";
import type { OverrideRule } from "../../src/domain/override-rule.js";
import { dayNumber, occurrenceDays } from "../../src/domain/recurrence.js";
import { Rejection } from "../../src/domain/rejection.js";
import { thirtyMinutePolicy } from "../support/booking-writes.js";
import { override, recurrence } from "../support/overrides.js";

/**
 * The blocks in the way of a time (blocksOverlapping) and the
 * SCHEDULE_BLOCKED answer that names them: the stretch a block covers is
 * found at the cost of the time asked about, not of the block's length
 * (a block to 9999-12-31 once took 20-30 s of one call, the whole event
 * loop's), and it is the block's real stretch, also for repeating blocks.
 */

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const NY = "America/New_York";

const at = (iso: string) => Date.parse(iso);
const hour = (iso: string): Interval => ({ start: at(iso), end: at(iso) + HOUR });

/** Local midnight of a date, read straight from Temporal (independently of the code under test). */
function midnightOf(date: string, timeZone: string): number {
  return Temporal.PlainDate.from(date).toZonedDateTime(timeZone).epochMilliseconds;
}

function nextDate(date: string): string {
  return Temporal.PlainDate.from(date).add({ days: 1 }).toString();
}

function wallTime(date: string, minute: number, timeZone: string): number {
  if (minute === 1440) return midnightOf(nextDate(date), timeZone);
  return Temporal.PlainDate.from(date)
    .toPlainDateTime({ hour: Math.floor(minute / 60), minute: minute % 60 })
    .toZonedDateTime(timeZone, { disambiguation: "compatible" }).epochMilliseconds;
}

const EVERY_DAY = [1, 2, 3, 4, 5, 6, 7];

function calendar(overrides: OverrideRule[], timeZone = NY) {
  return { resourceId: "r1", timeZone, capacity: 1, weeklySchedule: null, overrides };
}

/**
 * Counts the zone lookups of local wall times (a local midnight or a wall
 * clock time of a day), the unit of work of expanding a block's days: the
 * structural stand-in for time, which tests do not measure. A plain
 * counter, not a spy: a spy keeps every call, and the days of a block to
 * 9999 are millions.
 */
const zoned = [Temporal.PlainDate.prototype, Temporal.PlainDateTime.prototype] as {
  toZonedDateTime: (...args: unknown[]) => unknown;
}[];
const originals = zoned.map((p) => p.toZonedDateTime);
let zoneLookups = 0;
function countZoneLookups(): () => number {
  zoneLookups = 0;
  zoned.forEach((p, i) => {
    const original = originals[i] as (...args: unknown[]) => unknown;
    p.toZonedDateTime = function (this: unknown, ...args: unknown[]) {
      zoneLookups++;
      return original.apply(this, args);
    };
  });
  return () => zoneLookups;
}
afterEach(() => {
  zoned.forEach((p, i) => {
    p.toZonedDateTime = originals[i] as (...args: unknown[]) => unknown;
  });
});

describe("blocksOverlapping: a block's length costs nothing", () => {
  it("three blocks to 9999-12-31 are each answered with their whole span", () => {
    // Overrides stored before dates were bounded may run to 9999; three of
    // them on one resource were 2.9 million days each to walk.
    const rules = ["a", "b", "c"].map((id) =>
      override({ id, startDate: "2026-01-01", endDate: "9999-12-31" }),
    );
    const lookups = countZoneLookups();
    const found = blocksOverlapping(calendar(rules, "America/Cancun"), hour("2031-03-04T15:00Z"));
    const work = lookups();
    const span = {
      start: midnightOf("2026-01-01", "America/Cancun"),
      end: midnightOf(nextDate("9999-12-31"), "America/Cancun"),
    };
    expect(found).toEqual(rules.map((rule) => ({ rule, span })));
    expect(work).toBeLessThan(20);
  });

  it("a 100-year block costs a few zone lookups, not one a day", () => {
    const rule = override({ startDate: "2026-01-01", endDate: "2125-12-31" });
    // A zone of its own, so the lookups are not already cached by another test.
    const lookups = countZoneLookups();
    const found = blocksOverlapping(
      calendar([rule], "America/Tegucigalpa"),
      hour("2080-06-01T15:00:00Z"),
    );
    const work = lookups();
    expect(found[0]?.span).toEqual({
      start: midnightOf("2026-01-01", "America/Tegucigalpa"),
      end: midnightOf("2126-01-01", "America/Tegucigalpa"),
    });
    // Two midnights and the day of the time asked about; before, 36,525 midnights.
    expect(work).toBeLessThan(20);
  });

  it("a block every day with no end, timed 09:00-17:00, costs the days around the time only", () => {
    const rule = override({
      startDate: "2026-01-01",
      allDay: false,
      startMinute: 9 * 60,
      endMinute: 17 * 60,
      recurrence: recurrence({ weekdays: EVERY_DAY }),
    });
    const lookups = countZoneLookups();
    const found = blocksOverlapping(calendar([rule], "America/Managua"), hour("2150-06-01T18:00Z"));
    const work = lookups();
    expect(found[0]?.span).toEqual({
      start: wallTime("2150-06-01", 9 * 60, "America/Managua"),
      end: wallTime("2150-06-01", 17 * 60, "America/Managua"),
    });
    // The day asked about and one either side.
    expect(work).toBeLessThan(20);
  });

  it("a block far from the time is not in the way, and costs no lookup of its days", () => {
    const rules = [
      override({ id: "before", startDate: "2000-01-01", endDate: "2031-03-02" }),
      override({ id: "after", startDate: "2031-03-06", endDate: "9999-12-31" }),
    ];
    const lookups = countZoneLookups();
    expect(blocksOverlapping(calendar(rules, "America/Belize"), hour("2031-03-04T15:00Z"))).toEqual(
      [],
    );
    expect(lookups()).toBeLessThan(20);
  });
});

describe("blocksOverlapping: multi-day blocks across daylight-saving changes", () => {
  it.each([
    // New York springs forward on Sunday 2026-03-08: the span is 5 days less an hour.
    [NY, "2026-03-06", "2026-03-10", "2026-03-08T12:00:00Z", 5 * DAY - HOUR],
    // London falls back on Sunday 2026-10-25: 5 days and an hour.
    ["Europe/London", "2026-10-23", "2026-10-27", "2026-10-26T12:00:00Z", 5 * DAY + HOUR],
    // Santiago skips midnight on 2026-09-06: that day starts at 01:00.
    ["America/Santiago", "2026-09-06", "2026-09-08", "2026-09-07T12:00:00Z", 3 * DAY - HOUR],
    // Lord Howe's half-hour change on 2026-10-04.
    [
      "Australia/Lord_Howe",
      "2026-10-01",
      "2026-10-31",
      "2026-10-04T12:00:00Z",
      31 * DAY - HOUR / 2,
    ],
  ])("%s, all day %s to %s: one span from the first midnight to the midnight after the last", (zone, from, to, asked, length) => {
    const rule = override({ startDate: from, endDate: to });
    const span = { start: midnightOf(from, zone), end: midnightOf(nextDate(to), zone) };
    expect(span.end - span.start).toBe(length);
    expect(blocksOverlapping(calendar([rule], zone), hour(asked))).toEqual([{ rule, span }]);
  });

  it("a 00:00-24:00 timed block over several days is joined like an all-day one", () => {
    const rule = override({
      allDay: false,
      startMinute: 0,
      endMinute: 1440,
      startDate: "2026-03-06",
      endDate: "2026-03-10",
    });
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-09T15:00Z"))).toEqual([
      { rule, span: { start: midnightOf("2026-03-06", NY), end: midnightOf("2026-03-11", NY) } },
    ]);
  });

  it("a timed block over several days is its hours on the day asked about, on either side of the change", () => {
    const rule = override({
      allDay: false,
      startMinute: 9 * 60,
      endMinute: 17 * 60,
      startDate: "2026-03-06",
      endDate: "2026-03-10",
    });
    for (const date of ["2026-03-06", "2026-03-09"]) {
      const span = { start: wallTime(date, 9 * 60, NY), end: wallTime(date, 17 * 60, NY) };
      expect(
        blocksOverlapping(calendar([rule]), {
          start: span.start + HOUR,
          end: span.start + 2 * HOUR,
        }),
      ).toEqual([{ rule, span }]);
    }
    // Between two days' hours, nothing.
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-07T03:00Z"))).toEqual([]);
  });
});

describe("blocksOverlapping: repeating blocks name the stretch that covers the time", () => {
  // 2026-03-02 is a Monday.
  const wednesday = hour("2026-03-11T15:00Z");

  it("every day, all day, with no end: from its first day on, with no end", () => {
    const rule = override({
      startDate: "2026-03-02",
      recurrence: recurrence({ weekdays: EVERY_DAY }),
    });
    expect(blocksOverlapping(calendar([rule]), wednesday)).toEqual([
      { rule, span: { start: midnightOf("2026-03-02", NY), end: Infinity } },
    ]);
    // The same far ahead, at the same cost.
    expect(blocksOverlapping(calendar([rule]), hour("2199-12-31T15:00Z"))[0]?.span).toEqual({
      start: midnightOf("2026-03-02", NY),
      end: Infinity,
    });
  });

  it("every day, all day, until a date (or to an end date, whichever is first)", () => {
    const until = override({
      startDate: "2026-03-02",
      recurrence: recurrence({ weekdays: EVERY_DAY, until: "2026-03-20" }),
    });
    const endDate = { ...until, endDate: "2026-03-15" };
    expect(blocksOverlapping(calendar([until]), wednesday)[0]?.span).toEqual({
      start: midnightOf("2026-03-02", NY),
      end: midnightOf("2026-03-21", NY),
    });
    expect(blocksOverlapping(calendar([endDate]), wednesday)[0]?.span).toEqual({
      start: midnightOf("2026-03-02", NY),
      end: midnightOf("2026-03-16", NY),
    });
    expect(blocksOverlapping(calendar([endDate]), hour("2026-03-17T15:00Z"))).toEqual([]);
  });

  it("Monday to Friday every week: that week's Monday 00:00 to Saturday 00:00, not a day either side", () => {
    const rule = override({
      startDate: "2026-03-02",
      recurrence: recurrence({ weekdays: [1, 2, 3, 4, 5] }),
    });
    expect(blocksOverlapping(calendar([rule]), wednesday)[0]?.span).toEqual({
      start: midnightOf("2026-03-09", NY),
      end: midnightOf("2026-03-14", NY),
    });
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-14T15:00Z"))).toEqual([]);
  });

  it("every day of every second week: that week, Monday to Sunday", () => {
    const rule = override({
      startDate: "2026-03-02",
      recurrence: recurrence({ weekdays: EVERY_DAY, interval: 2 }),
    });
    // The week of 2026-03-16 is on; its Sunday is the 22nd.
    for (const asked of ["2026-03-16T15:00Z", "2026-03-22T15:00Z"]) {
      expect(blocksOverlapping(calendar([rule]), hour(asked))[0]?.span).toEqual({
        start: midnightOf("2026-03-16", NY),
        end: midnightOf("2026-03-23", NY),
      });
    }
    expect(blocksOverlapping(calendar([rule]), wednesday)).toEqual([]);
  });

  it("Sunday and Monday every week: joined across the week's turn", () => {
    const rule = override({
      startDate: "2026-03-01",
      recurrence: recurrence({ weekdays: [7, 1] }),
    });
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-09T15:00Z"))[0]?.span).toEqual({
      start: midnightOf("2026-03-08", NY),
      end: midnightOf("2026-03-10", NY),
    });
  });

  it("timed every day: the occurrence that covers the time", () => {
    const rule = override({
      allDay: false,
      startMinute: 12 * 60,
      endMinute: 13 * 60,
      startDate: "2026-03-02",
      recurrence: recurrence({ weekdays: EVERY_DAY }),
    });
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-11T16:30Z"))[0]?.span).toEqual({
      start: wallTime("2026-03-11", 12 * 60, NY),
      end: wallTime("2026-03-11", 13 * 60, NY),
    });
  });

  it("monthly on the 31st, all day: that day", () => {
    const rule = override({
      startDate: "2026-01-31",
      recurrence: recurrence({ frequency: "monthly", monthDay: 31 }),
    });
    expect(blocksOverlapping(calendar([rule]), hour("2026-03-31T15:00Z"))[0]?.span).toEqual({
      start: midnightOf("2026-03-31", NY),
      end: midnightOf("2026-04-01", NY),
    });
  });
});

describe("blocksOverlapping matches expanding every day of the block", () => {
  const zones = [NY, "Europe/London", "America/Santiago", "Australia/Lord_Howe", "Asia/Kolkata"];
  const firstDay = dayNumber("2026-01-01");
  const dateOf = (day: number) => new Date(day * DAY).toISOString().slice(0, 10);

  /** The reference: every occurrence of the rule from its first day to its last, joined where they touch. */
  function reference(rule: OverrideRule, zone: string, range: Interval): Interval | undefined {
    const last = dayNumber(rule.recurrence?.until ?? rule.endDate ?? rule.startDate);
    const spans = occurrenceDays(rule, dayNumber(rule.startDate), last)
      .map((d) => dateOf(d))
      .map((date) =>
        rule.allDay
          ? { start: midnightOf(date, zone), end: midnightOf(nextDate(date), zone) }
          : {
              start: wallTime(date, rule.startMinute as number, zone),
              end: wallTime(date, rule.endMinute as number, zone),
            },
      )
      .filter((i) => i.end > i.start)
      .sort((a, b) => a.start - b.start);
    const joined: Interval[] = [];
    for (const i of spans) {
      const prev = joined.at(-1);
      if (prev && i.start <= prev.end) prev.end = Math.max(prev.end, i.end);
      else joined.push({ ...i });
    }
    return joined.find((i) => i.start < range.end && i.end > range.start);
  }

  /** A rule, and its first day. */
  const rule: fc.Arbitrary<{ rule: OverrideRule; first: number }> = fc
    .record({
      start: fc.integer({ min: 0, max: 400 }),
      length: fc.integer({ min: 0, max: 120 }),
      allDay: fc.boolean(),
      minutes: fc.constantFrom([0, 1440], [9 * 60, 17 * 60], [0, 60], [23 * 60, 1440], [60, 180]),
      repeat: fc.oneof(
        fc.constant(null),
        fc.record({
          frequency: fc.constant("weekly" as const),
          interval: fc.integer({ min: 1, max: 3 }),
          weekdays: fc.subarray(EVERY_DAY),
        }),
        fc.record({
          frequency: fc.constant("monthly" as const),
          interval: fc.integer({ min: 1, max: 2 }),
          weekdays: fc.constant([] as number[]),
        }),
      ),
    })
    .map(({ start, length, allDay, minutes, repeat }) => {
      const startDate = dateOf(firstDay + start);
      const last = dateOf(firstDay + start + length);
      const rule = override({
        allDay,
        startMinute: allDay ? null : (minutes[0] as number),
        endMinute: allDay ? null : (minutes[1] as number),
        startDate,
        endDate: repeat ? null : last,
        recurrence: repeat ? recurrence({ ...repeat, until: last }) : null,
      });
      return { rule, first: firstDay + start };
    });

  it("for one-off, weekly and monthly blocks, all day or timed, in zones with changes", () => {
    let hits = 0;
    fc.assert(
      fc.property(
        rule,
        fc.constantFrom(...zones),
        // Asked about from a few days before the rule's first day to past its last.
        fc.integer({ min: -3, max: 125 }),
        fc.integer({ min: 0, max: 95 }),
        fc.constantFrom(30 * MIN, HOUR, 3 * HOUR, 2 * DAY),
        ({ rule: r, first }, zone, day, quarter, length) => {
          const start = midnightOf(dateOf(first + day), zone) + quarter * 15 * MIN;
          const range = { start, end: start + length };
          const expected = reference(r, zone, range);
          if (expected) hits++;
          expect(blocksOverlapping(calendar([r], zone), range)).toEqual(
            expected ? [{ rule: r, span: expected }] : [],
          );
        },
      ),
      { numRuns: 400 },
    );
    // Only meaningful if blocks are often in the way.
    expect(hits).toBeGreaterThan(30);
  });
});

describe("SCHEDULE_BLOCKED names the block's stretch in well-formed local times", () => {
  const rules = {
    timeZone: "UTC",
    policy: {
      ...thirtyMinutePolicy,
      durationsMs: [HOUR],
      holdTtlMs: 60_000,
      maxHoldTtlMs: 60_000,
    } satisfies Policy,
  };

  function refusal(overrides: OverrideRule[], startIso: string, timeZone = NY) {
    const resource: ResourceSnapshot = {
      id: "rsc_1",
      active: true,
      revision: 1,
      capacity: 1,
      timeZone,
      weeklySchedule: null,
      overrides,
    };
    try {
      checkTime(rules, resource, { startMs: at(startIso), endMs: at(startIso) + HOUR });
    } catch (err) {
      if (err instanceof Rejection) return err;
      throw err;
    }
    throw new Error("not refused");
  }

  it("a block to 9999-12-31 ends at that day's 24:00, and block_end is empty (RFC 3339 has no year 10000)", () => {
    const r = refusal(
      [
        override({
          id: "ovr_far",
          title: "Sabbatical",
          startDate: "2026-01-01",
          endDate: "9999-12-31",
        }),
      ],
      "2031-03-04T15:00:00Z",
    );
    expect(r.reason).toBe("SCHEDULE_BLOCKED");
    expect(r.message).toBe(
      'resource "rsc_1" is blocked for "Sabbatical" from 2026-01-01 00:00 to 9999-12-31 24:00 (America/New_York)',
    );
    expect(r.details.metadata).toEqual({
      override_id: "ovr_far",
      block_title: "Sabbatical",
      block_start: "2026-01-01T00:00:00-05:00",
      block_end: "",
    });
  });

  it("a block to 2199-12-31, the last date an override may name, ends at 2200-01-01 00:00", () => {
    const r = refusal(
      [override({ title: "Closed", startDate: "2026-01-01", endDate: "2199-12-31" })],
      "2199-06-01T15:00:00Z",
    );
    expect(r.message).toBe(
      'resource "rsc_1" is blocked for "Closed" from 2026-01-01 00:00 to 2200-01-01 00:00 (America/New_York)',
    );
    expect(r.details.metadata?.block_end).toBe("2200-01-01T00:00:00-05:00");
  });

  it("a block every day with no end says so, with an empty block_end", () => {
    const r = refusal(
      [
        override({
          title: "",
          startDate: "2026-03-02",
          recurrence: recurrence({ weekdays: EVERY_DAY }),
        }),
      ],
      "2030-03-04T14:30:00Z",
      "Asia/Kolkata",
    );
    expect(r.message).toBe(
      'resource "rsc_1" is blocked for a block from 2026-03-02 00:00 (Asia/Kolkata) with no end',
    );
    expect(r.details.metadata).toMatchObject({
      block_start: "2026-03-02T00:00:00+05:30",
      block_end: "",
    });
  });

  it("a weekly Monday-to-Friday block names that week's run, not a day either side of the time", () => {
    const r = refusal(
      [
        override({
          title: "Site closed",
          startDate: "2026-03-02",
          recurrence: recurrence({ weekdays: [1, 2, 3, 4, 5] }),
        }),
      ],
      "2026-03-11T15:00:00Z",
    );
    expect(r.message).toBe(
      'resource "rsc_1" is blocked for "Site closed" from 2026-03-09 00:00 to 2026-03-14 00:00 (America/New_York)',
    );
    expect(r.details.metadata).toMatchObject({
      block_start: "2026-03-09T00:00:00-04:00",
      block_end: "2026-03-14T00:00:00-04:00",
    });
  });

  it("a timed block names its hours that day", () => {
    const r = refusal(
      [
        override({
          title: "Staff training",
          allDay: false,
          startMinute: 14 * 60,
          endMinute: 16 * 60,
          startDate: "2030-03-05",
        }),
      ],
      "2030-03-05T20:00:00Z",
    );
    expect(r.message).toBe(
      'resource "rsc_1" is blocked for "Staff training" from 2030-03-05 14:00 to 2030-03-05 16:00 (America/New_York)',
    );
    expect(r.details.metadata).toMatchObject({
      block_start: "2030-03-05T14:00:00-05:00",
      block_end: "2030-03-05T16:00:00-05:00",
    });
  });
});

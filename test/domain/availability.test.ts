import fc from "fast-check";
import { Temporal } from "temporal-polyfill";
import { describe, expect, it } from "vitest";
import {
  type BusyBlock,
  blocksOverlapping,
  checkRequestedTime,
  computeSlots,
  type FreeSlot,
  fairOrder,
  type Interval,
  localDay,
  nearestAlternatives,
  type ResourceCalendar,
  type ServiceRules,
  type SlotQuery,
  slotFollows,
  workingTime,
} from "../../src/domain/availability.js";
import type { Policy, WeeklyWindow } from "../../src/domain/catalog.js";
import type { OverrideRule } from "../../src/domain/override-rule.js";
import { parseClockTime } from "../../src/domain/time.js";
import { override, recurrence } from "../support/overrides.js";

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const NY = "America/New_York";
const MON_FRI = [1, 2, 3, 4, 5];

const at = (iso: string) => Date.parse(iso);
const span = (start: string, end: string): Interval => ({ start: at(start), end: at(end) });
const clock = (hhmm: string) => parseClockTime(hhmm, true) as number;
const win = (weekday: number, start: string, end: string): WeeklyWindow => ({
  weekday,
  start: clock(start),
  end: clock(end),
});
const wins = (weekdays: number[], start: string, end: string) =>
  weekdays.map((d) => win(d, start, end));

function policy(p: Partial<Policy> = {}): Policy {
  return {
    durationsMs: [30 * MIN],
    slotIntervalMs: null,
    bufferBeforeMs: 0,
    bufferAfterMs: 0,
    minNoticeMs: 0,
    maxAdvanceMs: null,
    businessHours: [],
    holdTtlMs: 120_000,
    maxHoldTtlMs: 30 * MIN,
    ...p,
  };
}

function service(p: Partial<Policy> = {}, timeZone = NY): ServiceRules {
  return { policy: policy(p), timeZone };
}

function calendar(p: Partial<ResourceCalendar> = {}): ResourceCalendar {
  return {
    resourceId: "r1",
    timeZone: NY,
    capacity: 1,
    weeklySchedule: null,
    overrides: [],
    ...p,
  };
}

function allDay(kind: "block" | "open", startDate: string, p: Partial<OverrideRule> = {}) {
  return override({ kind, startDate, ...p });
}

function timed(
  kind: "block" | "open",
  startDate: string,
  start: string,
  end: string,
  p: Partial<OverrideRule> = {},
): OverrideRule {
  return override({
    kind,
    startDate,
    allDay: false,
    startMinute: clock(start),
    endMinute: clock(end),
    ...p,
  });
}

/** Local midnight of a date, read straight from Temporal (independently of the code under test). */
function midnightOf(date: string, timeZone: string): number {
  return Temporal.PlainDate.from(date).toZonedDateTime(timeZone).epochMilliseconds;
}

function localDate(date: string, timeZone: string): Interval {
  const next = Temporal.PlainDate.from(date).add({ days: 1 }).toString();
  return { start: midnightOf(date, timeZone), end: midnightOf(next, timeZone) };
}

function slots(q: Partial<SlotQuery> & Pick<SlotQuery, "range">): FreeSlot[] {
  return computeSlots({
    service: service(),
    resources: [calendar()],
    durationMs: 30 * MIN,
    nowMs: 0,
    busy: [],
    ...q,
  });
}

const startsOf = (list: readonly FreeSlot[]) => list.map((s) => s.start);
const times = (...isos: string[]) => isos.map(at);

/** 2026-03-02 is a Monday; New York is on EST (-05:00) until Sunday 2026-03-08. */
const MONDAY = span("2026-03-02T00:00:00-05:00", "2026-03-03T00:00:00-05:00");

describe("workingTime: weekly schedule", () => {
  it("two windows with a lunch break stay two intervals", () => {
    const resource = calendar({
      weeklySchedule: [win(1, "09:00", "12:00"), win(1, "13:00", "17:00")],
    });
    expect(workingTime(resource, service(), MONDAY)).toEqual({
      open: [
        span("2026-03-02T09:00:00-05:00", "2026-03-02T12:00:00-05:00"),
        span("2026-03-02T13:00:00-05:00", "2026-03-02T17:00:00-05:00"),
      ],
      blocked: [],
    });
  });

  it("is clipped to the range", () => {
    const resource = calendar({
      weeklySchedule: [win(1, "09:00", "12:00"), win(1, "13:00", "17:00")],
    });
    const range = span("2026-03-02T10:00:00-05:00", "2026-03-02T14:00:00-05:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-02T10:00:00-05:00", "2026-03-02T12:00:00-05:00"),
      span("2026-03-02T13:00:00-05:00", "2026-03-02T14:00:00-05:00"),
    ]);
  });

  it("a window ending 24:00 joins the next day's window starting 00:00 into one interval", () => {
    const resource = calendar({
      weeklySchedule: [win(1, "18:00", "24:00"), win(2, "00:00", "06:00")],
    });
    const range = span("2026-03-02T00:00:00-05:00", "2026-03-04T00:00:00-05:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-02T18:00:00-05:00", "2026-03-03T06:00:00-05:00"),
    ]);
  });

  it("no schedule means all hours: the whole range", () => {
    const range = span("2026-03-02T10:17:00-05:00", "2026-03-04T03:00:00-05:00");
    expect(workingTime(calendar(), service(), range)).toEqual({ open: [range], blocked: [] });
  });

  it("an empty schedule means no time at all, except what opens add", () => {
    expect(workingTime(calendar({ weeklySchedule: [] }), service(), MONDAY).open).toEqual([]);
    const withOpen = calendar({
      weeklySchedule: [],
      overrides: [timed("open", "2026-03-02", "10:00", "12:00")],
    });
    expect(workingTime(withOpen, service(), MONDAY).open).toEqual([
      span("2026-03-02T10:00:00-05:00", "2026-03-02T12:00:00-05:00"),
    ]);
  });

  it("an empty range has no time", () => {
    const range = { start: at("2026-03-02T10:00:00-05:00"), end: at("2026-03-02T10:00:00-05:00") };
    expect(workingTime(calendar(), service(), range)).toEqual({ open: [], blocked: [] });
  });
});

describe("blocksOverlapping", () => {
  it("names each block in the way with its whole span, days of one block joined", () => {
    const week = allDay("block", "2030-03-04", { id: "ov_week", endDate: "2030-03-08" });
    const lunch = timed("block", "2030-03-06", "12:00", "13:00", { id: "ov_lunch" });
    const open = allDay("open", "2030-03-06", { id: "ov_open" });
    const r = calendar({ overrides: [week, lunch, open] });
    expect(blocksOverlapping(r, span("2030-03-06T17:00Z", "2030-03-06T17:30Z"))).toEqual([
      { rule: week, span: span("2030-03-04T05:00Z", "2030-03-09T05:00Z") },
      { rule: lunch, span: span("2030-03-06T17:00Z", "2030-03-06T18:00Z") },
    ]);
    expect(blocksOverlapping(r, span("2030-03-10T17:00Z", "2030-03-10T17:30Z"))).toEqual([]);
  });
});

describe("workingTime: business hours read in the service's zone", () => {
  const londonResource = calendar({
    timeZone: "Europe/London",
    weeklySchedule: wins(MON_FRI, "09:00", "18:00"),
  });
  const newYorkHours = service({ businessHours: wins(MON_FRI, "09:00", "17:00") }, NY);

  it.each([
    // Both on standard time: 09:00 New York is 14:00 London.
    ["2026-03-02", "2026-03-02T14:00:00Z", "2026-03-02T18:00:00Z"],
    // New York on EDT, London still on GMT: 09:00 New York is 13:00 London.
    ["2026-03-16", "2026-03-16T13:00:00Z", "2026-03-16T18:00:00Z"],
    // Both on summer time: 09:00 New York is 14:00 BST; the resource stops at 18:00 BST.
    ["2026-03-30", "2026-03-30T14:00:00+01:00", "2026-03-30T18:00:00+01:00"],
  ])("London resource, New York business hours on Monday %s: %s to %s", (date, start, end) => {
    const range = localDate(date, "Europe/London");
    expect(workingTime(londonResource, newYorkHours, range).open).toEqual([span(start, end)]);
  });

  it("an all-hours resource is limited to the business hours alone", () => {
    const range = localDate("2026-03-02", "Europe/London");
    expect(workingTime(calendar({ timeZone: "Europe/London" }), newYorkHours, range).open).toEqual([
      span("2026-03-02T09:00:00-05:00", "2026-03-02T17:00:00-05:00"),
    ]);
  });

  it("Tokyo business hours Monday 09:00-17:00 are Sunday 19:00 to Monday 03:00 in New York, one interval across midnight", () => {
    const tokyo = service({ businessHours: [win(1, "09:00", "17:00")] }, "Asia/Tokyo");
    const range = span("2026-03-01T00:00:00-05:00", "2026-03-03T00:00:00-05:00");
    expect(workingTime(calendar(), tokyo, range).open).toEqual([
      span("2026-03-01T19:00:00-05:00", "2026-03-02T03:00:00-05:00"),
    ]);
  });

  it("an open adds time outside business hours and the schedule (Saturday)", () => {
    const resource = calendar({
      weeklySchedule: wins(MON_FRI, "09:00", "17:00"),
      overrides: [timed("open", "2026-03-07", "10:00", "14:00")],
    });
    const range = localDate("2026-03-07", NY);
    expect(workingTime(resource, newYorkHours, range).open).toEqual([
      span("2026-03-07T10:00:00-05:00", "2026-03-07T14:00:00-05:00"),
    ]);
  });
});

describe("workingTime: overrides", () => {
  const weekdays9to5 = wins(MON_FRI, "09:00", "17:00");
  const monToWed = span("2026-03-02T00:00:00-05:00", "2026-03-05T00:00:00-05:00");

  it("an all-day block removes the whole local day and is reported as blocked", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [allDay("block", "2026-03-03")],
    });
    expect(workingTime(resource, service(), monToWed)).toEqual({
      open: [
        span("2026-03-02T09:00:00-05:00", "2026-03-02T17:00:00-05:00"),
        span("2026-03-04T09:00:00-05:00", "2026-03-04T17:00:00-05:00"),
      ],
      blocked: [span("2026-03-03T00:00:00-05:00", "2026-03-04T00:00:00-05:00")],
    });
  });

  it("a timed block cuts a hole", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [timed("block", "2026-03-02", "10:00", "11:30")],
    });
    expect(workingTime(resource, service(), MONDAY)).toEqual({
      open: [
        span("2026-03-02T09:00:00-05:00", "2026-03-02T10:00:00-05:00"),
        span("2026-03-02T11:30:00-05:00", "2026-03-02T17:00:00-05:00"),
      ],
      blocked: [span("2026-03-02T10:00:00-05:00", "2026-03-02T11:30:00-05:00")],
    });
  });

  it("a block is reported as blocked even where the resource does not work", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [timed("block", "2026-03-02", "18:00", "20:00")],
    });
    expect(workingTime(resource, service(), MONDAY).blocked).toEqual([
      span("2026-03-02T18:00:00-05:00", "2026-03-02T20:00:00-05:00"),
    ]);
  });

  it("blocks beat opens where both apply", () => {
    const resource = calendar({
      weeklySchedule: [],
      overrides: [
        timed("open", "2026-03-07", "10:00", "14:00"),
        timed("block", "2026-03-07", "12:00", "13:00", { id: "o2" }),
        allDay("open", "2026-03-08", { id: "o3" }),
        allDay("block", "2026-03-08", { id: "o4" }),
      ],
    });
    const range = span("2026-03-07T00:00:00-05:00", "2026-03-09T00:00:00-04:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-07T10:00:00-05:00", "2026-03-07T12:00:00-05:00"),
      span("2026-03-07T13:00:00-05:00", "2026-03-07T14:00:00-05:00"),
    ]);
  });

  it("an open touching the schedule extends it into one interval", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [timed("open", "2026-03-02", "17:00", "19:00")],
    });
    expect(workingTime(resource, service(), MONDAY).open).toEqual([
      span("2026-03-02T09:00:00-05:00", "2026-03-02T19:00:00-05:00"),
    ]);
  });

  it("a multi-day all-day block without recurrence covers startDate to endDate inclusive", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [allDay("block", "2026-03-03", { endDate: "2026-03-05" })],
    });
    const range = span("2026-03-02T00:00:00-05:00", "2026-03-07T00:00:00-05:00");
    expect(workingTime(resource, service(), range)).toEqual({
      open: [
        span("2026-03-02T09:00:00-05:00", "2026-03-02T17:00:00-05:00"),
        span("2026-03-06T09:00:00-05:00", "2026-03-06T17:00:00-05:00"),
      ],
      blocked: [span("2026-03-03T00:00:00-05:00", "2026-03-06T00:00:00-05:00")],
    });
  });

  it("a multi-day timed block applies its hours on each day", () => {
    const resource = calendar({
      weeklySchedule: weekdays9to5,
      overrides: [timed("block", "2026-03-02", "12:00", "13:00", { endDate: "2026-03-03" })],
    });
    expect(workingTime(resource, service(), monToWed).open).toEqual([
      span("2026-03-02T09:00:00-05:00", "2026-03-02T12:00:00-05:00"),
      span("2026-03-02T13:00:00-05:00", "2026-03-02T17:00:00-05:00"),
      span("2026-03-03T09:00:00-05:00", "2026-03-03T12:00:00-05:00"),
      span("2026-03-03T13:00:00-05:00", "2026-03-03T17:00:00-05:00"),
      span("2026-03-04T09:00:00-05:00", "2026-03-04T17:00:00-05:00"),
    ]);
  });

  it("a weekly block every 2nd Monday leaves the Mondays in between (across the DST change)", () => {
    const resource = calendar({
      weeklySchedule: [win(1, "09:00", "17:00")],
      overrides: [
        allDay("block", "2026-03-02", { recurrence: recurrence({ interval: 2, weekdays: [1] }) }),
      ],
    });
    const range = span("2026-03-02T00:00:00-05:00", "2026-03-24T00:00:00-04:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-09T09:00:00-04:00", "2026-03-09T17:00:00-04:00"),
      span("2026-03-23T09:00:00-04:00", "2026-03-23T17:00:00-04:00"),
    ]);
  });

  it("a weekly timed open on Sat and Sun stops after until", () => {
    const resource = calendar({
      weeklySchedule: [],
      overrides: [
        timed("open", "2026-03-07", "10:00", "12:00", {
          recurrence: recurrence({ weekdays: [6, 7], until: "2026-03-14" }),
        }),
      ],
    });
    const range = span("2026-03-01T00:00:00-05:00", "2026-04-01T00:00:00-04:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-07T10:00:00-05:00", "2026-03-07T12:00:00-05:00"),
      span("2026-03-08T10:00:00-04:00", "2026-03-08T12:00:00-04:00"),
      span("2026-03-14T10:00:00-04:00", "2026-03-14T12:00:00-04:00"),
    ]);
  });

  it("monthly opens on the 2nd Tuesday and the last Friday, ending at endDate", () => {
    const resource = calendar({
      weeklySchedule: [],
      overrides: [
        timed("open", "2026-01-01", "10:00", "11:00", {
          recurrence: recurrence({ frequency: "monthly", weekOfMonth: 2, weekday: 2 }),
        }),
        timed("open", "2026-01-01", "15:00", "16:00", {
          id: "o2",
          endDate: "2026-04-23",
          recurrence: recurrence({ frequency: "monthly", weekOfMonth: -1, weekday: 5 }),
        }),
      ],
    });
    const range = span("2026-03-01T00:00:00-05:00", "2026-05-01T00:00:00-04:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-10T10:00:00-04:00", "2026-03-10T11:00:00-04:00"),
      span("2026-03-27T15:00:00-04:00", "2026-03-27T16:00:00-04:00"),
      span("2026-04-14T10:00:00-04:00", "2026-04-14T11:00:00-04:00"),
    ]);
  });

  it("a monthly all-day block on the 31st skips April", () => {
    const resource = calendar({
      overrides: [
        allDay("block", "2026-01-31", {
          recurrence: recurrence({ frequency: "monthly", monthDay: 31 }),
        }),
      ],
    });
    const range = span("2026-03-01T00:00:00-05:00", "2026-06-01T00:00:00-04:00");
    expect(workingTime(resource, service(), range).blocked).toEqual([
      span("2026-03-31T00:00:00-04:00", "2026-04-01T00:00:00-04:00"),
      span("2026-05-31T00:00:00-04:00", "2026-06-01T00:00:00-04:00"),
    ]);
  });

  it("overrides are read on the resource's local days, not the service's", () => {
    const resource = calendar({
      timeZone: "Asia/Kolkata",
      overrides: [allDay("block", "2026-03-10")],
    });
    const range = span("2026-03-09T00:00:00Z", "2026-03-11T00:00:00Z");
    expect(workingTime(resource, service(), range).blocked).toEqual([
      span("2026-03-10T00:00:00+05:30", "2026-03-11T00:00:00+05:30"),
    ]);
  });
});

describe("workingTime across DST", () => {
  it("a 02:00-03:00 window does not exist on New York's spring-forward day", () => {
    const resource = calendar({ weeklySchedule: [win(7, "02:00", "03:00")] });
    const range = span("2026-03-01T00:00:00-05:00", "2026-03-09T00:00:00-04:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-01T02:00:00-05:00", "2026-03-01T03:00:00-05:00"),
    ]);
  });

  it("a 01:30-03:30 window lasts one real hour on New York's spring-forward day", () => {
    const resource = calendar({ weeklySchedule: [win(7, "01:30", "03:30")] });
    expect(workingTime(resource, service(), localDate("2026-03-08", NY)).open).toEqual([
      span("2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"),
    ]);
  });

  it("an edge inside the spring-forward gap is the moment of the jump, where the clock first reads it or later", () => {
    const day = localDate("2026-03-08", NY);
    const until = calendar({ weeklySchedule: [win(7, "01:00", "02:30")] });
    expect(workingTime(until, service(), day).open).toEqual([
      span("2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00"),
    ]);
    const from = calendar({ weeklySchedule: [win(7, "02:30", "05:00")] });
    expect(workingTime(from, service(), day).open).toEqual([
      span("2026-03-08T03:00:00-04:00", "2026-03-08T05:00:00-04:00"),
    ]);
    // A block 02:30-03:30 is the half hour from the jump, not empty.
    const blocked = calendar({ overrides: [timed("block", "2026-03-08", "02:30", "03:30")] });
    expect(workingTime(blocked, service(), day).blocked).toEqual([
      span("2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"),
    ]);
    // Lord Howe jumps 02:00 to 02:30: a window from 02:15 starts at the jump.
    const lordHowe = calendar({
      timeZone: "Australia/Lord_Howe",
      weeklySchedule: [win(7, "02:15", "04:00")],
    });
    expect(
      workingTime(lordHowe, service(), localDate("2026-10-04", "Australia/Lord_Howe")).open,
    ).toEqual([span("2026-10-04T02:30:00+11:00", "2026-10-04T04:00:00+11:00")]);
  });

  it("a 01:00-02:00 window lasts two real hours on New York's fall-back day, covering both 1 AMs", () => {
    const resource = calendar({ weeklySchedule: [win(7, "01:00", "02:00")] });
    expect(workingTime(resource, service(), localDate("2026-11-01", NY)).open).toEqual([
      span("2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"),
    ]);
  });

  it("London: 01:00-02:00 is empty on spring-forward day and two hours on fall-back day", () => {
    const resource = calendar({
      timeZone: "Europe/London",
      weeklySchedule: [win(7, "01:00", "02:00")],
    });
    expect(workingTime(resource, service(), localDate("2026-03-29", "Europe/London")).open).toEqual(
      [],
    );
    expect(workingTime(resource, service(), localDate("2026-10-25", "Europe/London")).open).toEqual(
      [span("2026-10-25T01:00:00+01:00", "2026-10-25T02:00:00Z")],
    );
  });

  it("a window starting in the repeated hour on fall-back covers its wall times twice, and not the times between", () => {
    const resource = calendar({
      weeklySchedule: [win(7, "01:30", "02:00")],
      overrides: [timed("block", "2026-11-01", "01:45", "02:00")],
    });
    expect(workingTime(resource, service(), localDate("2026-11-01", NY))).toEqual({
      open: [
        span("2026-11-01T01:30:00-04:00", "2026-11-01T01:45:00-04:00"),
        span("2026-11-01T01:30:00-05:00", "2026-11-01T01:45:00-05:00"),
      ],
      blocked: [
        span("2026-11-01T01:45:00-04:00", "2026-11-01T02:00:00-04:00"),
        span("2026-11-01T01:45:00-05:00", "2026-11-01T02:00:00-05:00"),
      ],
    });
  });

  it("a window or a timed block covers exactly the instants whose wall clock reads within it, on days the clock changes", () => {
    // Days of a change in 2026 (spring forward and fall back), and one without.
    const days: [string, string][] = [
      [NY, "2026-03-08"],
      [NY, "2026-11-01"],
      ["Europe/London", "2026-03-29"],
      ["Europe/London", "2026-10-25"],
      ["Australia/Lord_Howe", "2026-10-04"],
      ["Australia/Lord_Howe", "2026-04-05"],
      ["America/Santiago", "2026-09-06"],
      ["America/Santiago", "2026-04-04"],
      [NY, "2026-06-01"],
    ];
    const QUARTER = 15 * MIN;
    /** The quarter hours of the day whose clock reading is in [start, end) minutes, joined. */
    const byClock = (day: Interval, timeZone: string, start: number, end: number) => {
      const covered: Interval[] = [];
      for (let t = day.start; t < day.end; t += QUARTER) {
        const wall = Temporal.Instant.fromEpochMilliseconds(t).toZonedDateTimeISO(timeZone);
        const minute = wall.hour * 60 + wall.minute;
        if (minute < start || minute >= end) continue;
        const last = covered.at(-1);
        if (last && last.end === t) last.end = t + QUARTER;
        else covered.push({ start: t, end: t + QUARTER });
      }
      return covered;
    };
    fc.assert(
      fc.property(
        fc.constantFrom(...days),
        fc.integer({ min: 0, max: 95 }),
        fc.integer({ min: 1, max: 96 }),
        ([timeZone, date], a, b) => {
          const [start, end] = [Math.min(a, b) * 15, Math.max(a, b) * 15];
          fc.pre(start < end);
          const day = localDate(date, timeZone);
          const weekday = Temporal.PlainDate.from(date).dayOfWeek;
          const hhmm = (m: number) =>
            `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
          const expected = byClock(day, timeZone, start, end);
          const windowed = calendar({
            timeZone,
            weeklySchedule: [win(weekday, hhmm(start), hhmm(end))],
          });
          expect(workingTime(windowed, service(), day).open).toEqual(expected);
          const blocked = calendar({
            timeZone,
            weeklySchedule: [win(weekday, "00:00", "24:00")],
            overrides: [timed("block", date, hhmm(start), hhmm(end))],
          });
          expect(workingTime(blocked, service(), day).blocked).toEqual(expected);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a 00:00-24:00 Sunday is 23 hours on London's spring-forward day", () => {
    const resource = calendar({
      timeZone: "Europe/London",
      weeklySchedule: [win(7, "00:00", "24:00")],
    });
    const range = span("2026-03-28T12:00:00Z", "2026-03-30T12:00:00+01:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-03-29T00:00:00Z", "2026-03-30T00:00:00+01:00"),
    ]);
  });

  it("an all-day block on the spring-forward day blocks its 23 hours", () => {
    const resource = calendar({ overrides: [allDay("block", "2026-03-08")] });
    const range = span("2026-03-07T12:00:00-05:00", "2026-03-09T12:00:00-04:00");
    expect(workingTime(resource, service(), range)).toEqual({
      open: [
        span("2026-03-07T12:00:00-05:00", "2026-03-08T00:00:00-05:00"),
        span("2026-03-09T00:00:00-04:00", "2026-03-09T12:00:00-04:00"),
      ],
      blocked: [span("2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00")],
    });
  });

  it("Lord Howe's 30-minute spring-forward skips 02:00-02:30", () => {
    const resource = calendar({
      timeZone: "Australia/Lord_Howe",
      weeklySchedule: [win(7, "01:30", "03:00")],
    });
    expect(
      workingTime(resource, service(), localDate("2026-10-04", "Australia/Lord_Howe")).open,
    ).toEqual([span("2026-10-04T01:30:00+10:30", "2026-10-04T03:00:00+11:00")]);
    // 01:30 +10:30 is 15:00Z, 03:00 +11:00 is 16:00Z: one real hour for a 90-minute window.
    expect(at("2026-10-04T03:00:00+11:00") - at("2026-10-04T01:30:00+10:30")).toBe(HOUR);
  });

  it("Santiago skips midnight on its spring-forward day: the day starts at 01:00 and 00:00-01:00 is empty", () => {
    const resource = calendar({
      timeZone: "America/Santiago",
      weeklySchedule: [win(7, "00:00", "01:00"), win(7, "12:00", "24:00")],
    });
    const range = span("2026-09-05T12:00:00-04:00", "2026-09-07T12:00:00-03:00");
    expect(workingTime(resource, service(), range).open).toEqual([
      span("2026-09-06T12:00:00-03:00", "2026-09-07T00:00:00-03:00"),
    ]);
  });
});

describe("computeSlots: the grid", () => {
  const ninetoEleven = calendar({ weeklySchedule: [win(1, "09:00", "11:00")] });

  it("a 15-minute grid with 60-minute slots starts every 15 minutes while the slot fits", () => {
    const list = slots({
      service: service({ durationsMs: [60 * MIN], slotIntervalMs: 15 * MIN }),
      resources: [ninetoEleven],
      durationMs: 60 * MIN,
      range: MONDAY,
    });
    expect(list).toEqual(
      times(
        "2026-03-02T09:00:00-05:00",
        "2026-03-02T09:15:00-05:00",
        "2026-03-02T09:30:00-05:00",
        "2026-03-02T09:45:00-05:00",
        "2026-03-02T10:00:00-05:00",
      ).map((start) => ({ resourceId: "r1", start, end: start + HOUR, remaining: 1 })),
    );
  });

  it("without slotIntervalMs the grid is the duration: 45-minute slots at 09:00 and 09:45 (10:30 would end 11:15)", () => {
    const list = slots({ resources: [ninetoEleven], durationMs: 45 * MIN, range: MONDAY });
    expect(startsOf(list)).toEqual(times("2026-03-02T09:00:00-05:00", "2026-03-02T09:45:00-05:00"));
  });

  it("the grid counts from midnight, not from the window's start: 09:10-11:00 gives 09:30, 10:00, 10:30", () => {
    const resource = calendar({ weeklySchedule: [win(1, "09:10", "11:00")] });
    expect(startsOf(slots({ resources: [resource], range: MONDAY }))).toEqual(
      times("2026-03-02T09:30:00-05:00", "2026-03-02T10:00:00-05:00", "2026-03-02T10:30:00-05:00"),
    );
  });

  it("takes starts in [range.start, range.end) and judges a slot ending after range.end by its whole time", () => {
    const list = slots({
      service: service({ durationsMs: [60 * MIN], slotIntervalMs: 30 * MIN }),
      resources: [ninetoEleven],
      durationMs: 60 * MIN,
      range: span("2026-03-02T09:30:00-05:00", "2026-03-02T10:15:00-05:00"),
    });
    expect(startsOf(list)).toEqual(times("2026-03-02T09:30:00-05:00", "2026-03-02T10:00:00-05:00"));
    const endingAtRangeEnd = slots({
      resources: [ninetoEleven],
      range: span("2026-03-02T09:30:00-05:00", "2026-03-02T10:30:00-05:00"),
    });
    expect(startsOf(endingAtRangeEnd)).toEqual(
      times("2026-03-02T09:30:00-05:00", "2026-03-02T10:00:00-05:00"),
    );
  });

  it("an empty or inverted range has no slots", () => {
    const range = { start: MONDAY.end, end: MONDAY.start };
    expect(slots({ range })).toEqual([]);
  });
});

describe("computeSlots: notice and advance against nowMs", () => {
  const resource = calendar({ weeklySchedule: [win(1, "09:00", "11:00")] });

  it("min notice: now 08:40 + 30 min skips 09:00 and starts at 09:30", () => {
    const list = slots({
      service: service({ minNoticeMs: 30 * MIN }),
      resources: [resource],
      nowMs: at("2026-03-02T08:40:00-05:00"),
      range: MONDAY,
    });
    expect(startsOf(list)[0]).toBe(at("2026-03-02T09:30:00-05:00"));
  });

  it("min notice: a start exactly at now + notice is bookable", () => {
    const list = slots({
      service: service({ minNoticeMs: 30 * MIN }),
      resources: [resource],
      nowMs: at("2026-03-02T08:30:00-05:00"),
      range: MONDAY,
    });
    expect(startsOf(list)[0]).toBe(at("2026-03-02T09:00:00-05:00"));
  });

  it("max advance: now 08:00 + 2 h keeps starts up to and including 10:00", () => {
    const list = slots({
      service: service({ maxAdvanceMs: 2 * HOUR }),
      resources: [resource],
      nowMs: at("2026-03-02T08:00:00-05:00"),
      range: MONDAY,
    });
    expect(startsOf(list)).toEqual(
      times("2026-03-02T09:00:00-05:00", "2026-03-02T09:30:00-05:00", "2026-03-02T10:00:00-05:00"),
    );
  });

  it("notice beyond max advance leaves nothing", () => {
    const list = slots({
      service: service({ minNoticeMs: 3 * HOUR, maxAdvanceMs: 2 * HOUR }),
      nowMs: at("2026-03-02T08:00:00-05:00"),
      range: MONDAY,
    });
    expect(list).toEqual([]);
  });
});

describe("computeSlots: busy blocks, buffers and capacity", () => {
  const nineToTwelve = calendar({ weeklySchedule: [win(1, "09:00", "12:00")] });
  const busy = (start: string, end: string, resourceId = "r1"): BusyBlock => ({
    resourceId,
    ...span(start, end),
  });

  it("buffers widen the slot's block: busy 10:00-10:30 with 15 min either side rules out 09:30 and 10:30", () => {
    const list = slots({
      service: service({ bufferBeforeMs: 15 * MIN, bufferAfterMs: 15 * MIN }),
      resources: [nineToTwelve],
      busy: [busy("2026-03-02T10:00:00-05:00", "2026-03-02T10:30:00-05:00")],
      range: MONDAY,
    });
    expect(startsOf(list)).toEqual(
      times("2026-03-02T09:00:00-05:00", "2026-03-02T11:00:00-05:00", "2026-03-02T11:30:00-05:00"),
    );
  });

  it("a busy block touching the slot's block does not overlap it", () => {
    const list = slots({
      service: service({ bufferAfterMs: 15 * MIN }),
      resources: [nineToTwelve],
      busy: [
        busy("2026-03-02T08:00:00-05:00", "2026-03-02T09:00:00-05:00"),
        busy("2026-03-02T09:45:00-05:00", "2026-03-02T10:00:00-05:00"),
      ],
      range: MONDAY,
    });
    // 09:00's block is [09:00, 09:45): it touches both busy blocks and overlaps neither.
    expect(startsOf(list)).toContain(at("2026-03-02T09:00:00-05:00"));
    expect(startsOf(list)).not.toContain(at("2026-03-02T09:30:00-05:00"));
  });

  it("capacity 2 counts the most blocks at one instant: back-to-back 09:00-09:30 and 09:30-10:00 leave 1 for 09:00-10:00", () => {
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      resources: [calendar({ capacity: 2, weeklySchedule: [win(1, "09:00", "11:00")] })],
      durationMs: HOUR,
      busy: [
        busy("2026-03-02T09:00:00-05:00", "2026-03-02T09:30:00-05:00"),
        busy("2026-03-02T09:30:00-05:00", "2026-03-02T10:00:00-05:00"),
      ],
      range: MONDAY,
    });
    expect(list).toEqual([
      {
        resourceId: "r1",
        ...span("2026-03-02T09:00:00-05:00", "2026-03-02T10:00:00-05:00"),
        remaining: 1,
      },
      {
        resourceId: "r1",
        ...span("2026-03-02T10:00:00-05:00", "2026-03-02T11:00:00-05:00"),
        remaining: 2,
      },
    ]);
  });

  it.each([
    [2, []],
    [3, []],
    [4, [1]],
    [5, [2]],
  ])("three blocks overlapping at 09:30-09:40 use 3 of capacity %i: remaining %j", (capacity, remaining) => {
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      resources: [calendar({ capacity, weeklySchedule: [win(1, "09:00", "10:00")] })],
      durationMs: HOUR,
      busy: [
        busy("2026-03-02T09:00:00-05:00", "2026-03-02T09:40:00-05:00"),
        busy("2026-03-02T09:20:00-05:00", "2026-03-02T10:00:00-05:00"),
        busy("2026-03-02T09:30:00-05:00", "2026-03-02T09:50:00-05:00"),
      ],
      range: MONDAY,
    });
    expect(list.map((s) => s.remaining)).toEqual(remaining);
  });

  it("counts only the resource's own busy blocks, and ignores empty ones", () => {
    const list = slots({
      resources: [calendar({ weeklySchedule: [win(1, "09:00", "10:00")] })],
      busy: [
        busy("2026-03-02T09:00:00-05:00", "2026-03-02T10:00:00-05:00", "r2"),
        busy("2026-03-02T09:15:00-05:00", "2026-03-02T09:15:00-05:00"),
      ],
      range: MONDAY,
    });
    expect(startsOf(list)).toEqual(times("2026-03-02T09:00:00-05:00", "2026-03-02T09:30:00-05:00"));
  });
});

describe("computeSlots: midnight and sorting", () => {
  it("a slot may span midnight when Friday 22:00-24:00 touches Saturday 00:00-02:00, even past range.end", () => {
    const friday = localDate("2026-03-06", NY);
    const twoHours = service({ durationsMs: [2 * HOUR], slotIntervalMs: HOUR });
    const across = calendar({
      weeklySchedule: [win(5, "22:00", "24:00"), win(6, "00:00", "02:00")],
    });
    expect(
      startsOf(
        slots({ service: twoHours, resources: [across], durationMs: 2 * HOUR, range: friday }),
      ),
    ).toEqual(times("2026-03-06T22:00:00-05:00", "2026-03-06T23:00:00-05:00"));
    const fridayOnly = calendar({ weeklySchedule: [win(5, "22:00", "24:00")] });
    expect(
      startsOf(
        slots({ service: twoHours, resources: [fridayOnly], durationMs: 2 * HOUR, range: friday }),
      ),
    ).toEqual(times("2026-03-06T22:00:00-05:00"));
  });

  it("sorts by start, then resource id, across zones", () => {
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      resources: [
        calendar({ resourceId: "r-b" }),
        calendar({ resourceId: "r-c", timeZone: "Asia/Kolkata" }),
        calendar({ resourceId: "r-a", timeZone: "Europe/London" }),
      ],
      durationMs: HOUR,
      range: span("2026-03-02T12:00:00Z", "2026-03-02T14:00:00Z"),
    });
    expect(list.map((s) => [new Date(s.start).toISOString(), s.resourceId])).toEqual([
      ["2026-03-02T12:00:00.000Z", "r-a"],
      ["2026-03-02T12:00:00.000Z", "r-b"],
      ["2026-03-02T12:30:00.000Z", "r-c"],
      ["2026-03-02T13:00:00.000Z", "r-a"],
      ["2026-03-02T13:00:00.000Z", "r-b"],
      ["2026-03-02T13:30:00.000Z", "r-c"],
    ]);
  });
});

describe("computeSlots across DST", () => {
  it.each([
    [NY, "2026-03-08", 46],
    [NY, "2026-11-01", 50],
    [NY, "2026-03-09", 48],
    ["Europe/London", "2026-03-29", 46],
    ["Europe/London", "2026-10-25", 50],
    ["Australia/Lord_Howe", "2026-10-04", 47],
    ["Australia/Lord_Howe", "2026-04-05", 49],
    ["Asia/Kolkata", "2026-03-10", 48],
    ["America/Santiago", "2026-09-06", 46],
  ])("%s on %s: an all-hours 30-minute grid has %i distinct starts, one per half hour of the day's wall clock", (timeZone, date, count) => {
    const day = localDate(date, timeZone);
    const list = slots({ resources: [calendar({ timeZone })], range: day });
    expect(list).toHaveLength(count);
    expect(new Set(startsOf(list)).size).toBe(count);
    expect(list[0]?.start).toBe(day.start);
    list.forEach((s, i) => {
      expect(s.start).toBe(day.start + i * 30 * MIN);
    });
    expect(day.end - day.start).toBe(count * 30 * MIN);
  });

  it("Lord Howe spring-forward: an hourly grid keeps to the clock's hours, and 02:00 does not exist", () => {
    const day = localDate("2026-10-04", "Australia/Lord_Howe");
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      resources: [calendar({ timeZone: "Australia/Lord_Howe" })],
      durationMs: HOUR,
      range: day,
    });
    expect(list).toHaveLength(23);
    expect(startsOf(list).slice(0, 4)).toEqual(
      times(
        "2026-10-04T00:00:00+10:30",
        "2026-10-04T01:00:00+10:30",
        "2026-10-04T03:00:00+11:00",
        "2026-10-04T04:00:00+11:00",
      ),
    );
    expect(startsOf(list).at(-1)).toBe(at("2026-10-04T23:00:00+11:00"));
  });

  it("a 45-minute grid on New York's change days keeps to the clock: 09:00, 09:45, 10:30", () => {
    for (const date of ["2026-03-08", "2026-11-01"]) {
      const resource = calendar({ weeklySchedule: [win(7, "09:00", "11:15")] });
      const list = slots({
        service: service({ durationsMs: [45 * MIN] }),
        resources: [resource],
        durationMs: 45 * MIN,
        range: localDate(date, NY),
      });
      const offset = date === "2026-03-08" ? "-04:00" : "-05:00";
      expect(startsOf(list)).toEqual(
        times(
          `${date}T09:00:00${offset}`,
          `${date}T09:45:00${offset}`,
          `${date}T10:30:00${offset}`,
        ),
      );
    }
  });

  it("Kolkata's half-hour offset: local midnight is 18:30Z the day before and an hourly grid starts there", () => {
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      resources: [calendar({ timeZone: "Asia/Kolkata" })],
      durationMs: HOUR,
      range: span("2026-03-09T18:00:00Z", "2026-03-09T21:00:00Z"),
    });
    expect(startsOf(list)).toEqual(
      times("2026-03-09T18:30:00Z", "2026-03-09T19:30:00Z", "2026-03-09T20:30:00Z"),
    );
  });

  it("the repeated 1 AM hour on New York's fall-back day is bookable twice, each start once", () => {
    const resource = calendar({ weeklySchedule: [win(7, "01:00", "02:00")] });
    expect(startsOf(slots({ resources: [resource], range: localDate("2026-11-01", NY) }))).toEqual(
      times(
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
      ),
    );
  });

  it("a window inside New York's spring-forward gap gives no slots", () => {
    const resource = calendar({ weeklySchedule: [win(7, "02:00", "03:00")] });
    expect(slots({ resources: [resource], range: localDate("2026-03-08", NY) })).toEqual([]);
  });

  it.each([
    ["spring forward", "2026-03-07T00:00:00-05:00", "2026-03-10T00:00:00-04:00", 24 + 23 + 24],
    ["fall back", "2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00", 24 + 25 + 24],
  ])("over three days around %s an hourly grid has every elapsed hour exactly once", (_, start, end, count) => {
    const list = slots({
      service: service({ durationsMs: [HOUR] }),
      durationMs: HOUR,
      range: span(start, end),
    });
    expect(list).toHaveLength(count);
    list.forEach((s, i) => {
      expect(s.start).toBe(at(start) + i * HOUR);
    });
  });

  it("no start is produced twice or lost when a range around a DST change is split anywhere", () => {
    const query = {
      service: service({ durationsMs: [45 * MIN] }),
      durationMs: 45 * MIN,
      resources: [
        calendar({ weeklySchedule: [win(7, "00:00", "24:00"), win(1, "00:00", "24:00")] }),
      ],
    };
    const whole = span("2026-10-31T00:00:00-04:00", "2026-11-03T00:00:00-05:00");
    const all = slots({ ...query, range: whole });
    // Each day's clock has 32 quarter-to starts (00:00 .. 23:15); on Sunday 01:30 comes twice.
    expect(all).toHaveLength(33 + 32);
    expect(new Set(startsOf(all)).size).toBe(all.length);
    fc.assert(
      fc.property(fc.integer({ min: whole.start, max: whole.end }), (split) => {
        const before = slots({ ...query, range: { start: whole.start, end: split } });
        const after = slots({ ...query, range: { start: split, end: whole.end } });
        expect([...before, ...after]).toEqual(all);
      }),
      { numRuns: 200 },
    );
  });
});

/** The rules of computeSlots applied one start at a time, the slow obvious way. */
function referenceSlots(q: SlotQuery): FreeSlot[] {
  const { policy: p } = q.service;
  const step = p.slotIntervalMs ?? q.durationMs;
  const result: FreeSlot[] = [];
  for (const resource of q.resources) {
    let date = Temporal.Instant.fromEpochMilliseconds(q.range.start)
      .toZonedDateTimeISO(resource.timeZone)
      .toPlainDate();
    for (;;) {
      const midnight = date.toZonedDateTime(resource.timeZone).epochMilliseconds;
      if (midnight >= q.range.end) break;
      date = date.add({ days: 1 });
      const next = date.toZonedDateTime(resource.timeZone).epochMilliseconds;
      // Every minute of the day; on the grid if its wall-clock time is a multiple of the step.
      for (let start = midnight; start < next; start += MIN) {
        if (start < q.range.start || start >= q.range.end) continue;
        const wall = Temporal.Instant.fromEpochMilliseconds(start).toZonedDateTimeISO(
          resource.timeZone,
        );
        if (((wall.hour * 60 + wall.minute) * MIN) % step !== 0) continue;
        if (start < q.nowMs + p.minNoticeMs) continue;
        if (p.maxAdvanceMs !== null && start > q.nowMs + p.maxAdvanceMs) continue;
        const end = start + q.durationMs;
        if (checkRequestedTime(q.service, resource, start, end) !== undefined) continue;
        const from = start - p.bufferBeforeMs;
        const to = end + p.bufferAfterMs;
        const own = q.busy.filter((b) => b.resourceId === resource.resourceId && b.start < b.end);
        const instants = [from, ...own.map((b) => b.start).filter((t) => t > from && t < to)];
        const peak = Math.max(
          ...instants.map((t) => own.filter((b) => b.start <= t && t < b.end).length),
        );
        if (resource.capacity - peak > 0) {
          result.push({
            resourceId: resource.resourceId,
            start,
            end,
            remaining: resource.capacity - peak,
          });
        }
      }
    }
  }
  return result.sort(
    (a, b) =>
      a.start - b.start || (a.resourceId < b.resourceId ? -1 : a.resourceId > b.resourceId ? 1 : 0),
  );
}

/** A small deterministic generator, so the busy calendar is the same on every run. */
function seeded(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let x = Math.imul(state ^ (state >>> 15), 1 | state);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

describe("computeSlots at scale", () => {
  const march = span("2026-03-01T00:00:00-05:00", "2026-03-31T00:00:00-04:00");
  const busyService = service(
    {
      durationsMs: [30 * MIN],
      slotIntervalMs: 15 * MIN,
      bufferBeforeMs: 5 * MIN,
      bufferAfterMs: 10 * MIN,
      minNoticeMs: HOUR,
      maxAdvanceMs: 28 * DAY,
      // 07:00-16:00 Chicago is 08:00-17:00 New York; Saturday 09:00-12:00 is 10:00-13:00.
      businessHours: [...wins(MON_FRI, "07:00", "16:00"), win(6, "09:00", "12:00")],
    },
    "America/Chicago",
  );
  const busyResource = calendar({
    resourceId: "room-1",
    capacity: 3,
    weeklySchedule: [...wins(MON_FRI, "07:00", "18:00"), win(6, "10:00", "14:00")],
    overrides: [
      allDay("block", "2026-03-10", { id: "o1" }),
      timed("block", "2026-03-01", "12:00", "13:00", {
        id: "o2",
        recurrence: recurrence({ weekdays: MON_FRI }),
      }),
      timed("open", "2026-03-14", "08:00", "12:00", { id: "o3" }),
      timed("open", "2026-03-01", "10:00", "16:00", {
        id: "o4",
        recurrence: recurrence({ interval: 2, weekdays: [7] }),
      }),
      timed("block", "2026-01-01", "14:00", "17:00", {
        id: "o5",
        recurrence: recurrence({ frequency: "monthly", weekOfMonth: -1, weekday: 5 }),
      }),
      allDay("block", "2026-03-18", { id: "o6", endDate: "2026-03-19" }),
      timed("open", "2026-03-08", "01:00", "04:00", { id: "o7" }),
      timed("block", "2026-03-20", "09:00", "09:45", { id: "o8" }),
      timed("open", "2026-03-23", "17:00", "21:00", { id: "o9" }),
      allDay("block", "2026-03-31", { id: "o10" }),
    ],
  });
  const random = seeded(42);
  const busy: BusyBlock[] = Array.from({ length: 500 }, (_, i) => {
    const start =
      march.start + Math.floor(random() * ((march.end - march.start) / (5 * MIN))) * 5 * MIN;
    const length = (3 + Math.floor(random() * 22)) * 5 * MIN;
    return { resourceId: i % 50 === 0 ? "room-2" : "room-1", start, end: start + length };
  });
  const query: SlotQuery = {
    service: busyService,
    resources: [busyResource],
    range: march,
    durationMs: 30 * MIN,
    nowMs: at("2026-03-02T10:07:00-05:00"),
    busy,
  };

  it("30 days on a 15-minute grid with 10 overrides and 500 busy blocks match the one-slot-at-a-time reference", () => {
    const list = computeSlots(query);
    expect(list.length).toBeGreaterThan(500);
    expect(list).toEqual(referenceSlots(query));
    expect(new Set(list.map((s) => s.remaining))).toEqual(new Set([1, 2, 3]));
  });

  it("the same case, spot checks", () => {
    const list = computeSlots(query);
    const on = (date: string) => {
      const day = localDate(date, NY);
      return list.filter((s) => s.start >= day.start && s.start < day.end);
    };
    // Nothing before now + 1 h notice: 11:07, so 11:15 is first.
    expect(list[0]?.start).toBe(at("2026-03-02T11:15:00-05:00"));
    expect(on("2026-03-10")).toEqual([]);
    expect(on("2026-03-18")).toEqual([]);
    expect(on("2026-03-19")).toEqual([]);
    // Max advance is elapsed time: 28 × 24 h after 10:07 EST is 11:07 EDT on the 30th.
    expect(list[list.length - 1]?.start).toBe(at("2026-03-30T11:00:00-04:00"));
    // Lunch is blocked on weekdays; 11:30 + 30 min ends exactly at 12:00.
    expect(
      on("2026-03-04").some(
        (s) => s.end > at("2026-03-04T12:00:00-05:00") && s.start < at("2026-03-04T13:00:00-05:00"),
      ),
    ).toBe(false);
    // The Sunday open on the spring-forward day starts at 01:00 EST and ends at 04:00 EDT.
    for (const s of on("2026-03-08")) {
      expect(s.start).toBeGreaterThanOrEqual(at("2026-03-08T01:00:00-05:00"));
      expect(s.end).toBeLessThanOrEqual(at("2026-03-08T04:00:00-04:00"));
    }
  });

  it("many resources give the per-resource answers merged by start, then id", () => {
    const resources = Array.from({ length: 20 }, (_, i) => ({
      ...busyResource,
      resourceId: `room-${String(20 - i).padStart(2, "0")}`,
      timeZone: i % 2 === 0 ? NY : "America/Chicago",
    }));
    const week = {
      ...query,
      resources,
      range: span("2026-03-05T00:00:00-05:00", "2026-03-12T00:00:00-04:00"),
    };
    const merged = resources
      .flatMap((r) => computeSlots({ ...week, resources: [r] }))
      .sort((a, b) => a.start - b.start || (a.resourceId < b.resourceId ? -1 : 1));
    expect(computeSlots(week)).toEqual(merged);
  });
});

describe("checkRequestedTime", () => {
  const resource = calendar({
    weeklySchedule: [
      ...wins(MON_FRI, "09:00", "12:00"),
      ...wins(MON_FRI, "13:00", "17:00"),
      win(6, "22:00", "24:00"),
      win(7, "00:00", "02:00"),
    ],
    overrides: [
      timed("block", "2026-03-03", "10:00", "11:00"),
      allDay("block", "2026-03-05", { id: "o2" }),
      allDay("block", "2026-03-01", { id: "o3", endDate: "2026-03-01" }),
      timed("block", "2026-03-14", "12:00", "13:00", { id: "o4" }),
    ],
  });
  const rules = service({ durationsMs: [30 * MIN, HOUR], slotIntervalMs: 30 * MIN });

  it.each([
    ["fine: Monday 09:00-10:00", "2026-03-02T09:00:00-05:00", HOUR, undefined],
    ["fine: ends exactly at the lunch break", "2026-03-02T11:00:00-05:00", HOUR, undefined],
    [
      "fine: Saturday 23:30 to Sunday 00:30 spans midnight",
      "2026-03-07T23:30:00-05:00",
      HOUR,
      undefined,
    ],
    [
      "a duration the policy does not offer",
      "2026-03-02T09:00:00-05:00",
      45 * MIN,
      "INVALID_DURATION",
    ],
    [
      "a bad duration is reported before off-grid and outside hours",
      "2026-03-02T05:10:00-05:00",
      45 * MIN,
      "INVALID_DURATION",
    ],
    ["09:10 is off the 30-minute grid", "2026-03-02T09:10:00-05:00", 30 * MIN, "OFF_GRID"],
    [
      "off-grid is reported before outside hours",
      "2026-03-02T05:10:00-05:00",
      30 * MIN,
      "OFF_GRID",
    ],
    ["inside the Tuesday 10:00-11:00 block", "2026-03-03T10:00:00-05:00", HOUR, "SCHEDULE_BLOCKED"],
    ["partly inside the Tuesday block", "2026-03-03T09:30:00-05:00", HOUR, "SCHEDULE_BLOCKED"],
    ["on the all-day blocked Thursday", "2026-03-05T14:00:00-05:00", 30 * MIN, "SCHEDULE_BLOCKED"],
    [
      "Sunday 00:30, working time blocked by a one-day block",
      "2026-03-01T00:30:00-05:00",
      30 * MIN,
      "SCHEDULE_BLOCKED",
    ],
    ["after hours", "2026-03-02T18:00:00-05:00", 30 * MIN, "OUTSIDE_WORKING_HOURS"],
    ["partly after hours", "2026-03-02T16:30:00-05:00", HOUR, "OUTSIDE_WORKING_HOURS"],
    [
      "across the lunch break (two intervals, not one)",
      "2026-03-02T11:30:00-05:00",
      HOUR,
      "OUTSIDE_WORKING_HOURS",
    ],
    [
      "partly outside hours on a blocked day",
      "2026-03-05T16:30:00-05:00",
      HOUR,
      "OUTSIDE_WORKING_HOURS",
    ],
    [
      "a block where the resource does not work anyway",
      "2026-03-14T12:00:00-05:00",
      30 * MIN,
      "OUTSIDE_WORKING_HOURS",
    ],
  ])("%s", (_, start, duration, expected) => {
    expect(checkRequestedTime(rules, resource, at(start), at(start) + duration)).toBe(expected);
  });

  it("the grid of a 60-minute slot on a 15-minute interval allows quarter hours", () => {
    const quarter = service({ durationsMs: [HOUR], slotIntervalMs: 15 * MIN });
    const start = at("2026-03-02T09:15:00-05:00");
    expect(checkRequestedTime(quarter, resource, start, start + HOUR)).toBeUndefined();
  });

  it("without slotIntervalMs the grid is the requested duration", () => {
    const byDuration = service({ durationsMs: [HOUR] });
    const onGrid = at("2026-03-02T10:00:00-05:00");
    const offGrid = at("2026-03-02T09:30:00-05:00");
    expect(checkRequestedTime(byDuration, resource, onGrid, onGrid + HOUR)).toBeUndefined();
    expect(checkRequestedTime(byDuration, resource, offGrid, offGrid + HOUR)).toBe("OFF_GRID");
  });

  it("the grid keeps to the clock: on Lord Howe's spring-forward day 03:00 is on an hourly grid and 02:30 is not", () => {
    const lordHowe = calendar({ timeZone: "Australia/Lord_Howe" });
    const hourly = service({ durationsMs: [HOUR] });
    const onGrid = at("2026-10-04T03:00:00+11:00");
    const offGrid = at("2026-10-04T02:30:00+11:00");
    expect(checkRequestedTime(hourly, lordHowe, onGrid, onGrid + HOUR)).toBeUndefined();
    expect(checkRequestedTime(hourly, lordHowe, offGrid, offGrid + HOUR)).toBe("OFF_GRID");
  });

  it("both 1 AMs of New York's fall-back day are on the hourly grid", () => {
    const hourly = service({ durationsMs: [HOUR] });
    for (const start of times("2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00")) {
      expect(checkRequestedTime(hourly, calendar(), start, start + HOUR)).toBeUndefined();
    }
  });
});

describe("checkRequestedTime agrees with computeSlots", () => {
  // Chicago business hours: weekdays 07:00-15:30 (08:00-16:30 New York) and
  // Saturday 20:00 to Sunday 24:00 (Saturday 21:00 to Monday 01:00 New York).
  const businessHours = [
    ...wins(MON_FRI, "07:00", "15:30"),
    win(6, "20:00", "24:00"),
    win(7, "00:00", "24:00"),
  ];
  const resource = calendar({
    capacity: 2,
    weeklySchedule: [
      ...wins(MON_FRI, "09:00", "12:00"),
      ...wins(MON_FRI, "13:00", "17:00"),
      win(6, "22:00", "24:00"),
      win(7, "00:00", "03:00"),
    ],
    overrides: [
      timed("block", "2026-03-04", "11:00", "14:00", { id: "o1", recurrence: recurrence({}) }),
      allDay("block", "2026-03-11", { id: "o2" }),
      timed("open", "2026-03-08", "01:00", "04:00", { id: "o3" }),
      timed("block", "2026-03-02", "16:00", "16:30", { id: "o4", endDate: "2026-03-06" }),
      timed("open", "2026-03-07", "18:00", "22:00", { id: "o5" }),
      timed("block", "2026-03-14", "23:00", "24:00", { id: "o6" }),
    ],
  });
  const unblocked = { ...resource, overrides: resource.overrides.filter((o) => o.kind === "open") };
  const policies = [
    policy({ durationsMs: [30 * MIN, HOUR, 90 * MIN], slotIntervalMs: 15 * MIN, businessHours }),
    policy({ durationsMs: [45 * MIN, 2 * HOUR], businessHours }),
  ];
  type Request = { policyIndex: number; durationIndex: number; day: number; minute: number };
  const request: fc.Arbitrary<Request> = fc.record({
    policyIndex: fc.integer({ min: 0, max: 1 }),
    durationIndex: fc.integer({ min: 0, max: 2 }),
    day: fc.integer({ min: 0, max: 13 }),
    minute: fc.oneof(
      fc.integer({ min: 0, max: 95 }).map((q) => q * 15),
      fc.integer({ min: 0, max: 287 }).map((q) => q * 5),
    ),
  });
  const build = (r: Request) => {
    const p = policies[r.policyIndex] as Policy;
    const durationMs = p.durationsMs[r.durationIndex % p.durationsMs.length] as number;
    const date = Temporal.PlainDate.from("2026-03-01").add({ days: r.day }).toString();
    const start = midnightOf(date, NY) + r.minute * MIN;
    return { rules: { policy: p, timeZone: "America/Chicago" }, durationMs, start };
  };

  it("a request passes checkRequestedTime iff computeSlots offers it, over a tiny range and a wide one", () => {
    let offered = 0;
    fc.assert(
      fc.property(request, (r) => {
        const { rules, durationMs, start } = build(r);
        const passes = checkRequestedTime(rules, resource, start, start + durationMs) === undefined;
        for (const range of [
          { start, end: start + 1 },
          { start: start - 5 * HOUR, end: start + 5 * HOUR },
        ]) {
          const list = computeSlots({
            service: rules,
            resources: [resource],
            range,
            durationMs,
            nowMs: 0,
            busy: [],
          });
          const found = list.some((s) => s.start === start && s.end === start + durationMs);
          expect(found).toBe(passes);
        }
        if (passes) offered++;
      }),
      { numRuns: 600 },
    );
    // The property is only meaningful if both outcomes occur.
    expect(offered).toBeGreaterThan(10);
  });

  it("SCHEDULE_BLOCKED is exactly what removing the blocks would let through", () => {
    fc.assert(
      fc.property(request, (r) => {
        const { rules, durationMs, start } = build(r);
        const withBlocks = checkRequestedTime(rules, resource, start, start + durationMs);
        const withoutBlocks = checkRequestedTime(rules, unblocked, start, start + durationMs);
        if (withBlocks === "SCHEDULE_BLOCKED" || withBlocks === undefined) {
          expect(withoutBlocks).toBeUndefined();
        } else {
          expect(withoutBlocks).toBe(withBlocks);
        }
      }),
      { numRuns: 600 },
    );
  });

  it("a duration the policy does not list is always INVALID_DURATION", () => {
    fc.assert(
      fc.property(request, fc.integer({ min: 1, max: 200 }), (r, minutes) => {
        const { rules, start } = build(r);
        fc.pre(!rules.policy.durationsMs.includes(minutes * MIN));
        expect(checkRequestedTime(rules, resource, start, start + minutes * MIN)).toBe(
          "INVALID_DURATION",
        );
      }),
      { numRuns: 200 },
    );
  });
});

describe("nearestAlternatives", () => {
  const slot = (resourceId: string, hhmm: string): FreeSlot => {
    const start = at(`2026-03-02T${hhmm}:00-05:00`);
    return { resourceId, start, end: start + 30 * MIN, remaining: 1 };
  };
  const all = [
    slot("r1", "09:00"),
    slot("r1", "09:30"),
    slot("r1", "10:00"),
    slot("r1", "10:30"),
    slot("r1", "11:00"),
    slot("r2", "09:30"),
    slot("r2", "10:00"),
    slot("r2", "10:30"),
    slot("r0", "10:00"),
  ];
  const requested = { resourceId: "r1", start: at("2026-03-02T10:00:00-05:00") };

  it("offers the requested resource's slots first, nearest first with ties to the earlier, then others by nearness, time and id, never the requested slot", () => {
    expect(nearestAlternatives(all, requested, 10)).toEqual([
      slot("r1", "09:30"),
      slot("r1", "10:30"),
      slot("r1", "09:00"),
      slot("r1", "11:00"),
      slot("r0", "10:00"),
      slot("r2", "10:00"),
      slot("r2", "09:30"),
      slot("r2", "10:30"),
    ]);
  });

  it("stops at the limit", () => {
    expect(nearestAlternatives(all, requested, 3)).toEqual([
      slot("r1", "09:30"),
      slot("r1", "10:30"),
      slot("r1", "09:00"),
    ]);
    expect(nearestAlternatives(all, requested, 0)).toEqual([]);
  });

  it("offers other resources only when the requested one has nothing else", () => {
    const others = all.filter((s) => s.resourceId !== "r1" || s.start === requested.start);
    expect(nearestAlternatives(others, requested, 2)).toEqual([
      slot("r0", "10:00"),
      slot("r2", "10:00"),
    ]);
  });

  it("does not reorder its input", () => {
    const copy = [...all];
    nearestAlternatives(all, requested, 10);
    expect(all).toEqual(copy);
  });
});

describe("fairOrder", () => {
  it("fewest bookings that day first, ties in the service's order", () => {
    const bookings = new Map([
      ["a", 2],
      ["b", 1],
      ["c", 1],
    ]);
    expect(fairOrder(["c", "a", "b", "d"], bookings, ["a", "b", "c", "d"])).toEqual([
      "d",
      "b",
      "c",
      "a",
    ]);
  });

  it("with no bookings follows the service's order, not the candidates'", () => {
    expect(fairOrder(["c", "b", "a"], new Map(), ["b", "c", "a"])).toEqual(["b", "c", "a"]);
  });

  it("puts resources missing from the service's order after the listed ones, by id", () => {
    expect(fairOrder(["y", "x", "b", "a"], new Map(), ["b", "a"])).toEqual(["b", "a", "x", "y"]);
  });
});

describe("localDay", () => {
  it.each([
    [NY, "2026-03-08T12:00:00-04:00", "2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00", 23],
    [NY, "2026-11-01T01:30:00-05:00", "2026-11-01T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 25],
    [
      NY,
      "2026-03-02T23:59:59.999-05:00",
      "2026-03-02T00:00:00-05:00",
      "2026-03-03T00:00:00-05:00",
      24,
    ],
    [NY, "2026-03-03T00:00:00-05:00", "2026-03-03T00:00:00-05:00", "2026-03-04T00:00:00-05:00", 24],
    [
      "Europe/London",
      "2026-03-29T00:30:00Z",
      "2026-03-29T00:00:00Z",
      "2026-03-30T00:00:00+01:00",
      23,
    ],
    [
      "Europe/London",
      "2026-10-25T12:00:00Z",
      "2026-10-25T00:00:00+01:00",
      "2026-10-26T00:00:00Z",
      25,
    ],
    [
      "Australia/Lord_Howe",
      "2026-10-04T12:00:00+11:00",
      "2026-10-04T00:00:00+10:30",
      "2026-10-05T00:00:00+11:00",
      23.5,
    ],
    [
      "Australia/Lord_Howe",
      "2026-04-05T12:00:00+10:30",
      "2026-04-05T00:00:00+11:00",
      "2026-04-06T00:00:00+10:30",
      24.5,
    ],
    ["Asia/Kolkata", "2026-03-09T18:30:00Z", "2026-03-09T18:30:00Z", "2026-03-10T18:30:00Z", 24],
    [
      "Asia/Kolkata",
      "2026-03-09T18:29:59.999Z",
      "2026-03-08T18:30:00Z",
      "2026-03-09T18:30:00Z",
      24,
    ],
    [
      "America/Santiago",
      "2026-09-06T12:00:00-03:00",
      "2026-09-06T01:00:00-03:00",
      "2026-09-07T00:00:00-03:00",
      23,
    ],
  ])("%s at %s: [%s, %s), %s hours", (timeZone, instant, start, end, hours) => {
    const day = localDay(at(instant), timeZone);
    expect(day).toEqual(span(start, end));
    expect((day.end - day.start) / HOUR).toBe(hours);
  });
});

describe("slotFollows", () => {
  const slot = (start: number, resourceId: string) => ({
    resourceId,
    start,
    end: start + 1,
    remaining: 1,
  });
  it("orders by start, then resource id in code-unit order", () => {
    const key = { start: 100, resourceId: "rsc_b" };
    expect(slotFollows(slot(101, "rsc_a"), key)).toBe(true);
    expect(slotFollows(slot(100, "rsc_c"), key)).toBe(true);
    expect(slotFollows(slot(100, "rsc_b"), key)).toBe(false);
    expect(slotFollows(slot(100, "rsc_B"), key)).toBe(false);
    expect(slotFollows(slot(99, "rsc_z"), key)).toBe(false);
  });

  it("splits any sorted list exactly once at any of its slots", () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 20 }), fc.constantFrom("a", "b", "c", "B")), {
          minLength: 1,
        }),
        fc.nat(),
        (pairs, pick) => {
          const unique = [...new Map(pairs.map(([t, r]) => [`${t}|${r}`, slot(t, r)])).values()];
          unique.sort((x, y) => x.start - y.start || (x.resourceId < y.resourceId ? -1 : 1));
          const at = pick % unique.length;
          const key = unique[at] as { start: number; resourceId: string };
          expect(unique.filter((s) => slotFollows(s, key))).toEqual(unique.slice(at + 1));
        },
      ),
    );
  });
});

import { describe, expect, it } from "vitest";
import {
  checkOverride,
  checkOverrideRoom,
  MAX_OVERRIDES_PER_RESOURCE,
  type OverrideInput,
} from "../../src/domain/overrides.js";
import { dayNumber } from "../../src/domain/recurrence.js";
import { Rejection } from "../../src/domain/rejection.js";
import {
  DAY_MS,
  EARLIEST_DATE,
  EARLIEST_MS,
  LATEST_DATE,
  LATEST_MS,
} from "../../src/domain/time.js";

type RecurrenceInput = NonNullable<OverrideInput["recurrence"]>;

const allDay: OverrideInput = {
  kind: "block",
  allDay: true,
  startDate: "2026-03-02",
  endDate: "",
  startTime: "",
  endTime: "",
  recurrence: null,
};

const timed: OverrideInput = { ...allDay, allDay: false, startTime: "09:00", endTime: "12:00" };

function weekly(p: Partial<RecurrenceInput> = {}): RecurrenceInput {
  return {
    frequency: "weekly",
    interval: 0,
    weekdays: [],
    monthDay: 0,
    weekOfMonth: 0,
    weekday: 0,
    until: "",
    ...p,
  };
}

const monthly = (p: Partial<RecurrenceInput> = {}) => weekly({ frequency: "monthly", ...p });

describe("checkOverride: valid shapes", () => {
  it("an all-day single day: no times, endDate null", () => {
    expect(checkOverride(allDay)).toEqual({
      value: {
        kind: "block",
        allDay: true,
        startDate: "2026-03-02",
        endDate: null,
        startMinute: null,
        endMinute: null,
        recurrence: null,
      },
      violations: [],
    });
  });

  it("a timed open over several days, ending at 24:00", () => {
    const { value, violations } = checkOverride({
      ...timed,
      kind: "open",
      endDate: "2026-03-05",
      startTime: "18:30",
      endTime: "24:00",
    });
    expect(violations).toEqual([]);
    expect(value).toEqual({
      kind: "open",
      allDay: false,
      startDate: "2026-03-02",
      endDate: "2026-03-05",
      startMinute: 18 * 60 + 30,
      endMinute: 1440,
      recurrence: null,
    });
  });

  it("an endDate and an until equal to startDate are fine", () => {
    const { violations } = checkOverride({
      ...allDay,
      endDate: "2026-03-02",
      recurrence: weekly({ until: "2026-03-02" }),
    });
    expect(violations).toEqual([]);
  });

  it("weekly: interval 0 means 1, weekdays sorted without repeats, unused fields null", () => {
    const { value, violations } = checkOverride({
      ...timed,
      recurrence: weekly({ weekdays: [5, 1, 5, 3] }),
    });
    expect(violations).toEqual([]);
    expect(value.recurrence).toEqual({
      frequency: "weekly",
      interval: 1,
      weekdays: [1, 3, 5],
      monthDay: null,
      weekOfMonth: null,
      weekday: null,
      until: null,
    });
  });

  it("weekly without weekdays keeps them empty (startDate's weekday applies)", () => {
    const { value, violations } = checkOverride({
      ...allDay,
      recurrence: weekly({ interval: 52, until: "2027-03-01" }),
    });
    expect(violations).toEqual([]);
    expect(value.recurrence).toEqual({
      frequency: "weekly",
      interval: 52,
      weekdays: [],
      monthDay: null,
      weekOfMonth: null,
      weekday: null,
      until: "2027-03-01",
    });
  });

  it("monthly by date: the 31st every 24th month", () => {
    const { value, violations } = checkOverride({
      ...allDay,
      recurrence: monthly({ interval: 24, monthDay: 31 }),
    });
    expect(violations).toEqual([]);
    expect(value.recurrence).toEqual({
      frequency: "monthly",
      interval: 24,
      weekdays: [],
      monthDay: 31,
      weekOfMonth: null,
      weekday: null,
      until: null,
    });
  });

  it.each([
    ["2nd Tuesday", 2, 2],
    ["5th Monday", 5, 1],
    ["last Friday", -1, 5],
  ])("monthly by weekday: the %s", (_, weekOfMonth, weekday) => {
    const { value, violations } = checkOverride({
      ...timed,
      recurrence: monthly({ weekOfMonth, weekday }),
    });
    expect(violations).toEqual([]);
    expect(value.recurrence).toEqual({
      frequency: "monthly",
      interval: 1,
      weekdays: [],
      monthDay: null,
      weekOfMonth,
      weekday,
      until: null,
    });
  });
});

describe("checkOverride: violations", () => {
  it.each<[string, OverrideInput, string[]]>([
    ["start_date that does not exist", { ...allDay, startDate: "2026-02-30" }, ["start_date"]],
    ["start_date empty", { ...allDay, startDate: "" }, ["start_date"]],
    ["start_date not zero-padded", { ...allDay, startDate: "2026-3-2" }, ["start_date"]],
    ["end_date not a date", { ...allDay, endDate: "2026-13-01" }, ["end_date"]],
    ["end_date before start_date", { ...allDay, endDate: "2026-03-01" }, ["end_date"]],
    [
      "end_date not compared with a start_date that is itself wrong",
      { ...allDay, startDate: "2026-02-30", endDate: "2026-01-01" },
      ["start_date"],
    ],
    ["start_time missing when not all day", { ...timed, startTime: "" }, ["start_time"]],
    ["end_time missing when not all day", { ...timed, endTime: "" }, ["end_time"]],
    [
      "both times missing when not all day",
      { ...timed, startTime: "", endTime: "" },
      ["start_time", "end_time"],
    ],
    ["start_time 24:00", { ...timed, startTime: "24:00" }, ["start_time"]],
    ["start_time not HH:MM", { ...timed, startTime: "9:00" }, ["start_time"]],
    ["end_time past 24:00", { ...timed, endTime: "24:30" }, ["end_time"]],
    ["end_time minutes past 59", { ...timed, endTime: "10:60" }, ["end_time"]],
    ["end_time equal to start_time", { ...timed, endTime: "09:00" }, ["end_time"]],
    ["end_time before start_time", { ...timed, endTime: "08:00" }, ["end_time"]],
    ["start_time given on an all-day override", { ...allDay, startTime: "09:00" }, ["start_time"]],
    ["end_time given on an all-day override", { ...allDay, endTime: "12:00" }, ["end_time"]],
    [
      "frequency unspecified",
      { ...allDay, recurrence: weekly({ frequency: "unspecified" }) },
      ["recurrence.frequency"],
    ],
    [
      "weekly interval 53",
      { ...allDay, recurrence: weekly({ interval: 53 }) },
      ["recurrence.interval"],
    ],
    [
      "monthly interval 25",
      { ...allDay, recurrence: monthly({ interval: 25, monthDay: 1 }) },
      ["recurrence.interval"],
    ],
    [
      "negative interval",
      { ...allDay, recurrence: weekly({ interval: -1 }) },
      ["recurrence.interval"],
    ],
    [
      "fractional interval",
      { ...allDay, recurrence: weekly({ interval: 1.5 }) },
      ["recurrence.interval"],
    ],
    [
      "weekly weekdays out of 1..7, each named by index",
      { ...allDay, recurrence: weekly({ weekdays: [1, 0, 8] }) },
      ["recurrence.weekdays[1]", "recurrence.weekdays[2]"],
    ],
    [
      "weekly with monthly fields",
      { ...allDay, recurrence: weekly({ monthDay: 5, weekOfMonth: 1, weekday: 2 }) },
      ["recurrence.month_day", "recurrence.week_of_month", "recurrence.weekday"],
    ],
    [
      "monthly with neither a date nor a weekday",
      { ...allDay, recurrence: monthly() },
      ["recurrence.month_day"],
    ],
    [
      "monthly with both a date and a weekday",
      { ...allDay, recurrence: monthly({ monthDay: 3, weekOfMonth: 2, weekday: 2 }) },
      ["recurrence.month_day"],
    ],
    [
      "monthly month_day 32",
      { ...allDay, recurrence: monthly({ monthDay: 32 }) },
      ["recurrence.month_day"],
    ],
    [
      "monthly month_day negative",
      { ...allDay, recurrence: monthly({ monthDay: -1 }) },
      ["recurrence.month_day"],
    ],
    [
      "monthly week_of_month 6",
      { ...allDay, recurrence: monthly({ weekOfMonth: 6, weekday: 1 }) },
      ["recurrence.week_of_month"],
    ],
    [
      "monthly week_of_month -2",
      { ...allDay, recurrence: monthly({ weekOfMonth: -2, weekday: 1 }) },
      ["recurrence.week_of_month"],
    ],
    [
      "monthly week_of_month without a weekday",
      { ...allDay, recurrence: monthly({ weekOfMonth: 2 }) },
      ["recurrence.weekday"],
    ],
    [
      "monthly weekday 8",
      { ...allDay, recurrence: monthly({ weekOfMonth: 2, weekday: 8 }) },
      ["recurrence.weekday"],
    ],
    [
      "monthly weekday without a week_of_month",
      { ...allDay, recurrence: monthly({ weekday: 3 }) },
      ["recurrence.week_of_month"],
    ],
    [
      "monthly with weekdays",
      { ...allDay, recurrence: monthly({ monthDay: 1, weekdays: [1] }) },
      ["recurrence.weekdays[0]"],
    ],
    [
      "until not a date",
      { ...allDay, recurrence: weekly({ until: "2026-02-29" }) },
      ["recurrence.until"],
    ],
    [
      "until before start_date",
      { ...allDay, recurrence: weekly({ until: "2026-03-01" }) },
      ["recurrence.until"],
    ],
  ])("%s", (_, input, fields) => {
    const { violations } = checkOverride(input);
    expect(violations.map((v) => v.field)).toEqual(fields);
    for (const v of violations) expect(v.description.length).toBeGreaterThan(5);
  });

  it("names every bad field at once, with descriptions", () => {
    const { violations } = checkOverride({
      kind: "open",
      allDay: false,
      startDate: "2026-03-10",
      endDate: "2026-03-09",
      startTime: "25:00",
      endTime: "",
      recurrence: monthly({ interval: 30, monthDay: 40, until: "2026-03-01" }),
    });
    expect(violations).toEqual([
      { field: "end_date", description: "must not be before start_date" },
      { field: "start_time", description: 'must be "HH:MM" from 00:00 to 23:59' },
      { field: "end_time", description: "is required unless the override is all day" },
      { field: "recurrence.interval", description: "must be 1 to 24 (0 means 1)" },
      { field: "recurrence.until", description: "must not be before start_date" },
      { field: "recurrence.month_day", description: "must be 1 to 31" },
    ]);
  });

  it("bounds every date to the years the API takes times in, 2000 to 2199", () => {
    const range = "must be a date from 2000-01-01 to 2199-12-31";
    expect(checkOverride({ ...allDay, endDate: "9999-12-31" }).violations).toEqual([
      { field: "end_date", description: range },
    ]);
    expect(checkOverride({ ...allDay, startDate: "1999-12-31" }).violations).toEqual([
      { field: "start_date", description: range },
    ]);
    expect(
      checkOverride({ ...allDay, startDate: "2200-01-01", endDate: "2200-01-02" }).violations,
    ).toEqual([
      { field: "start_date", description: range },
      { field: "end_date", description: range },
    ]);
    expect(
      checkOverride({ ...allDay, recurrence: weekly({ until: "2200-01-01" }) }).violations,
    ).toEqual([{ field: "recurrence.until", description: range }]);
    // The bounds themselves are fine.
    expect(
      checkOverride({
        ...allDay,
        startDate: "2000-01-01",
        endDate: "2199-12-31",
        recurrence: weekly({ until: "2199-12-31" }),
      }).violations,
    ).toEqual([]);
  });

  it("the date bounds are the days of the instants the API takes", () => {
    expect(dayNumber(EARLIEST_DATE) * DAY_MS).toBe(EARLIEST_MS);
    expect((dayNumber(LATEST_DATE) + 1) * DAY_MS).toBe(LATEST_MS);
  });

  it("a stored override beyond the bounds still reads as its rule (the console reads them so)", () => {
    const { value } = checkOverride({ ...allDay, endDate: "9999-12-31" });
    expect(value.endDate).toBe("9999-12-31");
  });

  it("an unspecified frequency yields no recurrence in the value", () => {
    const { value } = checkOverride({
      ...allDay,
      recurrence: weekly({ frequency: "unspecified" }),
    });
    expect(value.recurrence).toBeNull();
  });
});

describe("checkOverrideRoom", () => {
  it("admits up to MAX_OVERRIDES_PER_RESOURCE, then is LIMIT_REACHED naming the resource", () => {
    expect(() => checkOverrideRoom("rsc_a", 0)).not.toThrow();
    expect(() => checkOverrideRoom("rsc_a", MAX_OVERRIDES_PER_RESOURCE - 1)).not.toThrow();
    let refused: unknown;
    try {
      checkOverrideRoom("rsc_a", MAX_OVERRIDES_PER_RESOURCE);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(Rejection);
    const r = refused as Rejection;
    expect([r.reason, r.code]).toEqual(["LIMIT_REACHED", "resource_exhausted"]);
    expect(r.details.metadata).toEqual({
      quota: "overrides_per_resource",
      limit: "1000",
      usage: "1000",
      resource_id: "rsc_a",
    });
  });
});

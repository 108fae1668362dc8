import { describe, expect, it } from "vitest";
import type { OverrideRule, Recurrence } from "../../src/domain/override-rule.js";
import {
  calendarDate,
  dayNumber,
  dayNumberOf,
  isoWeekday,
  occurrenceDays,
} from "../../src/domain/recurrence.js";

type Rule = Pick<OverrideRule, "startDate" | "endDate" | "recurrence">;

function weekly(interval: number, weekdays: number[], until: string | null = null): Recurrence {
  return {
    frequency: "weekly",
    interval,
    weekdays,
    monthDay: null,
    weekOfMonth: null,
    weekday: null,
    until,
  };
}

function monthly(
  interval: number,
  by: { monthDay: number } | { weekOfMonth: number; weekday: number },
  until: string | null = null,
): Recurrence {
  return {
    frequency: "monthly",
    interval,
    weekdays: [],
    monthDay: "monthDay" in by ? by.monthDay : null,
    weekOfMonth: "weekOfMonth" in by ? by.weekOfMonth : null,
    weekday: "weekday" in by ? by.weekday : null,
    until,
  };
}

/** The dates, as "YYYY-MM-DD", the rule falls on between two dates inclusive. */
function dates(rule: Rule, from: string, to: string): string[] {
  return occurrenceDays(rule, dayNumber(from), dayNumber(to)).map((d) => {
    const { year, month, day } = calendarDate(d);
    return `${year}-${String(month).padStart(2, "0")}-${String(day).padStart(2, "0")}`;
  });
}

describe("calendar days", () => {
  it.each([
    ["1970-01-01", 0, 4],
    ["1969-12-31", -1, 3],
    ["2026-03-08", 20520, 7],
    ["2026-03-09", 20521, 1],
    ["2028-02-29", 21243, 2],
  ])("%s is day %i, ISO weekday %i", (date, day, weekday) => {
    expect(dayNumber(date)).toBe(day);
    expect(isoWeekday(day)).toBe(weekday);
    const [y, m, d] = date.split("-").map(Number) as [number, number, number];
    expect(dayNumberOf(y, m, d)).toBe(day);
    expect(calendarDate(day)).toEqual({ year: y, month: m, day: d });
  });

  it("reads years before 100 as themselves, not as 19xx", () => {
    expect(calendarDate(dayNumberOf(50, 6, 1))).toEqual({ year: 50, month: 6, day: 1 });
  });
});

describe("occurrenceDays without recurrence", () => {
  it("covers startDate alone when endDate is null", () => {
    expect(
      dates(
        { startDate: "2026-03-04", endDate: null, recurrence: null },
        "2026-03-01",
        "2026-03-31",
      ),
    ).toEqual(["2026-03-04"]);
  });

  it("covers every day from startDate to endDate inclusive, clipped to the asked days", () => {
    const rule = { startDate: "2026-02-27", endDate: "2026-03-02", recurrence: null };
    expect(dates(rule, "2026-02-01", "2026-03-31")).toEqual([
      "2026-02-27",
      "2026-02-28",
      "2026-03-01",
      "2026-03-02",
    ]);
    expect(dates(rule, "2026-02-28", "2026-03-01")).toEqual(["2026-02-28", "2026-03-01"]);
    expect(dates(rule, "2026-03-03", "2026-03-31")).toEqual([]);
  });
});

describe("occurrenceDays, weekly", () => {
  it("repeats on startDate's weekday when no weekdays are given (2026-03-04 is a Wednesday)", () => {
    const rule = { startDate: "2026-03-04", endDate: null, recurrence: weekly(1, []) };
    expect(dates(rule, "2026-02-01", "2026-03-31")).toEqual([
      "2026-03-04",
      "2026-03-11",
      "2026-03-18",
      "2026-03-25",
    ]);
  });

  it("every 2nd week on Mon and Wed, weeks counted from the Monday of startDate's week, never before startDate", () => {
    // startDate Wed 2026-03-04: its week starts Mon 03-02 (before startDate, so skipped).
    const rule = { startDate: "2026-03-04", endDate: null, recurrence: weekly(2, [3, 1]) };
    expect(dates(rule, "2026-03-01", "2026-04-12")).toEqual([
      "2026-03-04",
      "2026-03-16",
      "2026-03-18",
      "2026-03-30",
      "2026-04-01",
    ]);
  });

  it("counts weeks from Monday: a Sunday startDate's week is the one before the next Monday", () => {
    // Sun 2026-03-08 is in the week of Mon 03-02 (week 0); week 2 starts Mon 03-16.
    const rule = { startDate: "2026-03-08", endDate: null, recurrence: weekly(2, [1, 7]) };
    expect(dates(rule, "2026-03-01", "2026-03-31")).toEqual([
      "2026-03-08",
      "2026-03-16",
      "2026-03-22",
      "2026-03-30",
    ]);
  });

  it("stops after until, inclusive", () => {
    const rule = {
      startDate: "2026-03-02",
      endDate: null,
      recurrence: weekly(1, [1], "2026-03-16"),
    };
    expect(dates(rule, "2026-03-01", "2026-04-30")).toEqual([
      "2026-03-02",
      "2026-03-09",
      "2026-03-16",
    ]);
  });

  it("stops after endDate, inclusive, and after whichever of endDate and until comes first", () => {
    const byEnd = { startDate: "2026-03-02", endDate: "2026-03-09", recurrence: weekly(1, [1]) };
    expect(dates(byEnd, "2026-03-01", "2026-04-30")).toEqual(["2026-03-02", "2026-03-09"]);
    const both = {
      startDate: "2026-03-02",
      endDate: "2026-03-23",
      recurrence: weekly(1, [1], "2026-03-10"),
    };
    expect(dates(both, "2026-03-01", "2026-04-30")).toEqual(["2026-03-02", "2026-03-09"]);
    const untilLater = { ...both, recurrence: weekly(1, [1], "2026-12-31") };
    expect(dates(untilLater, "2026-03-01", "2026-04-30")).toEqual([
      "2026-03-02",
      "2026-03-09",
      "2026-03-16",
      "2026-03-23",
    ]);
  });

  it("keeps going without end when neither endDate nor until is set", () => {
    const rule = { startDate: "2026-01-05", endDate: null, recurrence: weekly(52, [1]) };
    expect(dates(rule, "2026-01-01", "2028-12-31")).toEqual([
      "2026-01-05",
      "2027-01-04",
      "2028-01-03",
    ]);
  });
});

describe("occurrenceDays, monthly", () => {
  it("on the 31st skips the months without one", () => {
    const rule = {
      startDate: "2026-01-31",
      endDate: null,
      recurrence: monthly(1, { monthDay: 31 }),
    };
    expect(dates(rule, "2026-01-01", "2026-12-31")).toEqual([
      "2026-01-31",
      "2026-03-31",
      "2026-05-31",
      "2026-07-31",
      "2026-08-31",
      "2026-10-31",
      "2026-12-31",
    ]);
  });

  it("every 2nd month counts months from startDate's month (Jan, Mar, May, Jul, Sep, Nov)", () => {
    const rule = {
      startDate: "2026-01-31",
      endDate: null,
      recurrence: monthly(2, { monthDay: 31 }),
    };
    expect(dates(rule, "2026-01-01", "2026-12-31")).toEqual([
      "2026-01-31",
      "2026-03-31",
      "2026-05-31",
      "2026-07-31",
    ]);
  });

  it("on the 29th falls on 29 February only in leap years", () => {
    const rule = {
      startDate: "2027-01-29",
      endDate: null,
      recurrence: monthly(1, { monthDay: 29 }),
    };
    expect(dates(rule, "2027-02-01", "2027-03-31")).toEqual(["2027-03-29"]);
    expect(dates(rule, "2028-02-01", "2028-03-31")).toEqual(["2028-02-29", "2028-03-29"]);
  });

  it("never falls before startDate, even in startDate's month", () => {
    const rule = {
      startDate: "2026-01-15",
      endDate: null,
      recurrence: monthly(1, { monthDay: 10 }),
    };
    expect(dates(rule, "2026-01-01", "2026-03-31")).toEqual(["2026-02-10", "2026-03-10"]);
  });

  it("on the 2nd Tuesday", () => {
    const rule = {
      startDate: "2026-01-01",
      endDate: null,
      recurrence: monthly(1, { weekOfMonth: 2, weekday: 2 }),
    };
    expect(dates(rule, "2026-01-01", "2026-06-30")).toEqual([
      "2026-01-13",
      "2026-02-10",
      "2026-03-10",
      "2026-04-14",
      "2026-05-12",
      "2026-06-09",
    ]);
  });

  it("on the last Friday", () => {
    const rule = {
      startDate: "2026-01-01",
      endDate: null,
      recurrence: monthly(1, { weekOfMonth: -1, weekday: 5 }),
    };
    expect(dates(rule, "2026-01-01", "2026-06-30")).toEqual([
      "2026-01-30",
      "2026-02-27",
      "2026-03-27",
      "2026-04-24",
      "2026-05-29",
      "2026-06-26",
    ]);
  });

  it("on the 5th Monday skips months with only four", () => {
    const rule = {
      startDate: "2026-01-01",
      endDate: null,
      recurrence: monthly(1, { weekOfMonth: 5, weekday: 1 }),
    };
    expect(dates(rule, "2026-01-01", "2026-12-31")).toEqual([
      "2026-03-30",
      "2026-06-29",
      "2026-08-31",
      "2026-11-30",
    ]);
  });

  it("a 2nd Tuesday before startDate in its month is skipped", () => {
    const rule = {
      startDate: "2026-01-20",
      endDate: null,
      recurrence: monthly(1, { weekOfMonth: 2, weekday: 2 }),
    };
    expect(dates(rule, "2026-01-01", "2026-03-31")).toEqual(["2026-02-10", "2026-03-10"]);
  });

  it("stops after until and endDate, inclusive", () => {
    const untilRule = {
      startDate: "2026-01-01",
      endDate: null,
      recurrence: monthly(1, { weekOfMonth: 2, weekday: 2 }, "2026-03-10"),
    };
    expect(dates(untilRule, "2026-01-01", "2026-12-31")).toEqual([
      "2026-01-13",
      "2026-02-10",
      "2026-03-10",
    ]);
    const endRule = { ...untilRule, endDate: "2026-03-09" };
    expect(dates(endRule, "2026-01-01", "2026-12-31")).toEqual(["2026-01-13", "2026-02-10"]);
  });

  it("repeats startDate's date when a rule names neither a date nor a weekday", () => {
    const rule = {
      startDate: "2026-01-31",
      endDate: null,
      recurrence: { ...monthly(1, { monthDay: 1 }), monthDay: null },
    };
    expect(dates(rule, "2026-01-01", "2026-04-30")).toEqual(["2026-01-31", "2026-03-31"]);
  });
});

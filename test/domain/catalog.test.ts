import { describe, expect, it } from "vitest";
import {
  checkPolicy,
  checkWeeklyWindows,
  type PolicyInput,
  weeklyWindowsForDisplay,
} from "../../src/domain/catalog.js";

const MIN = 60_000;
const blank: PolicyInput = {
  durationsMs: [30 * MIN],
  slotIntervalMs: null,
  bufferBeforeMs: null,
  bufferAfterMs: null,
  minNoticeMs: null,
  maxAdvanceMs: null,
  businessHours: [],
  holdTtlMs: null,
  maxHoldTtlMs: null,
};

describe("checkWeeklyWindows", () => {
  it("sorts, merges overlapping and touching windows per day, and keeps days apart", () => {
    const { value, violations } = checkWeeklyWindows(
      [
        { weekday: 3, startTime: "13:00", endTime: "17:00" },
        { weekday: 1, startTime: "12:00", endTime: "14:00" },
        { weekday: 1, startTime: "09:00", endTime: "12:00" },
        { weekday: 1, startTime: "10:00", endTime: "11:00" },
        { weekday: 2, startTime: "22:00", endTime: "24:00" },
        { weekday: 3, startTime: "00:00", endTime: "08:00" },
      ],
      "w",
    );
    expect(violations).toEqual([]);
    expect(value).toEqual([
      { weekday: 1, start: 540, end: 840 },
      { weekday: 2, start: 1320, end: 1440 },
      { weekday: 3, start: 0, end: 480 },
      { weekday: 3, start: 780, end: 1020 },
    ]);
    expect(weeklyWindowsForDisplay(value)[1]).toEqual({
      weekday: 2,
      startTime: "22:00",
      endTime: "24:00",
    });
  });

  it("names every bad field", () => {
    const { violations } = checkWeeklyWindows(
      [
        { weekday: 0, startTime: "09:00", endTime: "10:00" },
        { weekday: 1, startTime: "24:00", endTime: "10:00" },
        { weekday: 1, startTime: "10:00", endTime: "10:00" },
        { weekday: 7, startTime: "10:00", endTime: "24:30" },
      ],
      "hours",
    );
    expect(violations.map((v) => v.field)).toEqual([
      "hours[0].weekday",
      "hours[1].start_time",
      "hours[2].end_time",
      "hours[3].end_time",
    ]);
  });
});

describe("checkPolicy", () => {
  it("fills in defaults: 120 s holds, at most 30 min, no buffers, no notice", () => {
    const { value, violations } = checkPolicy(blank, "policy");
    expect(violations).toEqual([]);
    expect(value).toEqual({
      durationsMs: [30 * MIN],
      slotIntervalMs: null,
      bufferBeforeMs: 0,
      bufferAfterMs: 0,
      minNoticeMs: 0,
      maxAdvanceMs: null,
      businessHours: [],
      holdTtlMs: 120_000,
      maxHoldTtlMs: 30 * MIN,
    });
  });

  it("raises the default max hold to a longer given hold, and lowers the default hold to a shorter max", () => {
    expect(checkPolicy({ ...blank, holdTtlMs: 45 * MIN }, "p").value.maxHoldTtlMs).toBe(45 * MIN);
    expect(checkPolicy({ ...blank, maxHoldTtlMs: 60_000 }, "p").value.holdTtlMs).toBe(60_000);
  });

  it("de-duplicates durations", () => {
    expect(
      checkPolicy({ ...blank, durationsMs: [30 * MIN, 60 * MIN, 30 * MIN] }, "p").value.durationsMs,
    ).toEqual([30 * MIN, 60 * MIN]);
  });

  it.each([
    ["no durations", { durationsMs: [] }, "p.durations"],
    ["a duration of seconds", { durationsMs: [90_000] }, "p.durations[0]"],
    ["a negative duration", { durationsMs: [Number.NaN] }, "p.durations[0]"],
    ["a duration over a day", { durationsMs: [25 * 60 * MIN] }, "p.durations[0]"],
    ["a zero slot interval", { slotIntervalMs: 0 }, "p.slot_interval"],
    ["a buffer of seconds", { bufferAfterMs: 30_000 }, "p.buffer_after"],
    [
      "max_advance below min_notice",
      { minNoticeMs: 60 * MIN, maxAdvanceMs: 30 * MIN },
      "p.max_advance",
    ],
    ["a hold of 2 s", { holdTtlMs: 2_000 }, "p.hold_ttl"],
    ["a hold of fractional seconds", { holdTtlMs: 10_500 }, "p.hold_ttl"],
    ["a hold longer than the max", { holdTtlMs: 20 * MIN, maxHoldTtlMs: 10 * MIN }, "p.hold_ttl"],
    ["a max hold over a day", { maxHoldTtlMs: 25 * 60 * MIN }, "p.max_hold_ttl"],
    [
      "bad business hours",
      { businessHours: [{ weekday: 9, startTime: "09:00", endTime: "17:00" }] },
      "p.business_hours[0].weekday",
    ],
  ])("refuses %s", (_, change, field) => {
    const { violations } = checkPolicy({ ...blank, ...change }, "p");
    expect(violations.map((v) => v.field)).toContain(field);
  });

  it.each([
    ["durations[0]", { durationsMs: [-60_000] }],
    ["slot_interval", { slotIntervalMs: -60_000 }],
    ["buffer_before", { bufferBeforeMs: -60_000 }],
    ["buffer_after", { bufferAfterMs: -60_000 }],
    ["min_notice", { minNoticeMs: -60_000 }],
    ["max_advance", { maxAdvanceMs: -60_000 }],
    ["hold_ttl", { holdTtlMs: -60_000 }],
    ["max_hold_ttl", { maxHoldTtlMs: -60_000 }],
  ])("says a negative %s must not be negative, and only that", (field, change) => {
    // -60 s is a whole number of minutes and seconds; NaN is how the RPC
    // layer passes a negative (or mixed-sign) wire Duration.
    for (const ms of [-60_000, Number.NaN]) {
      const input = Object.fromEntries(
        Object.entries(change).map(([k, v]) => [k, Array.isArray(v) ? [ms] : ms]),
      );
      expect(checkPolicy({ ...blank, ...input }, "p").violations).toEqual([
        { field: `p.${field}`, description: "must not be negative" },
      ]);
    }
  });

  it("names fields without a prefix when given none", () => {
    expect(checkPolicy({ ...blank, durationsMs: [] }, "").violations[0]?.field).toBe("durations");
  });
});

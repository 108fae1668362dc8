import { describe, expect, it } from "vitest";
import {
  canonicalTimeZone,
  formatClockTime,
  isCalendarDate,
  parseClockTime,
} from "../../src/domain/time.js";

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

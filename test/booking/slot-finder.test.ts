import { describe, expect, it } from "vitest";
import { alternativesRange } from "../../src/booking/slot-finder.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const T = Date.UTC(2030, 2, 4, 9);

describe("alternativesRange", () => {
  it("is the whole reach for a service of a few resources", () => {
    expect(alternativesRange(T, 12 * HOUR, 48 * HOUR, 15 * MINUTE, 3)).toEqual({
      start: T - 12 * HOUR,
      end: T + 48 * HOUR,
    });
    // 14.5 days of one room on a 15-minute grid: 1,392 starts.
    expect(alternativesRange(T, 12 * HOUR, 14 * DAY, 15 * MINUTE, 1)).toEqual({
      start: T - 12 * HOUR,
      end: T + 14 * DAY,
    });
  });

  it("narrows both sides alike so that resources x grid starts stay within 50,000", () => {
    // 500 resources on a one-minute grid: 100 starts each, 100 minutes, split 12:48.
    const r = alternativesRange(T, 12 * HOUR, 48 * HOUR, MINUTE, 500);
    expect(r).toEqual({ start: T - 20 * MINUTE, end: T + 80 * MINUTE });
    expect(((r.end - r.start) / MINUTE) * 500).toBe(50_000);
  });

  it("keeps one grid step when even that is more than the bound", () => {
    const r = alternativesRange(T, 12 * HOUR, 48 * HOUR, 30 * MINUTE, 100_000);
    expect(r.end - r.start).toBe(30 * MINUTE);
    expect(r.start).toBeLessThanOrEqual(T);
    expect(r.end).toBeGreaterThan(T);
  });
});

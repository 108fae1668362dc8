import { describe, expect, it } from "vitest";
import { checkCapacity, firstOverbooking } from "../../src/domain/capacity.js";
import { Rejection } from "../../src/domain/rejection.js";

const H = 3_600_000;
const b = (start: number, end: number) => ({ start: start * H, end: end * H });

describe("firstOverbooking", () => {
  it("finds nothing when the blocks fit, touching ones included", () => {
    expect(firstOverbooking([], 1)).toBeUndefined();
    expect(firstOverbooking([b(9, 10), b(10, 11), b(11, 12)], 1)).toBeUndefined();
    expect(firstOverbooking([b(9, 11), b(10, 12), b(11, 13)], 2)).toBeUndefined();
  });

  it("names the first span over the capacity, the most in it, and the most anywhere", () => {
    // 9-10: 1, 10-11: 2, 11-12: 1, 14-15: 3, 15-16: 2.
    const blocks = [b(14, 16), b(9, 11), b(10, 12), b(14, 15), b(14, 16)];
    expect(firstOverbooking(blocks, 1)).toEqual({
      start: 10 * H,
      end: 11 * H,
      bookings: 2,
      peak: 3,
    });
    expect(firstOverbooking(blocks, 2)).toEqual({
      start: 14 * H,
      end: 15 * H,
      bookings: 3,
      peak: 3,
    });
    expect(firstOverbooking(blocks, 3)).toBeUndefined();
  });

  it("keeps a span whole while the count stays over, and ignores empty blocks", () => {
    const blocks = [b(9, 12), b(10, 11), b(10.5, 13), b(10, 10)];
    expect(firstOverbooking(blocks, 1)).toEqual({
      start: 10 * H,
      end: 12 * H,
      bookings: 3,
      peak: 3,
    });
  });
});

describe("checkCapacity", () => {
  it("refuses with CAPACITY_BELOW_BOOKINGS, in the resource's local time", () => {
    const day = Date.UTC(2030, 2, 4);
    const blocks = [
      { start: day + 14 * H, end: day + 15 * H },
      { start: day + 14.5 * H, end: day + 15.5 * H },
    ];
    expect(() => checkCapacity({ id: "rsc_a", timeZone: "UTC" }, 2, blocks)).not.toThrow();
    let refused: unknown;
    try {
      checkCapacity({ id: "rsc_a", timeZone: "America/New_York" }, 1, blocks);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(Rejection);
    const r = refused as Rejection;
    expect([r.reason, r.code]).toEqual(["CAPACITY_BELOW_BOOKINGS", "failed_precondition"]);
    expect(r.message).toBe(
      'resource "rsc_a" has 2 bookings at once from 2030-03-04 09:30 to 2030-03-04 10:00 (America/New_York), more than a capacity of 1; its live bookings need at least 2',
    );
    expect(r.details.metadata).toEqual({
      start_time: "2030-03-04T14:30:00Z",
      end_time: "2030-03-04T15:00:00Z",
      local_start_time: "2030-03-04T09:30:00-05:00",
      local_end_time: "2030-03-04T10:00:00-05:00",
      time_zone: "America/New_York",
      bookings: "2",
      min_capacity: "2",
    });
  });
});

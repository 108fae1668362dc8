import { describe, expect, it } from "vitest";
import { roundStarts } from "../../src/rpc/availability-service.js";

describe("ListSlots rounds", () => {
  it("start at four grid starts per slot the page needs, within the cap", () => {
    expect(roundStarts(1001)).toBe(4004);
    expect(roundStarts(51)).toBe(204);
    expect(roundStarts(5001)).toBe(20_000);
  });

  it("go on at the rate found so far, with a quarter again to spare", () => {
    // 760 slots in 4000 starts: 241 more need about 1268 starts, 1586 with the margin.
    expect(roundStarts(241, { found: 760, searched: 4000, last: 4000 })).toBe(1586);
    expect(roundStarts(1, { found: 1000, searched: 1000, last: 1000 })).toBe(2);
    expect(roundStarts(1000, { found: 1, searched: 20_000, last: 20_000 })).toBe(20_000);
  });

  it("double while nothing was found", () => {
    expect(roundStarts(1001, { found: 0, searched: 4000, last: 4000 })).toBe(8000);
    expect(roundStarts(1001, { found: 0, searched: 50_000, last: 20_000 })).toBe(20_000);
  });
});

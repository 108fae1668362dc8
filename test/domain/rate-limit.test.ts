import { describe, expect, it } from "vitest";
import { grantedKeyLimit } from "../../src/domain/rate-limit.js";

describe("grantedKeyLimit", () => {
  const tenant = { perSecond: 200, burst: 400 };

  it("lets a creator without a limit of its own grant what is asked, or nothing", () => {
    expect(grantedKeyLimit({ perSecond: 150, burst: 300 }, undefined, tenant)).toEqual({
      limit: { perSecond: 150, burst: 300 },
      over: [],
    });
    expect(grantedKeyLimit(undefined, undefined, tenant)).toEqual({ limit: undefined, over: [] });
  });

  it("refuses what is above a creator's own limit, naming the parts", () => {
    const creator = { perSecond: 1, burst: 2 };
    expect(grantedKeyLimit({ perSecond: 1, burst: 2 }, creator, tenant).over).toEqual([]);
    expect(grantedKeyLimit({ perSecond: 2, burst: 2 }, creator, tenant).over).toEqual([
      "perSecond",
    ]);
    expect(grantedKeyLimit({ perSecond: 1, burst: 3 }, creator, tenant).over).toEqual(["burst"]);
    expect(grantedKeyLimit({ perSecond: 9, burst: 9 }, creator, tenant).over).toEqual([
      "perSecond",
      "burst",
    ]);
  });

  it("gives a key created without a limit its creator's, within the tenant's", () => {
    expect(grantedKeyLimit(undefined, { perSecond: 1, burst: 2 }, tenant)).toEqual({
      limit: { perSecond: 1, burst: 2 },
      over: [],
    });
    // The tenant's limit was lowered below the creator's since.
    expect(grantedKeyLimit(undefined, { perSecond: 300, burst: 300 }, tenant)).toEqual({
      limit: { perSecond: 200, burst: 300 },
      over: [],
    });
  });
});

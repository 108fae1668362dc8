import { describe, expect, it } from "vitest";
import type { Rejection } from "../../src/domain/rejection.js";
import { numberedKey, readPage, writePage } from "../../src/rpc/paging.js";

describe("paging", () => {
  it("defaults to 50 and lowers sizes above 100 to 100", () => {
    expect(readPage({ pageSize: 0, pageToken: "" }, {}).size).toBe(50);
    expect(readPage({ pageSize: 7, pageToken: "" }, {}).size).toBe(7);
    expect(readPage({ pageSize: 5000, pageToken: "" }, {}).size).toBe(100);
  });

  it("hands out a token only when there is more, and resumes after its key", () => {
    const page = readPage({ pageSize: 2, pageToken: "" }, { f: 1 });
    expect(writePage(["a", "b"], page, (x) => x)).toEqual({ items: ["a", "b"], nextPageToken: "" });
    const { items, nextPageToken } = writePage(["a", "b", "c"], page, (x) => x);
    expect(items).toEqual(["a", "b"]);
    expect(readPage({ pageSize: 2, pageToken: nextPageToken }, { f: 1 }).after).toBe("b");
  });

  it("refuses tokens for other filters, garbage and negative sizes", () => {
    const page = readPage({ pageSize: 1, pageToken: "" }, { f: 1 });
    const { nextPageToken } = writePage(["a", "b"], page, (x) => x);
    const reason = (fn: () => unknown) => {
      try {
        fn();
      } catch (e) {
        return (e as Rejection).reason;
      }
    };
    expect(reason(() => readPage({ pageSize: 1, pageToken: nextPageToken }, { f: 2 }))).toBe(
      "INVALID_PAGE_TOKEN",
    );
    expect(reason(() => readPage({ pageSize: 1, pageToken: "%%%" }, {}))).toBe(
      "INVALID_PAGE_TOKEN",
    );
    expect(
      reason(() =>
        readPage({ pageSize: 1, pageToken: Buffer.from("[]").toString("base64url") }, {}),
      ),
    ).toBe("INVALID_PAGE_TOKEN");
    expect(reason(() => readPage({ pageSize: -5, pageToken: "" }, {}))).toBe("VALIDATION_ERROR");
  });

  it("reads integer-led keys and refuses edited ones", () => {
    expect(numberedKey("1767225600000|bkg_1")).toEqual({ n: 1767225600000, rest: "bkg_1" });
    expect(numberedKey("7")).toEqual({ n: 7, rest: "" });
    for (const bad of ["x|bkg_1", "|bkg_1", "", "1e3|a", "99999999999999999999|a", " 1|a"]) {
      expect(() => numberedKey(bad), bad).toThrow("page_token");
    }
  });
});

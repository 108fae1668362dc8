import { describe, expect, it } from "vitest";
import type { Rejection } from "../../src/domain/rejection.js";
import {
  numberedKey,
  openPage,
  type PageScope,
  pageSizeOf,
  writePage,
} from "../../src/rpc/paging.js";

const secret = Buffer.alloc(32, 7);
const scope: PageScope = {
  method: "holdfast.v1.ResourceService/ListResources",
  tenantId: "ten_a",
  filters: { i: true, k: "room" },
};

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as Rejection).reason;
  }
}

/** The token for the page after key `b`, issued in `scope`. */
function tokenAfterB(s: PageScope = scope): string {
  const page = openPage(secret, s, { pageSize: 2, pageToken: "" });
  return writePage(["a", "b", "c"], page, (x) => x).nextPageToken;
}

/** The token with its last character's unused bits set otherwise: the same bytes when decoded. */
function trailingBitEdits(token: string): string[] {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const head = token.slice(0, -1);
  return [...alphabet]
    .map((c) => head + c)
    .filter(
      (t) => t !== token && Buffer.from(t, "base64url").equals(Buffer.from(token, "base64url")),
    );
}

const edit = (token: string, change: Record<string, unknown>) =>
  Buffer.from(
    JSON.stringify({ ...JSON.parse(Buffer.from(token, "base64url").toString()), ...change }),
  ).toString("base64url");

describe("page sizes", () => {
  it("default, cap oversized sizes and refuse negative ones, naming page_size", () => {
    expect(pageSizeOf(0)).toBe(50);
    expect(pageSizeOf(7)).toBe(7);
    expect(pageSizeOf(5000)).toBe(100);
    expect(pageSizeOf(0, { defaultSize: 100, maxSize: 1000 })).toBe(100);
    expect(pageSizeOf(2 ** 31 - 1, { defaultSize: 100, maxSize: 1000 })).toBe(1000);
    try {
      pageSizeOf(-1);
      expect.unreachable();
    } catch (e) {
      const r = e as Rejection;
      expect(r.reason).toBe("VALIDATION_ERROR");
      expect(r.message).toContain("page_size");
    }
  });
});

describe("page tokens", () => {
  it("are handed out only when there is more, and resume after their key", () => {
    const page = openPage(secret, scope, { pageSize: 2, pageToken: "" });
    expect(writePage(["a", "b"], page, (x) => x)).toEqual({ items: ["a", "b"], nextPageToken: "" });
    const token = tokenAfterB();
    expect(openPage(secret, scope, { pageSize: 2, pageToken: token }).after).toBe("b");
    // The same filters given in another order are the same query.
    const reordered = { ...scope, filters: { k: "room", i: true } };
    expect(openPage(secret, reordered, { pageSize: 2, pageToken: token }).after).toBe("b");
  });

  it("work only for the method, tenant and filters they were issued for, under this secret", () => {
    const token = tokenAfterB();
    for (const other of [
      { ...scope, method: "holdfast.v1.CatalogService/ListServices" },
      { ...scope, tenantId: "ten_b" },
      { ...scope, filters: { i: false, k: "room" } },
      { ...scope, filters: {} },
    ]) {
      expect(reasonOf(() => openPage(secret, other, { pageSize: 2, pageToken: token }))).toBe(
        "INVALID_PAGE_TOKEN",
      );
    }
    expect(
      reasonOf(() => openPage(Buffer.alloc(32, 8), scope, { pageSize: 2, pageToken: token })),
    ).toBe("INVALID_PAGE_TOKEN");
  });

  it("refuse any edit, garbage and oversized tokens", () => {
    const token = tokenAfterB();
    for (const bad of [
      edit(token, { k: "abc" }),
      edit(token, { k: "z".repeat(700) }),
      edit(token, { k: "2147483648" }),
      edit(token, { k: 5 }),
      edit(token, { f: "AAAAAAAAAAAAAAAAAAAAAA" }),
      edit(token, { f: undefined }),
      `${token}AA`,
      "%%%",
      Buffer.from("[]").toString("base64url"),
      Buffer.from("null").toString("base64url"),
      "x".repeat(1000),
      // The same bytes written otherwise: base64 padding, JSON spacing.
      `${token}=`,
      Buffer.from(` ${Buffer.from(token, "base64url").toString()}`).toString("base64url"),
      ...trailingBitEdits(token),
    ]) {
      expect(
        reasonOf(() => openPage(secret, scope, { pageSize: 2, pageToken: bad })),
        bad,
      ).toBe("INVALID_PAGE_TOKEN");
    }
  });

  it("stay small", () => {
    const page = openPage(secret, scope, { pageSize: 1, pageToken: "" });
    const key = `${Number.MAX_SAFE_INTEGER}|bkg_${"x".repeat(26)}`;
    expect(writePage([key, "z"], page, (x) => x).nextPageToken.length).toBeLessThan(200);
  });

  it("keys led by an integer are read, and impossible ones refused", () => {
    expect(numberedKey("1767225600000|bkg_1")).toEqual({ n: 1767225600000, rest: "bkg_1" });
    expect(numberedKey("7")).toEqual({ n: 7, rest: "" });
    for (const bad of ["x|bkg_1", "|bkg_1", "", "1e3|a", "99999999999999999999|a", " 1|a"]) {
      expect(() => numberedKey(bad), bad).toThrow("page_token");
    }
  });
});

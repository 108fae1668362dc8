import { createHash } from "node:crypto";
import { invalid, Rejection } from "../domain/rejection.js";

/**
 * List paging per Google AIP-158: `page_size` (default 50, values above 100
 * are lowered to 100) and an opaque `page_token`. A token remembers the last
 * key it returned and a fingerprint of the query's filters, so a token is
 * refused when used with different filters.
 */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 100;

export type Page = { size: number; after: string | undefined; fingerprint: string };

export function readPage(
  req: { pageSize: number; pageToken: string },
  filters: unknown,
  limits: { defaultSize: number; maxSize: number } = {
    defaultSize: DEFAULT_PAGE_SIZE,
    maxSize: MAX_PAGE_SIZE,
  },
): Page {
  if (req.pageSize < 0)
    throw invalid([{ field: "page_size", description: "must not be negative" }]);
  const size = req.pageSize === 0 ? limits.defaultSize : Math.min(req.pageSize, limits.maxSize);
  const fingerprint = createHash("sha256")
    .update(JSON.stringify(filters ?? null))
    .digest("base64url")
    .slice(0, 12);
  if (req.pageToken === "") return { size, after: undefined, fingerprint };
  let token: unknown;
  try {
    token = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8"));
  } catch {
    token = undefined;
  }
  const t = token as { k?: unknown; f?: unknown } | undefined;
  if (typeof t?.k !== "string" || t.f !== fingerprint) throw invalidPageToken();
  return { size, after: t.k, fingerprint };
}

/**
 * The parts of a page key made as `<integer>|<text>` (a time and an id,
 * say; the text may be empty). Tokens are opaque, not secret: one edited by
 * hand gets INVALID_PAGE_TOKEN, not a database error.
 */
export function numberedKey(key: string): { n: number; rest: string } {
  const bar = key.indexOf("|");
  const head = bar < 0 ? key : key.slice(0, bar);
  const n = Number(head);
  if (!/^-?\d+$/.test(head) || !Number.isSafeInteger(n)) throw invalidPageToken();
  return { n, rest: bar < 0 ? "" : key.slice(bar + 1) };
}

export function invalidPageToken(): Rejection {
  return new Rejection(
    "INVALID_PAGE_TOKEN",
    "page_token is not one this list returned for these filters",
    { fieldViolations: [{ field: "page_token", description: "is not valid for this request" }] },
  );
}

/**
 * Splits the `size + 1` rows a repository fetched into this page and the
 * token for the next one (empty on the last page).
 */
export function writePage<T>(
  rows: T[],
  page: Page,
  keyOf: (row: T) => string,
): { items: T[]; nextPageToken: string } {
  if (rows.length <= page.size) return { items: rows, nextPageToken: "" };
  const items = rows.slice(0, page.size);
  const last = items[items.length - 1] as T;
  const token = Buffer.from(JSON.stringify({ k: keyOf(last), f: page.fingerprint })).toString(
    "base64url",
  );
  return { items, nextPageToken: token };
}

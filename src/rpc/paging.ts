import { createHmac, timingSafeEqual } from "node:crypto";
import { createContextKey, type HandlerContext, type Interceptor } from "@connectrpc/connect";
import { canonicalJson } from "../domain/canonical-json.js";
import { invalid, Rejection } from "../domain/rejection.js";
import { principalOf } from "./auth.js";

/**
 * List paging per Google AIP-158: `page_size` and an opaque `page_token`.
 *
 * `page_size`: 0 means the list's default, values above its maximum are
 * lowered to it, negative ones are refused (one rule for every list,
 * pageSizeOf). Most lists: default 50, at most 100.
 *
 * A token carries the last key it returned and a MAC, keyed with a secret
 * all instances share (the database's `page-tokens` server secret), over the
 * key and the scope it was issued for: the RPC, the caller's tenant and the
 * query's filters. Any token not issued for this RPC, tenant and filters, or
 * edited in any way, is INVALID_PAGE_TOKEN.
 */
export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 100;

export type PageSizes = { defaultSize: number; maxSize: number };
const LIST_PAGES: PageSizes = { defaultSize: DEFAULT_PAGE_SIZE, maxSize: MAX_PAGE_SIZE };

/** What a token is good for: one RPC, one tenant, one set of filters. */
export type PageScope = { method: string; tenantId: string; filters: unknown };

export type Page = {
  size: number;
  /** The key of the previous page's last item, from its token. */
  after: string | undefined;
  /** The token that resumes after `key`, in this page's scope. */
  tokenFor: (key: string) => string;
};

/** Keys are ids or `<integer>|<id>`; a token is refused unread past this length. */
const MAX_TOKEN_CHARS = 512;
/** 128 bits of HMAC-SHA256. */
const MAC_BYTES = 16;

/** The page size a list uses for the `page_size` asked. */
export function pageSizeOf(requested: number, limits: PageSizes = LIST_PAGES): number {
  if (requested < 0)
    throw invalid([
      { field: "page_size", description: "must not be negative (0 for the default)" },
    ]);
  return requested === 0 ? limits.defaultSize : Math.min(requested, limits.maxSize);
}

const pageSecretKey = createContextKey<Buffer | undefined>(undefined, {
  description: "holdfast page token secret",
});

/** Gives every call the secret its page tokens are signed with. */
export function pageTokensInterceptor(secret: Buffer): Interceptor {
  return (next) => (req) => {
    req.contextValues.set(pageSecretKey, secret);
    return next(req);
  };
}

/** The page a list call asks for, its token checked against this RPC, caller and `filters`. */
export function readPage(
  ctx: HandlerContext,
  req: { pageSize: number; pageToken: string },
  filters: unknown,
  limits: PageSizes = LIST_PAGES,
): Page {
  const secret = ctx.values.get(pageSecretKey);
  if (!secret) throw new Error("readPage called without pageTokensInterceptor");
  const method = `${ctx.method.parent.typeName}/${ctx.method.name}`;
  return openPage(secret, { method, tenantId: principalOf(ctx).tenantId, filters }, req, limits);
}

/** readPage's rule, given the secret and scope. */
export function openPage(
  secret: Buffer,
  scope: PageScope,
  req: { pageSize: number; pageToken: string },
  limits: PageSizes = LIST_PAGES,
): Page {
  const size = pageSizeOf(req.pageSize, limits);
  const scoped = canonicalJson([scope.method, scope.tenantId, scope.filters ?? null]);
  const macOf = (key: string) =>
    createHmac("sha256", secret)
      .update(scoped)
      .update("\0")
      .update(key)
      .digest()
      .subarray(0, MAC_BYTES);
  const tokenFor = (key: string) =>
    Buffer.from(JSON.stringify({ k: key, f: macOf(key).toString("base64url") })).toString(
      "base64url",
    );
  if (req.pageToken === "") return { size, after: undefined, tokenFor };
  if (req.pageToken.length > MAX_TOKEN_CHARS) throw invalidPageToken();
  let token: unknown;
  try {
    token = JSON.parse(Buffer.from(req.pageToken, "base64url").toString("utf8"));
  } catch {
    token = undefined;
  }
  const t = token as { k?: unknown; f?: unknown } | undefined;
  if (typeof t?.k !== "string" || typeof t.f !== "string") throw invalidPageToken();
  const mac = Buffer.from(t.f, "base64url");
  if (mac.length !== MAC_BYTES || !timingSafeEqual(mac, macOf(t.k))) throw invalidPageToken();
  // Only the very text issued: base64's unused trailing bits, padding or
  // JSON spacing edited would otherwise read as the same token.
  if (tokenFor(t.k) !== req.pageToken) throw invalidPageToken();
  return { size, after: t.k, tokenFor };
}

/**
 * The parts of a page key made as `<integer>|<text>` (a time and an id,
 * say; the text may be empty). Keys come from signed tokens; this is a
 * second check, so that a key that could not be one gets INVALID_PAGE_TOKEN,
 * never a database error.
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
    "page_token is not one this list returned to this caller for these filters",
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
  return { items, nextPageToken: page.tokenFor(keyOf(last)) };
}

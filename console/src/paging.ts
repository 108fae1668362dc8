/**
 * Reading a paged list (AIP-158: page_size and page_token) to its end, or to
 * a bound. The API returns at most 100 items a page; a list longer than the
 * bound is cut off, and the caller must say so on the page (`truncated`)
 * rather than let the missing items look absent.
 */

/** Items a page: the API's maximum for most lists. */
export const PAGE_SIZE = 100;

/** Items of a list an operator must reach every one of (resources, keys...) read at most. */
export const MAX_LISTED = 1000;

/** What a list cut off at `max` says on its page; "" when it was read whole. */
export function cutNote(listed: Listed<unknown>, what: string): string {
  return listed.truncated
    ? `Only the first ${listed.items.length.toLocaleString("en")} ${what} are shown.`
    : "";
}

export type Listed<T> = { items: T[]; truncated: boolean };

/**
 * Every item of a list, page after page, until it ends or `max` items are
 * read. `page` asks for one page of at most `pageSize` items from `pageToken`
 * and returns its items and the next token ("" at the end). `truncated` is
 * true when the list went on past `max`.
 */
export async function listAll<T>(
  page: (pageToken: string, pageSize: number) => Promise<{ items: T[]; next: string }>,
  max: number,
): Promise<Listed<T>> {
  const items: T[] = [];
  let pageToken = "";
  do {
    const res = await page(pageToken, Math.min(PAGE_SIZE, max - items.length));
    items.push(...res.items);
    pageToken = res.next;
  } while (pageToken && items.length < max);
  if (!pageToken) return { items, truncated: false };
  // A full last page may still carry a token: one item more tells whether the list goes on.
  const probe = await page(pageToken, 1);
  return { items, truncated: probe.items.length > 0 };
}

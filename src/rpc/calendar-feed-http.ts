import {
  type CalendarFeedRow,
  calendarFeedBookings,
  calendarFeedSubject,
  findActiveCalendarFeed,
} from "../db/calendar-feeds.js";
import { rejectionFromDatabase } from "../db/errors.js";
import type { Queryable } from "../db/pool.js";
import {
  FEED_AHEAD_MS,
  FEED_PAST_MS,
  type FeedBooking,
  feedStatuses,
  MAX_FEED_EVENTS,
  renderCalendarFeedInTurns,
} from "../domain/calendar-feed.js";
import { clipText, Rejection } from "../domain/rejection.js";
import { log } from "../log.js";
import { Turns } from "../turns.js";
import { type NodeRequest, type NodeResponse, writeConnectError } from "./http.js";
import { rateLimited, rateLimitFields } from "./rate-limit.js";
import type { RateLimiter } from "./rate-limiter.js";

/**
 * iCalendar feeds, `GET /v1/feeds/<secret>.ics`, made by
 * CalendarFeedService. A calendar app sends no Authorization header: the
 * secret in the path is the credential, so an unknown or revoked one gets
 * the same bare 404 as a path that never existed. Every other error is
 * the RPCs' JSON error with its reason, written by writeConnectError:
 * another method than GET or HEAD is 405 MALFORMED_REQUEST, a refusal of
 * the rate limit 429 RATE_LIMITED, and a failure 503 UNAVAILABLE (the
 * database unreachable, busy or past a time limit) or 500 INTERNAL.
 *
 * A feed is rate limited as an API key is: each fetch takes a token from
 * the feed's own bucket (at the configured per-key default) and from its
 * tenant's, before any of the feed's bookings are read. Every answer for a
 * live feed carries the RateLimit fields; a refusal has Retry-After too,
 * which calendar apps honour.
 */
export const CALENDAR_FEED_PATH = "/v1/feeds/";

const SECRET = /^(hfcal_[A-Za-z0-9_-]{43})(?:\.ics)?$/;

/**
 * `path` with whatever looks like a feed's secret cut to its prefix, for a
 * log line about a path that is not quite a feed's (`//v1/feeds/hfcal_…`,
 * `/V1/feeds/…`): it may still hold a live one.
 */
export function withoutFeedSecrets(path: string): string {
  return path.replace(/hfcal_[A-Za-z0-9_-]*/g, "hfcal_…");
}

export function calendarFeedHandler(
  db: Queryable,
  limiter: RateLimiter,
): (req: NodeRequest, res: NodeResponse) => void {
  const renders = new Turns(MAX_CONCURRENT_FEED_RENDERS, MAX_WAITING_FEED_RENDERS);
  return (req, res) => {
    serve(req, res).catch((err: unknown) => {
      // Mapped as an RPC's failure is (toConnectError), and logged without
      // the URL: it holds the feed's secret.
      const fromDb = rejectionFromDatabase(err);
      if (fromDb?.reason === "UNAVAILABLE")
        log.warn("calendar feed: database unavailable", { err });
      else log.error("calendar feed failed", { err });
      if (res.headersSent) res.end();
      else writeConnectError(res, fromDb ?? new Rejection("INTERNAL", "internal error"));
    });
  };

  async function serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    if (req.method !== "GET" && req.method !== "HEAD") {
      // Whoever sends another method is a program, not a calendar app: it
      // gets the edge's JSON error with a reason, as a wrong RPC method does.
      res.setHeader("allow", "GET, HEAD");
      const method = clipText(req.method ?? "", 20);
      const hint = `${method} cannot read a calendar feed: use GET`;
      writeConnectError(res, new Rejection("MALFORMED_REQUEST", hint), 405);
      return;
    }
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    const secret = SECRET.exec(path.slice(CALENDAR_FEED_PATH.length))?.[1];
    const found = secret ? await findActiveCalendarFeed(db, secret) : undefined;
    const feed = found?.feed;
    if (!found || !feed) {
      plain(res, 404, "no such calendar feed\n");
      return;
    }
    const check = await limiter.take(feed.tenant_id, feed.id);
    const limitFields = Object.fromEntries(rateLimitFields(check));
    if (!check.allowed) {
      for (const [name, value] of Object.entries(limitFields)) res.setHeader(name, value);
      writeConnectError(res, rateLimited(check, "calendar feed"));
      return;
    }
    const subject = await calendarFeedSubject(db, feed);
    if (!subject) {
      plain(res, 404, "no such calendar feed\n", limitFields);
      return;
    }
    // Answers ended (a client gone while its fetch waited) get no render.
    let closed = false;
    res.once("close", () => {
      closed = true;
    });
    if (!(await renders.acquire())) {
      // Calendar apps fetch again later; what waits ahead is already
      // seconds of rendering.
      res.setHeader("retry-after", "10");
      for (const [name, value] of Object.entries(limitFields)) res.setHeader(name, value);
      const hint = "too many calendar feeds are being read at once: retry in a few seconds";
      writeConnectError(res, new Rejection("UNAVAILABLE", hint));
      return;
    }
    try {
      if (!closed) await answer(req, res, feed, found.now, subject, limitFields);
    } finally {
      renders.release();
    }
  }

  async function answer(
    req: NodeRequest,
    res: NodeResponse,
    feed: CalendarFeedRow,
    now: Date,
    subject: { name: string; timeZone: string },
    limitFields: Record<string, string>,
  ): Promise<void> {
    const nowMs = now.getTime();
    const window = { fromMs: nowMs - FEED_PAST_MS, toMs: nowMs + FEED_AHEAD_MS };
    const options = { freeBusy: feed.free_busy, includeHolds: feed.include_holds };
    const rows = await calendarFeedBookings(db, feed, {
      ...window,
      // One more than the cap tells whether the cap cut the list.
      limit: MAX_FEED_EVENTS + 1,
      statuses: feedStatuses(options),
    });
    const bookings: FeedBooking[] = rows.slice(0, MAX_FEED_EVENTS).map((r) => ({
      id: r.id,
      status: r.status,
      startMs: r.start_time.getTime(),
      endMs: r.end_time.getTime(),
      createMs: r.create_time.getTime(),
      updateMs: r.update_time.getTime(),
      expireMs: r.expire_time?.getTime() ?? null,
      attendee: r.attendee as FeedBooking["attendee"],
      cancelReason: r.cancel_reason,
      serviceName: r.service_name,
      resourceName: r.resource_name,
      timeZone: r.time_zone,
    }));
    const text = await renderCalendarFeedInTurns(
      { ...subject, ...window, truncated: rows.length > MAX_FEED_EVENTS },
      bookings,
      options,
    );
    res.writeHead(200, {
      ...limitFields,
      "content-type": "text/calendar; charset=utf-8",
      "content-length": Buffer.byteLength(text),
      // Whoever has the URL may read it; shared caches should not keep it.
      "cache-control": "private, max-age=60",
      "x-robots-tag": "noindex",
    });
    if (req.method === "HEAD") res.end();
    else res.end(text);
  }
}

/**
 * Feeds read and rendered at once; other fetches wait their turn. However
 * many arrive together, only this many renders take turns on the event
 * loop with every other request (renderCalendarFeedInTurns), and only this
 * many feeds' rows and text are held in memory.
 */
export const MAX_CONCURRENT_FEED_RENDERS = 2;
/** Fetches that may wait for a turn; beyond them a fetch is 503 UNAVAILABLE. */
export const MAX_WAITING_FEED_RENDERS = 200;

function plain(
  res: NodeResponse,
  status: number,
  body: string,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, { ...headers, "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}

import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type Event,
  EventSchema,
  type EventService,
  type WatchEventsRequest,
} from "../../gen/holdfast/v1/event_pb.js";
import { type EventFilter, type OutboxEvent, outboxBounds, readEventPage } from "../db/outbox.js";
import type { Queryable } from "../db/pool.js";
import {
  BEGINNING,
  cursorPosition,
  EVENT_TYPES,
  invalidCursor,
  isAfter,
  isEventType,
  type Position,
} from "../domain/events.js";
import { Rejection } from "../domain/rejection.js";
import {
  type CursorCipher,
  decodeCursor,
  type EventCursors,
  encodeCursor,
} from "../events/cursors.js";
import type { EventFeed, Subscription } from "../events/feed.js";
import { type Keyring, principalOf } from "./auth.js";
import { pageSizeOf } from "./paging.js";
import * as v from "./validate.js";

/**
 * Events a stream reads from the table at a time while it catches up: a
 * page is the stream's own memory (live events are shared by all streams),
 * at most about 2 MB with the largest metadata.
 */
const CATCH_UP_PAGE = 100;
/**
 * ListEvents' pages: at most the catch-up page, so one answer is at most
 * about 2 MB too (a larger `page_size` is lowered to it, as on every list).
 */
const EVENT_PAGES = { defaultSize: 100, maxSize: CATCH_UP_PAGE };

const filterSchema = v
  .message<{ types: string[]; resourceIds: string[]; serviceIds: string[] }>()
  .transform((f, ctx): EventFilter => {
    const types = f?.types ?? [];
    types.forEach((t, i) => {
      if (!isEventType(t)) {
        ctx.addIssue({
          code: "custom",
          path: ["types", i],
          message: `is not an event type; types are ${EVENT_TYPES.join(", ")}`,
        });
      }
    });
    for (const list of ["resourceIds", "serviceIds"] as const) {
      if ((f?.[list].length ?? 0) > 100)
        ctx.addIssue({ code: "custom", path: [list], message: "must list at most 100 ids" });
    }
    return { types, resourceIds: f?.resourceIds ?? [], serviceIds: f?.serviceIds ?? [] };
  });

/**
 * WatchEvents' and ListEvents' shared fields. `after` has no length limit of
 * its own: any text that is not a cursor is INVALID_CURSOR (see positionOf),
 * however long.
 */
const readSchema = z.object({ filter: filterSchema, after: z.string() });

/** An outbox event as its tenant reads it, with the cursor `cipher` (the tenant's) makes. */
export function eventOf(e: OutboxEvent, cipher: CursorCipher): Event {
  return fromJson(EventSchema, {
    ...e.payload,
    id: e.eventId,
    type: e.type,
    occurTime: e.occurTime.toISOString(),
    cursor: encodeCursor(e.position, cipher),
  } as JsonObject);
}

export type StreamLimits = {
  /** Live events a stream may have queued before it falls back to reading the table. */
  buffer: number;
  /** How long a stream may stay behind before it is closed with CONSUMER_TOO_SLOW. */
  maxLagMs: number;
  /** Streams a tenant may have open on this instance; one more is TOO_MANY_STREAMS. */
  perTenant: number;
  /**
   * Streams this instance serves at once, all tenants together; one more is
   * TOO_MANY_STREAMS too: each holds what it has yet to write, up to the
   * lag it is allowed, so their number bounds the instance's memory.
   */
  total: number;
  /**
   * How long a stream may stay silent before it sends its cursor, when that
   * has moved on past what it last sent (a heartbeat; see `messages`).
   */
  heartbeatMs: number;
};

/** What a WatchEvents stream sends: an event with its cursor, or a heartbeat's cursor alone. */
export type StreamMessage = { event?: Event; cursor: string };

/**
 * A WatchEvents stream: every matching event after its starting point,
 * replayed from the table and then live, until its signal aborts or the
 * feed stops.
 */
export type EventStream = AsyncIterable<Event> & {
  /**
   * The cursor a consumer that has received every event this stream has
   * yielded so far resumes from: past those events, and past every event of
   * its tenant the stream has read and skipped because its filter does not
   * match, up to where it has caught up with the outbox. Never past a
   * matching event it has not yet yielded, or one it is yielding (until the
   * consumer asks for the next), and never at another tenant's event (its
   * moves would tell when others wrote). So a filtered stream's cursor keeps
   * up with its tenant's events, as a poller's `next_cursor` does, and never
   * falls behind what retention deletes of them while the stream reads on.
   */
  cursor(): string;
  /**
   * The events, each with its cursor, and between them heartbeats: after
   * `heartbeatMs` without a message, the stream's cursor alone if it has
   * moved on since the last cursor sent (or the request named none: a
   * stream from now sends where it starts). So a consumer whose filter
   * skips everything for longer than the retention, and whose connection
   * then drops without an error to carry a cursor, resumes from past the
   * skipped events rather than from an expired cursor.
   */
  messages(): AsyncGenerator<StreamMessage>;
};

/**
 * Opens a WatchEvents stream of a tenant, for the RPC and for the
 * Server-Sent Events endpoint alike: checks the request and fixes where the
 * stream starts (a bad filter or cursor is refused before anything is
 * sent), then returns the stream.
 */
export type OpenEventStream = (
  tenantId: string,
  req: WatchEventsRequest,
  signal: AbortSignal,
) => Promise<EventStream>;

/** The position a cursor names (see cursorPosition); `otherwise` when there is none. */
async function positionOf(
  db: Queryable,
  tenantId: string,
  cursor: string,
  cipher: CursorCipher,
  otherwise: () => Promise<Position>,
): Promise<Position> {
  if (cursor === "") return otherwise();
  // Text of any other form, or length, is refused before any query.
  const p = decodeCursor(cursor, cipher);
  if (p === undefined) throw invalidCursor();
  return cursorPosition(p, await outboxBounds(db, tenantId));
}

/** How far a stream has got, for its cursor. */
class Progress {
  /**
   * Every matching event up to here has been yielded, and the consumer has
   * asked for the next since: the last event sent, or where a catch-up page
   * that was not full read up to.
   */
  cursor: Position;
  /** The stream's subscription while it follows the live feed. */
  live: Subscription | undefined;

  constructor(start: Position) {
    this.cursor = start;
  }

  /** The cursor, or further where the live feed has nothing left for the stream to send. */
  reached(): Position {
    const caughtUp = this.live?.caughtUp();
    return caughtUp !== undefined && isAfter(caughtUp, this.cursor) ? caughtUp : this.cursor;
  }
}

/**
 * `stopping` aborts when the server begins a graceful stop: every stream
 * then ends with Unavailable (reason UNAVAILABLE, ErrorInfo metadata
 * `cursor`), which consumers treat as "resume from your cursor elsewhere",
 * rather than ending as if nothing more would come. A stream whose own
 * `signal` aborted too just ends: the Server-Sent Events handler's includes
 * the stop, as its clients resume with Last-Event-ID without being told.
 */
export function eventStreams(
  db: Queryable,
  feed: EventFeed,
  limits: StreamLimits,
  stopping: AbortSignal,
  cursors: EventCursors,
): OpenEventStream {
  // Streams open per tenant, each counted from its opening until its end.
  const open = new Map<string, number>();
  let openInAll = 0;
  return async (tenantId, req, signal) => {
    const { filter } = v.parseRequest(readSchema, req);
    const release = reserve(tenantId, signal);
    try {
      const cipher = cursors.of(tenantId);
      // "From now" is the tenant's newest event (see OutboxBounds' `own`).
      const start = await positionOf(db, tenantId, req.after, cipher, async () =>
        req.fromBeginning ? BEGINNING : (await outboxBounds(db, tenantId)).own,
      );
      const at = new Progress(start);
      const events = follow(tenantId, filter, at, signal, cipher, release);
      const cursor = () => encodeCursor(at.reached(), cipher);
      // A consumer that named where to start has a cursor already.
      const given = req.after !== "" || req.fromBeginning ? encodeCursor(start, cipher) : undefined;
      return Object.assign(events, {
        cursor,
        messages: () => heartbeating(events, cursor, limits.heartbeatMs, given),
      });
    } catch (err) {
      release();
      throw err;
    }
  };

  /**
   * Counts a stream of `tenantId` until the returned release, or `signal`
   * (which aborts when its call ends, however it ends), whichever comes
   * first: a stream never iterated is not counted for ever.
   */
  function reserve(tenantId: string, signal: AbortSignal): () => void {
    const count = open.get(tenantId) ?? 0;
    if (count >= limits.perTenant) {
      throw new Rejection(
        "TOO_MANY_STREAMS",
        `this tenant has ${count} event streams open on this instance, as many as it may (HOLDFAST_STREAMS_PER_TENANT); close one, or poll with ListEvents`,
        { metadata: { limit: String(limits.perTenant) } },
      );
    }
    if (openInAll >= limits.total) {
      throw new Rejection(
        "TOO_MANY_STREAMS",
        `this instance has ${openInAll} event streams open, as many as it serves (HOLDFAST_STREAMS_MAX); retry later or on another instance, or poll with ListEvents`,
        { metadata: { limit: String(limits.total), scope: "instance" } },
      );
    }
    open.set(tenantId, count + 1);
    openInAll++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      openInAll--;
      signal.removeEventListener("abort", release);
      const left = (open.get(tenantId) ?? 1) - 1;
      if (left > 0) open.set(tenantId, left);
      else open.delete(tenantId);
    };
    if (signal.aborted) release();
    else signal.addEventListener("abort", release, { once: true });
    return release;
  }

  async function* follow(
    tenantId: string,
    filter: EventFilter,
    at: Progress,
    signal: AbortSignal,
    cipher: CursorCipher,
    release: () => void,
  ): AsyncGenerator<Event> {
    try {
      // Since when the stream has been behind the live feed, if it is.
      let behindSince: number | undefined;
      const ended = AbortSignal.any([signal, stopping]);
      streaming: while (!ended.aborted) {
        // Listen first, then catch up from the table: an event is either read
        // by the catch-up or queued live (or both; the cursor drops repeats).
        const live = await feed.subscribe(tenantId, filter, limits.buffer);
        try {
          for (;;) {
            if (ended.aborted) break streaming;
            const { events: page, ...bounds } = await readEventPage(db, {
              tenantId,
              after: at.cursor,
              filter,
              limit: CATCH_UP_PAGE,
            });
            // Retention may have passed the cursor since it was checked (a
            // slow catch-up from an old cursor): the page would start after
            // the deleted events without a word. CURSOR_EXPIRED instead.
            cursorPosition(at.cursor, bounds);
            live.replaying(page);
            for (const e of page) {
              yield eventOf(e, cipher);
              live.replayed();
              at.cursor = e.position;
              if (behindSince !== undefined && Date.now() - behindSince > limits.maxLagMs) {
                throw new Rejection(
                  "CONSUMER_TOO_SLOW",
                  `the stream stayed behind for more than ${limits.maxLagMs} ms; resume from the cursor`,
                  { metadata: { cursor: encodeCursor(at.cursor, cipher) } },
                );
              }
            }
            if (page.length < CATCH_UP_PAGE) {
              // Every matching event up to the head this read saw was on the
              // page: the stream has read past the others, as a short
              // ListEvents page has, up to the tenant's newest event. Live
              // events before it are repeats.
              if (isAfter(bounds.own, at.cursor)) at.cursor = bounds.own;
              break;
            }
          }
          live.replaying([]);
          at.live = live;
          behindSince = undefined;
          for (;;) {
            const e = await live.next(ended);
            if (live.overflowedAt !== undefined) {
              // More arrived than the buffer holds: catch up from the table
              // again, and close the stream if that takes too long. It has
              // been behind since its queue filled, which may be long before
              // this resumed (a consumer that paused).
              behindSince ??= live.overflowedAt;
              break;
            }
            if (!e) break streaming;
            if (isAfter(e.position, at.cursor)) {
              yield eventOf(e, cipher);
              at.cursor = e.position;
            }
            live.done();
          }
        } finally {
          // However this subscription ends, the stream keeps how far it got
          // through the feed (no further, if it ends inside a yield).
          at.cursor = at.reached();
          at.live = undefined;
          live.close();
        }
      }
      if (stopping.aborted && !signal.aborted) {
        throw new Rejection(
          "UNAVAILABLE",
          "the server is stopping; once you have processed the events received, resume from the cursor",
          { metadata: { cursor: encodeCursor(at.cursor, cipher) } },
        );
      }
    } finally {
      release();
    }
  }
}

/**
 * `events` with their cursors, and `cursor()` alone whenever the stream has
 * been silent for `everyMs` and it differs from the last cursor sent
 * (`sent`). It is read only while the next event has been asked for, when
 * the stream's cursor may be past the events sent but never past one not
 * yet sent (see EventStream's `cursor`).
 */
async function* heartbeating(
  events: AsyncIterator<Event>,
  cursor: () => string,
  everyMs: number,
  sent: string | undefined,
): AsyncGenerator<StreamMessage> {
  let next: Promise<IteratorResult<Event>> | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    for (;;) {
      next ??= events.next();
      const silent = new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), everyMs);
      });
      const got = await Promise.race([next, silent]);
      clearTimeout(timer);
      if (got === undefined) {
        const at = cursor();
        if (at !== sent) {
          sent = at;
          yield { cursor: at };
        }
        continue;
      }
      next = undefined;
      if (got.done) return;
      sent = got.value.cursor;
      yield { event: got.value, cursor: sent };
    }
  } finally {
    clearTimeout(timer);
    if (next === undefined) await events.return?.();
    else {
      // Still waiting for an event: the stream ends when its signal aborts
      // (the call's, which ends with this); its end is queued behind that.
      next.catch(() => {});
      events.return?.().catch(() => {});
    }
  }
}

/**
 * EventService: booking events from the outbox, for push (WatchEvents) and
 * pull (ListEvents) consumers. From any cursor, every later event arrives
 * exactly once, in commit-safe order (see src/domain/events.ts).
 */
export function eventService(
  db: Queryable,
  open: OpenEventStream,
  keyring: Keyring,
  cursors: EventCursors,
): ServiceImpl<typeof EventService> {
  return {
    async *watchEvents(req, ctx) {
      // A key revoked while its stream is open ends the stream.
      const revocation = keyring.revocation(ctx.requestHeader.get("authorization"));
      try {
        const signal = AbortSignal.any([ctx.signal, revocation.signal]);
        const events = await open(principalOf(ctx).tenantId, req, signal);
        for await (const message of events.messages()) {
          // Heartbeats only to a consumer that asked for them.
          if (message.event || req.heartbeats) yield message;
        }
        // The stream ended because a signal aborted: the call's deadline
        // passed (or the caller left), or the key was revoked. Say so; ending
        // with OK would tell the consumer there is nothing more to read.
        if (signal.aborted) throw signal.reason;
      } finally {
        revocation.stop();
      }
    },

    async listEvents(req, ctx) {
      const tenantId = principalOf(ctx).tenantId;
      const f = v.parseRequest(readSchema, req);
      const limit = pageSizeOf(req.pageSize, EVENT_PAGES);
      const cipher = cursors.of(tenantId);
      // Text that is not a cursor is refused before any query.
      const after = req.after === "" ? BEGINNING : decodeCursor(req.after, cipher);
      if (after === undefined) throw invalidCursor();
      // One statement reads the page and the bounds the cursor is checked
      // against (see cursorPosition); the page of a cursor refused is
      // dropped (it holds only this tenant's events). From one snapshot, a
      // prune cannot pass the cursor between the check and the read.
      const { events, ...bounds } = await readEventPage(db, {
        tenantId,
        after,
        filter: f.filter,
        limit,
      });
      if (req.after !== "") cursorPosition(after, bounds);
      // A full page resumes after its last event. A shorter one holds every
      // matching event up to the head its read saw, so the next page starts
      // at the tenant's newest event before that head: past its events that
      // did not match, so a filtered poller's cursor keeps up with its
      // tenant's events and never falls behind what retention deletes of
      // them, and no page reads the same events again. Never the head
      // itself: it moves when other tenants write (see OutboxBounds).
      const last = events[events.length - 1];
      const next = last && events.length === limit ? last.position : bounds.own;
      // (`own` never moves back, so `next` is never before `after`; kept safe anyway.)
      return {
        events: events.map((e) => eventOf(e, cipher)),
        nextCursor: encodeCursor(isAfter(next, after) ? next : after, cipher),
      };
    },
  };
}

import { Rejection } from "./rejection.js";

/** Every event type the outbox carries. */
export const EVENT_TYPES = [
  "booking.held",
  "booking.confirmed",
  "booking.cancelled",
  "booking.expired",
  "booking.rescheduled",
  "booking.completed",
  "booking.no_show",
  "booking.hold_extended",
  "webhook.disabled",
] as const;

export type EventType = (typeof EVENT_TYPES)[number];

export function isEventType(t: string): t is EventType {
  return (EVENT_TYPES as readonly string[]).includes(t);
}

/**
 * A position in the outbox: the writing transaction's id (xid8) and the
 * event's sequence number within the table. Readers only take events of
 * transactions older than every transaction still running, so ordering by
 * (xid, seq) never skips a transaction that commits late: by the time any
 * reader can see past a position, every event before it is visible.
 */
export type Position = { xid: bigint; seq: bigint };

export const BEGINNING: Position = { xid: 0n, seq: 0n };

/**
 * Before a tenant's first event: where a tenant without events reads on
 * from. Unlike BEGINNING it expires once retention deletes events of its
 * tenant, so a consumer that returns after its first events were deleted
 * learns it missed them. (No transaction has xid 1.)
 */
export const BEFORE_FIRST: Position = { xid: 1n, seq: 0n };

export function isAfter(a: Position, b: Position): boolean {
  return a.xid > b.xid || (a.xid === b.xid && a.seq > b.seq);
}

/**
 * What bounds the cursors Holdfast has issued to a tenant, read in one
 * query when a cursor comes back: `head` is the outbox's "now" (the oldest
 * transaction still running; every event readable so far is before it),
 * `lastSeq` the highest sequence number the outbox has handed out (to any
 * event, even one not yet readable), `pruned` the newest position of the
 * tenant's events retention deleted, `own` the tenant's newest event before
 * `head` (BEFORE_FIRST if it has none). For the tenant's events, reading on
 * from `own` is reading on from `head`: every transaction before `head` has
 * ended, so none of its events can come between. A tenant is given `own`,
 * never `head`: the head moves whenever any tenant writes, and a tenant
 * comparing the cursors it was given would learn when others did.
 */
export type OutboxBounds = {
  head: Position;
  lastSeq: bigint;
  pruned: Position | undefined;
  own: Position;
};

/**
 * The position a cursor names, as its tenant's cipher opened it (undefined:
 * not a cursor; see src/events/cursors.ts). INVALID_CURSOR for one Holdfast
 * did not issue to this tenant: malformed, another tenant's or made up (it opens
 * to a random position, all but surely out of bounds; were it not, it would
 * still read only this tenant's events), ahead of the head, or with a sequence number the outbox
 * has not handed out. Every cursor issued (an event's of its tenant, or
 * BEFORE_FIRST; an earlier version also issued the head, with sequence
 * number 0) is at or before the
 * head as it was then, with a sequence number at most the last one handed
 * out then; neither bound ever moves back, so a cursor from any instance
 * compared with bounds read after it arrived is never refused. One beyond
 * the head would silently yield nothing until the outbox caught up; one
 * with an inflated sequence number names a place in its transaction's
 * events that no event has. CURSOR_EXPIRED when retention has deleted
 * events of the tenant after it (others' deletions do not matter: the
 * cursor reads only its tenant's), except for BEGINNING: "from the oldest event", which
 * retention cannot pass (a stream from the beginning that ended before its
 * first event names it as its cursor).
 */
export function cursorPosition(p: Position | undefined, bounds: OutboxBounds): Position {
  if (!p || isAfter(p, bounds.head) || p.seq > bounds.lastSeq) throw invalidCursor();
  if (bounds.pruned && isAfter(bounds.pruned, p) && isAfter(p, BEGINNING)) {
    throw new Rejection(
      "CURSOR_EXPIRED",
      "events after this cursor have been deleted by retention; start over with ListEvents",
    );
  }
  return p;
}

/**
 * The refusal of a cursor Holdfast did not issue to this tenant, whatever
 * is wrong with it (any length, any form).
 */
export function invalidCursor(): Rejection {
  return new Rejection("INVALID_CURSOR", "the cursor is not one Holdfast issued", {
    fieldViolations: [
      // One description for all: which check refused it would tell a
      // prober about the outbox's bounds.
      { field: "after", description: "is not a cursor of this tenant's events" },
    ],
  });
}

import type { JsonObject } from "@bufbuild/protobuf";
import { BEFORE_FIRST, isAfter, type OutboxBounds, type Position } from "../domain/events.js";
import type { Queryable } from "./pool.js";

/** One committed event, as stored. */
export type OutboxEvent = {
  position: Position;
  tenantId: string;
  eventId: string;
  type: string;
  occurTime: Date;
  bookingId: string | null;
  resourceId: string | null;
  serviceId: string | null;
  /** holdfast.v1.Event fields as protobuf JSON: booking, previous*, webhookId, detail. */
  payload: JsonObject;
};

export type EventFilter = {
  types: readonly string[];
  resourceIds: readonly string[];
  serviceIds: readonly string[];
};

type Row = Omit<OutboxEvent, "position"> & { xid: string; seq: string };

const COLUMNS = `xid::text AS xid, seq::text AS seq, tenant_id AS "tenantId", event_id AS "eventId", type,
  occur_time AS "occurTime", booking_id AS "bookingId", resource_id AS "resourceId", service_id AS "serviceId", payload`;

function eventOf(r: Row): OutboxEvent {
  const { xid, seq, ...rest } = r;
  return { position: { xid: BigInt(xid), seq: BigInt(seq) }, ...rest };
}

type ReadOptions = {
  tenantId: string | undefined;
  after: Position;
  filter: EventFilter | undefined;
  limit: number;
};

/** The conditions and order of every read: matching events after `after`, readable as of `head`. */
function readQuery(opts: ReadOptions, head: string): { where: string; values: unknown[] } {
  const f = opts.filter;
  return {
    where: `${opts.tenantId === undefined ? "$1::text IS NULL" : "tenant_id = $1"}
             AND (xid, seq) > ($2::xid8, $3::bigint)
             AND xid < ${head}
             AND (cardinality($4::text[]) = 0 OR type = ANY ($4))
             AND (cardinality($5::text[]) = 0 OR resource_id = ANY ($5)
                  OR payload->>'previousResourceId' = ANY ($5))
             AND (cardinality($6::text[]) = 0 OR service_id = ANY ($6))
           ORDER BY outbox.xid, outbox.seq -- the columns, not the text aliases above
           LIMIT $7`,
    values: [
      opts.tenantId ?? null,
      opts.after.xid.toString(),
      opts.after.seq.toString(),
      [...(f?.types ?? [])],
      [...(f?.resourceIds ?? [])],
      [...(f?.serviceIds ?? [])],
      opts.limit,
    ],
  };
}

/**
 * Events after `after` in (xid, seq) order, of transactions older than
 * every running one (so none can still appear before the last returned),
 * for one tenant (or all, for the in-process fan-out), matching `filter`.
 */
export async function readEvents(q: Queryable, opts: ReadOptions): Promise<OutboxEvent[]> {
  const { where, values } = readQuery(opts, "pg_snapshot_xmin(pg_current_snapshot())");
  const { rows } = await q.query<Row>({
    name: opts.tenantId === undefined ? "read_events_all" : "read_events",
    text: `SELECT ${COLUMNS} FROM outbox WHERE ${where}`,
    values,
  });
  return rows.map(eventOf);
}

/**
 * A tenant's page of events, as readEvents, with the outbox's bounds (see
 * outboxBounds) read by the same statement: its `head` is the one the page
 * was read up to (the oldest transaction running in its snapshot, seq 0),
 * and `own` the tenant's newest event before it. When fewer than `limit`
 * came back, every matching event between `after` and `head` is among them,
 * so reading on from `own` (or `head`: for this tenant's events the two
 * are the same place) misses nothing and repeats nothing, and skips the
 * events that did not match. The head must
 * come from the very snapshot that chose the events: one read by a later
 * query could be past events that became readable in between. So must the
 * retention marker a cursor is checked against: checked by an earlier
 * query, it could be passed by a prune that commits before the page is
 * read, which would then start after deleted events without a word.
 */
export async function readEventPage(
  q: Queryable,
  opts: ReadOptions & { tenantId: string },
): Promise<{ events: OutboxEvent[] } & OutboxBounds> {
  const { where, values } = readQuery(opts, "h.head");
  type PageRow = BoundsRow & { [K in keyof Row]: Row[K] | null };
  // One row even when no event matches (the event's columns then null).
  const { rows } = await q.query<PageRow>({
    name: "read_event_page",
    text: `WITH h AS MATERIALIZED (SELECT ${BOUNDS})
           SELECT ${BOUNDS_COLUMNS}, e.*
           FROM h LEFT JOIN LATERAL (SELECT ${COLUMNS} FROM outbox WHERE ${where}) e ON true
           ORDER BY e.xid::xid8, e.seq::bigint`,
    values,
  });
  const events: OutboxEvent[] = [];
  for (const row of rows) {
    const {
      head: _,
      last_seq: _s,
      pruned_xid: _x,
      pruned_seq: _q,
      own_xid: _o,
      own_seq: _p,
      ...r
    } = row;
    if (r.xid !== null) events.push(eventOf(r as Row));
  }
  return { events, ...boundsOf(rows[0] as BoundsRow) };
}

/** "Now": events of transactions that have not finished yet come after it, all others before. */
export async function currentPosition(q: Queryable): Promise<Position> {
  const { rows } = await q.query<{ xid: string }>(
    "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid",
  );
  return { xid: BigInt((rows[0] as { xid: string }).xid), seq: 0n };
}

/**
 * A tenant's bounds of the outbox (see OutboxBounds): its head (as
 * currentPosition), the last sequence number handed out (its identity
 * sequence's, whether or not that event committed; 0 when none was), the
 * newest position of the tenant's events retention has deleted, if any, and
 * the tenant's newest event before the head. What a cursor that comes back
 * is checked against, and where a stream "from now" starts. One query, so
 * they are read after the cursor arrived.
 */
export async function outboxBounds(q: Queryable, tenantId: string): Promise<OutboxBounds> {
  const { rows } = await q.query<BoundsRow>({
    name: "outbox_bounds",
    text: `SELECT ${BOUNDS_COLUMNS} FROM (SELECT ${BOUNDS}) h`,
    values: [tenantId],
  });
  return boundsOf(rows[0] as BoundsRow);
}

/** OutboxBounds' select list for the tenant $1 (head as xid8, the others as stored). */
const BOUNDS = `pg_snapshot_xmin(pg_current_snapshot()) AS head,
  coalesce(pg_sequence_last_value(pg_get_serial_sequence('outbox', 'seq')), 0) AS last_seq,
  p.xid AS pruned_xid, p.seq AS pruned_seq, o.xid AS own_xid, o.seq AS own_seq
  FROM (SELECT) AS nothing
  LEFT JOIN outbox_pruned_tenants p ON p.tenant_id = $1
  LEFT JOIN LATERAL (
    SELECT xid, seq FROM outbox
    WHERE tenant_id = $1 AND xid < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY xid DESC, seq DESC LIMIT 1) o ON true`;

/** BOUNDS' columns as text, from the relation `h`. */
const BOUNDS_COLUMNS = `h.head::text AS head, h.last_seq::text AS last_seq,
  h.pruned_xid::text AS pruned_xid, h.pruned_seq::text AS pruned_seq,
  h.own_xid::text AS own_xid, h.own_seq::text AS own_seq`;

type BoundsRow = {
  head: string;
  last_seq: string;
  pruned_xid: string | null;
  pruned_seq: string | null;
  own_xid: string | null;
  own_seq: string | null;
};

function boundsOf(r: BoundsRow): OutboxBounds {
  const pruned =
    r.pruned_xid === null
      ? undefined
      : { xid: BigInt(r.pruned_xid), seq: BigInt(r.pruned_seq as string) };
  const newest =
    r.own_xid === null ? undefined : { xid: BigInt(r.own_xid), seq: BigInt(r.own_seq as string) };
  return {
    head: { xid: BigInt(r.head), seq: 0n },
    lastSeq: BigInt(r.last_seq),
    pruned,
    // The tenant's newest event, kept or deleted: once retention has
    // deleted all of them, the newest it deleted, never a place before it
    // (which would be expired).
    own: newest && (!pruned || isAfter(newest, pruned)) ? newest : (pruned ?? BEFORE_FIRST),
  };
}

/**
 * Deletes up to `limit` events older than `retentionMs`, oldest first, and
 * records the newest position deleted of each tenant whose events it
 * deleted. Returns how many were deleted. Only readable events (of
 * transactions before the head) are deleted, however old: so no marker is
 * ever past the head, where a tenant's bounds (`own`) would be too, and a
 * cursor there would be refused as never issued.
 */
export async function pruneEvents(
  q: Queryable,
  retentionMs: number,
  limit: number,
): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM outbox WHERE seq IN (
         SELECT seq FROM outbox WHERE occur_time < now() - $1 * interval '1 millisecond'
           AND xid < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY xid, seq LIMIT $2)
       RETURNING tenant_id, xid, seq),
     newest AS (
       SELECT DISTINCT ON (tenant_id) tenant_id, xid, seq FROM gone
       ORDER BY tenant_id, xid DESC, seq DESC),
     saved AS (
       INSERT INTO outbox_pruned_tenants (tenant_id, xid, seq) SELECT tenant_id, xid, seq FROM newest
       ON CONFLICT (tenant_id) DO UPDATE SET xid = excluded.xid, seq = excluded.seq
         WHERE (outbox_pruned_tenants.xid, outbox_pruned_tenants.seq) < (excluded.xid, excluded.seq))
     SELECT count(*)::int AS n FROM gone`,
    [retentionMs, limit],
  );
  return rows[0]?.n ?? 0;
}

/** Records a webhook.disabled event (the only event without a booking). */
export async function recordWebhookDisabled(
  q: Queryable,
  tenantId: string,
  webhookId: string,
  detail: string,
): Promise<void> {
  await q.query(
    `INSERT INTO outbox (tenant_id, type, payload) VALUES ($1, 'webhook.disabled', jsonb_build_object('webhookId', $2::text, 'detail', $3::text))`,
    [tenantId, webhookId, detail],
  );
}

/** The time span of the events retention has kept (both undefined when there are none). */
export async function outboxSpan(
  q: Queryable,
): Promise<{ oldest: Date | undefined; newest: Date | undefined }> {
  const { rows } = await q.query<{ oldest: Date | null; newest: Date | null }>(
    "SELECT min(occur_time) AS oldest, max(occur_time) AS newest FROM outbox",
  );
  return { oldest: rows[0]?.oldest ?? undefined, newest: rows[0]?.newest ?? undefined };
}

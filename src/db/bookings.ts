import type { JsonObject } from "@bufbuild/protobuf";
import type { ResourceSnapshot, ServiceSnapshot } from "../domain/booking.js";
import type { Policy } from "../domain/catalog.js";
import type { IdempotencyClaim, Outcome } from "./idempotency.js";
import type { Queryable } from "./pool.js";
import { traced } from "./trace-context.js";

/**
 * Bookings: the single-call write functions (src/db/functions/), and reads
 * that return protobuf JSON built by the same booking_json() the writes use.
 */

export type NewBooking = {
  tenantId: string;
  service: ServiceSnapshot;
  /** Candidates in order of preference; the first with room gets the booking. */
  resources: ResourceSnapshot[];
  startMs: number;
  endMs: number;
  /** null: book straight to CONFIRMED. */
  holdTtlMs: number | null;
  attendee: JsonObject;
  metadata: JsonObject;
};

const ms = (n: number) => `${n} milliseconds`;

export async function createBooking(
  q: Queryable,
  b: NewBooking,
  claim: IdempotencyClaim | undefined,
): Promise<Outcome> {
  // Named, so each connection parses and plans the call once.
  const { rows } = await traced(q).query<{ outcome: Outcome }>({
    name: "create_booking",
    text: `SELECT create_booking($1, $2, $3::text[], $4, $5::integer[], $6, $7, $8, $9::interval, $10::interval,
                                 $11::interval, $12::interval, $13::interval, $14::jsonb, $15::jsonb, $16, $17, $18,
                                 $19) AS outcome`,
    values: [b.tenantId, ...perRequest(b, claim)],
  });
  return (rows[0] as { outcome: Outcome }).outcome;
}

/**
 * create_booking's arguments after the tenant: the service, the candidate
 * resources ($3, $5) and one value for each of the remaining ones.
 */
function perRequest(b: NewBooking, claim: IdempotencyClaim | undefined) {
  const p = b.service.policy;
  return [
    b.service.id,
    b.resources.map((r) => r.id),
    b.service.revision,
    b.resources.map((r) => r.revision),
    b.service.policyVersion,
    new Date(b.startMs),
    new Date(b.endMs),
    ms(p.bufferBeforeMs),
    ms(p.bufferAfterMs),
    ms(p.minNoticeMs),
    p.maxAdvanceMs === null ? null : ms(p.maxAdvanceMs),
    b.holdTtlMs === null ? null : ms(b.holdTtlMs),
    b.attendee,
    b.metadata,
    claim?.method ?? null,
    claim?.key ?? null,
    claim?.hash ?? null,
    claim?.apiKeyId ?? null,
  ] as const;
}

/**
 * Several creates of one tenant, each naming one resource, as one
 * transaction and one commit (create_bookings): each is create_booking with
 * its resource as its only candidate, in order, and gets its own outcome,
 * in the same order; its events record its own `traceparent`, if it has
 * one. If the call fails, nothing of it was written.
 */
export async function createBookings(
  q: Queryable,
  tenantId: string,
  batch: readonly {
    booking: NewBooking;
    claim: IdempotencyClaim | undefined;
    traceparent?: string | undefined;
  }[],
): Promise<Outcome[]> {
  const args = batch.map(({ booking, claim }) => {
    if (booking.tenantId !== tenantId || booking.resources.length !== 1) {
      throw new Error("a batch is of one tenant's creates, each naming one resource");
    }
    return perRequest(booking, claim);
  });
  // Column k of the batch: argument k of every request.
  const column = (k: number) => args.map((a) => a[k]);
  const { rows } = await q.query<{ outcomes: Outcome[] }>({
    name: "create_bookings",
    text: `SELECT create_bookings($1, $2::text[], $3::text[], $4::integer[], $5::integer[], $6::integer[],
                                  $7::timestamptz[], $8::timestamptz[], $9::interval[], $10::interval[],
                                  $11::interval[], $12::interval[], $13::interval[], $14::jsonb, $15::jsonb,
                                  $16::text[], $17::text[], $18::bytea[], $19::text[], $20::text[])
                  AS outcomes`,
    values: [
      tenantId,
      args.map((a) => a[1][0]),
      column(0),
      column(2),
      args.map((a) => a[3][0]),
      ...[4, 5, 6, 7, 8, 9, 10, 11].map(column),
      // Attendees and metadata: one JSON array each (see 06_booking_batches.sql).
      JSON.stringify(column(12)),
      JSON.stringify(column(13)),
      ...[14, 15, 16].map(column),
      batch.some((c) => c.traceparent) ? batch.map((c) => c.traceparent ?? null) : null,
      column(17),
    ],
  });
  return (rows[0] as { outcomes: Outcome[] }).outcomes;
}

export type BookingAction = "confirm" | "extend" | "cancel" | "complete" | "no_show";

export async function changeBooking(
  q: Queryable,
  change: {
    tenantId: string;
    bookingId: string;
    action: BookingAction;
    ttlMs?: number | null;
    reason?: string;
  },
  claim: IdempotencyClaim | undefined,
): Promise<Outcome> {
  const { rows } = await traced(q).query<{ outcome: Outcome }>({
    name: "change_booking",
    text: "SELECT change_booking($1, $2, $3, $4::interval, $5, $6, $7, $8, $9) AS outcome",
    values: [
      change.tenantId,
      change.bookingId,
      change.action,
      change.ttlMs == null ? null : ms(change.ttlMs),
      change.reason ?? null,
      claim?.method ?? null,
      claim?.key ?? null,
      claim?.hash ?? null,
      claim?.apiKeyId ?? null,
    ],
  });
  return (rows[0] as { outcome: Outcome }).outcome;
}

/** A booking as protobuf JSON, if it exists in the tenant. */
export async function getBooking(
  q: Queryable,
  tenantId: string,
  id: string,
): Promise<JsonObject | undefined> {
  const { rows } = await q.query<{ booking: JsonObject }>(
    "SELECT booking_json(b) AS booking FROM bookings b WHERE b.tenant_id = $1 AND b.id = $2",
    [tenantId, id],
  );
  return rows[0]?.booking;
}

export type BookingFilter = {
  resourceId: string | undefined;
  serviceId: string | undefined;
  statuses: string[];
  startFromMs: number | null;
  startToMs: number | null;
  metadata: Record<string, string>;
};

/**
 * Bookings ordered by start time then id, after the (start, id) position of
 * the previous page. Status filters see lapsed holds as expired.
 */
export async function listBookings(
  q: Queryable,
  tenantId: string,
  f: BookingFilter,
  page: { after: { startMs: number; id: string } | undefined; limit: number },
): Promise<{ booking: JsonObject; startMs: number; id: string }[]> {
  const { rows } = await q.query<{ booking: JsonObject; start_time: Date; id: string }>(
    `SELECT booking_json(b) AS booking, b.start_time, b.id FROM bookings b
     WHERE b.tenant_id = $1
       AND ($2::text IS NULL OR b.resource_id = $2)
       AND ($3::text IS NULL OR b.service_id = $3)
       AND (cardinality($4::text[]) = 0
            OR (CASE WHEN b.status = 'held' AND b.expire_time <= now() THEN 'expired' ELSE b.status END) = ANY ($4))
       AND ($5::timestamptz IS NULL OR b.start_time >= $5)
       AND ($6::timestamptz IS NULL OR b.start_time < $6)
       AND b.metadata @> $7::jsonb
       AND ($8::timestamptz IS NULL OR (b.start_time, b.id) > ($8, $9::text))
     ORDER BY b.start_time, b.id
     LIMIT $10`,
    [
      tenantId,
      f.resourceId ?? null,
      f.serviceId ?? null,
      f.statuses,
      f.startFromMs === null ? null : new Date(f.startFromMs),
      f.startToMs === null ? null : new Date(f.startToMs),
      JSON.stringify(f.metadata),
      page.after ? new Date(page.after.startMs) : null,
      page.after?.id ?? null,
      page.limit,
    ],
  );
  return rows.map((r) => ({ booking: r.booking, startMs: r.start_time.getTime(), id: r.id }));
}

/** Marks up to `limit` lapsed holds expired (with their events); returns how many. */
export async function expireLapsedHolds(q: Queryable, limit: number): Promise<number> {
  const { rows } = await q.query<{ n: number }>("SELECT expire_lapsed_holds($1) AS n", [limit]);
  return rows[0]?.n ?? 0;
}

/** Blocks of live bookings near a range, with the database's clock and the catalog's current revisions. */
export type Occupancy = {
  nowMs: number;
  busy: { resourceId: string; start: number; end: number; bookingStart: number }[];
  resourceRevisions: Map<string, number>;
  serviceRevision: number | undefined;
};

/**
 * Everything ListSlots, alternatives and the fair pick read from the
 * database, in one round trip: now(), the blocks of HELD-unexpired and
 * CONFIRMED bookings of the resources overlapping [from, to), and the
 * revisions of the service and resources, to tell whether cached copies
 * are current. The booking `exceptId` (one being moved) is left out, as
 * its move leaves it out.
 */
export async function loadOccupancy(
  q: Queryable,
  tenantId: string,
  serviceId: string,
  resourceIds: readonly string[],
  from: number,
  to: number,
  exceptId?: string,
): Promise<Occupancy> {
  // One call of slot_occupancy (src/db/functions/07_slot_occupancy.sql),
  // whose plan each connection makes once; the blocks come as JSON, per
  // resource in the order asked, [[block starts], [block ends], [booking
  // starts]] in milliseconds after `from` (nulls for a resource without any).
  const ids = [...new Set(resourceIds)];
  const { rows } = await q.query<{
    now_ms: number;
    service_revision: number | null;
    revisions: Record<string, number>;
    busy: ([number[], number[], number[]] | [null, null, null])[] | null;
  }>({
    name: "slot_occupancy",
    text: "SELECT * FROM slot_occupancy($1, $2, $3::text[], $4, $5, $6)",
    values: [tenantId, serviceId, ids, new Date(from), new Date(to), exceptId ?? null],
  });
  const row = rows[0];
  if (!row) throw new Error("occupancy query returned no row");
  const busy: Occupancy["busy"] = [];
  (row.busy ?? []).forEach(([starts, ends, bookingStarts], r) => {
    const resourceId = ids[r] as string;
    if (!starts) return;
    for (let i = 0; i < starts.length; i++) {
      busy.push({
        resourceId,
        start: from + (starts[i] as number),
        end: from + (ends[i] as number),
        bookingStart: from + (bookingStarts[i] as number),
      });
    }
  });
  return {
    nowMs: row.now_ms,
    busy,
    resourceRevisions: new Map(Object.entries(row.revisions)),
    serviceRevision: row.service_revision ?? undefined,
  };
}

export type Move = {
  tenantId: string;
  bookingId: string;
  fromResourceId: string;
  service: ServiceSnapshot;
  resource: ResourceSnapshot;
  policy: Policy;
  startMs: number;
  endMs: number;
};

export async function rescheduleBooking(
  q: Queryable,
  m: Move,
  claim: IdempotencyClaim | undefined,
): Promise<Outcome> {
  const { rows } = await traced(q).query<{ outcome: Outcome }>({
    name: "reschedule_booking",
    text: `SELECT reschedule_booking($1, $2, $3, $4, $5, $6, $7, $8, $9::interval, $10::interval, $11::interval,
                                     $12::interval, $13, $14, $15, $16) AS outcome`,
    values: [
      m.tenantId,
      m.bookingId,
      m.fromResourceId,
      m.resource.id,
      m.service.revision,
      m.resource.revision,
      new Date(m.startMs),
      new Date(m.endMs),
      ms(m.policy.bufferBeforeMs),
      ms(m.policy.bufferAfterMs),
      ms(m.policy.minNoticeMs),
      m.policy.maxAdvanceMs === null ? null : ms(m.policy.maxAdvanceMs),
      claim?.method ?? null,
      claim?.key ?? null,
      claim?.hash ?? null,
      claim?.apiKeyId ?? null,
    ],
  });
  return (rows[0] as { outcome: Outcome }).outcome;
}

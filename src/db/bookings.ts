import type { JsonObject } from "@bufbuild/protobuf";
import type { ResourceSnapshot, ServiceSnapshot } from "../domain/booking.js";
import type { Policy, WeeklyWindow } from "../domain/catalog.js";
import type { IdempotencyClaim, Outcome } from "./idempotency.js";
import type { Queryable } from "./pool.js";

/**
 * Bookings: the single-call write functions of migration 0002, and reads
 * that return protobuf JSON built by the same booking_json() the writes use.
 */

/** The service and resource a booking names, read in one round trip. */
export async function loadBookingTarget(
  q: Queryable,
  tenantId: string,
  serviceId: string,
  resourceId: string,
): Promise<{ service: ServiceSnapshot | undefined; resource: ResourceSnapshot | undefined }> {
  const { rows } = await q.query<{
    service: (Omit<ServiceSnapshot, "policy"> & { policy: Policy }) | null;
    resource:
      | (Omit<ResourceSnapshot, "weeklySchedule"> & { weeklySchedule: WeeklyWindow[] | null })
      | null;
  }>(
    `SELECT
       (SELECT jsonb_build_object('id', s.id, 'active', s.active, 'revision', s.revision,
                 'policyVersion', s.policy_version, 'policy', p.policy, 'timeZone', p.time_zone,
                 'resourceIds', coalesce((SELECT jsonb_agg(sr.resource_id ORDER BY sr.position)
                                          FROM service_resources sr
                                          WHERE sr.tenant_id = s.tenant_id AND sr.service_id = s.id), '[]'))
        FROM services s
        JOIN policy_versions p ON p.tenant_id = s.tenant_id AND p.service_id = s.id AND p.version = s.policy_version
        WHERE s.tenant_id = $1 AND s.id = $2) AS service,
       (SELECT jsonb_build_object('id', r.id, 'active', r.active, 'revision', r.revision, 'capacity', r.capacity,
                 'timeZone', r.time_zone, 'weeklySchedule', r.weekly_schedule)
        FROM resources r WHERE r.tenant_id = $1 AND r.id = $3) AS resource`,
    [tenantId, serviceId, resourceId],
  );
  const row = rows[0];
  return { service: row?.service ?? undefined, resource: row?.resource ?? undefined };
}

export type NewBooking = {
  tenantId: string;
  service: ServiceSnapshot;
  resource: ResourceSnapshot;
  startMs: number;
  endMs: number;
  /** null: book straight to CONFIRMED. */
  holdTtlMs: number | null;
  attendee: JsonObject;
  metadata: JsonObject;
};

const SQLSTATE_STALE_CATALOG = "HF001";

/** The catalog changed between reading it and writing: read again and retry. */
export function isStaleCatalog(err: unknown): boolean {
  return (err as { code?: string })?.code === SQLSTATE_STALE_CATALOG;
}

const ms = (n: number) => `${n} milliseconds`;

export async function createBooking(
  q: Queryable,
  b: NewBooking,
  claim: IdempotencyClaim | undefined,
): Promise<Outcome> {
  const p = b.service.policy;
  // Named, so each connection parses and plans the call once.
  const { rows } = await q.query<{ outcome: Outcome }>({
    name: "create_booking",
    text: `SELECT create_booking($1, $2, $3, $4, $5, $6, $7, $8, $9::interval, $10::interval, $11::interval,
                                 $12::interval, $13::interval, $14::jsonb, $15::jsonb, $16, $17, $18) AS outcome`,
    values: [
      b.tenantId,
      b.service.id,
      b.resource.id,
      b.service.revision,
      b.resource.revision,
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
    ],
  });
  return (rows[0] as { outcome: Outcome }).outcome;
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
  const { rows } = await q.query<{ outcome: Outcome }>({
    name: "change_booking",
    text: "SELECT change_booking($1, $2, $3, $4::interval, $5, $6, $7, $8) AS outcome",
    values: [
      change.tenantId,
      change.bookingId,
      change.action,
      change.ttlMs == null ? null : ms(change.ttlMs),
      change.reason ?? null,
      claim?.method ?? null,
      claim?.key ?? null,
      claim?.hash ?? null,
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

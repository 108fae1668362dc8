/**
 * The data-scale scenario's data: a tenant of its own with `resources`
 * resources, `bookings` bookings over them and `events` outbox events, all
 * written set-based (INSERT ... SELECT generate_series) in a few
 * statements. The rows keep every constraint of the schema: a resource's
 * bookings are a day apart (the exclusion constraint), the past ones
 * completed or cancelled, the future ones confirmed or cancelled, none
 * held (so the sweeper has nothing of theirs to expire); events fall in
 * the last six days (inside the default 7-day retention, so pruning leaves
 * them) with transaction ids below the current one, as if written and
 * dispatched long ago.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";

export type ScaleSize = { resources: number; bookings: number; events: number };

export const FULL_SCALE: ScaleSize = { resources: 10_000, bookings: 1_000_000, events: 1_000_000 };

/** Loads the data; resolves with the tenant's id and how long each step took, in seconds. */
export async function loadScaleData(db: pg.ClientBase, size: ScaleSize) {
  const timings: Record<string, number> = {};
  const step = async (name: string, sql: string, values: unknown[] = []) => {
    const t0 = performance.now();
    const r = await db.query(sql, values);
    timings[name] = Math.round((performance.now() - t0) / 100) / 10;
    return r;
  };
  const suffix = randomBytes(4).toString("hex");
  const tenantId = `ten_scale${suffix}`;
  const serviceId = `svc_scale${suffix}`;
  await step("tenant", "INSERT INTO tenants (id, name) VALUES ($1, $2)", [
    tenantId,
    `bench-scale-${suffix}`,
  ]);
  await step(
    "resources",
    `INSERT INTO resources (tenant_id, id, name, kind, time_zone)
     SELECT $1, 'rsc_scale' || lpad(g::text, 8, '0'), 'Room ' || g, 'room', 'UTC'
     FROM generate_series(0, $2 - 1) g`,
    [tenantId, size.resources],
  );
  await step("service", "INSERT INTO services (tenant_id, id, name) VALUES ($1, $2, 'Scale')", [
    tenantId,
    serviceId,
  ]);
  // Booking g is the (g / resources)-th of resource (g % resources): one a
  // day per resource, at a time of day that varies by resource, from 60
  // days ago onwards.
  await step(
    "bookings",
    `INSERT INTO bookings (tenant_id, id, service_id, resource_id, start_time, end_time,
                           block_start, block_end, status, expire_time, policy_version, exclusive,
                           create_time, update_time)
     SELECT $1, 'bkg_scale' || lpad(to_hex(g), 12, '0'), $2,
            'rsc_scale' || lpad((g % $3)::text, 8, '0'), s, s + interval '30 minutes',
            s, s + interval '30 minutes',
            CASE WHEN g % 7 = 0 THEN 'cancelled' WHEN s < now() THEN 'completed' ELSE 'confirmed' END,
            NULL, 1, true, s - interval '7 days', s - interval '7 days'
     FROM generate_series(0, $4 - 1) g,
          LATERAL (SELECT date_trunc('day', now()) - interval '60 days'
                          + (g / $3) * interval '1 day'
                          + (g % 28) * interval '30 minutes' + interval '6 hours' AS s) t`,
    [tenantId, serviceId, size.resources, size.bookings],
  );
  const current = await db.query<{ x: string }>("SELECT pg_current_xact_id()::text AS x");
  const xidTop = Math.max(2, Number(current.rows[0]?.x) - 1);
  await step(
    "events",
    `INSERT INTO outbox (xid, tenant_id, event_id, type, booking_id, resource_id, service_id,
                         occur_time, payload)
     SELECT (1 + (g::bigint * ($5::bigint - 1)) / $4::integer)::text::xid8, $1::text, 'evt_scale' || lpad(to_hex(g), 12, '0'),
            CASE g % 3 WHEN 0 THEN 'booking.held' WHEN 1 THEN 'booking.confirmed' ELSE 'booking.cancelled' END,
            b, r, $2::text, now() - interval '6 days' + g * (interval '6 days' / $4::integer),
            jsonb_build_object('booking', jsonb_build_object(
              'id', b, 'serviceId', $2::text, 'resourceId', r,
              'startTime', to_char(now() + (g % 40) * interval '1 day', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'endTime', to_char(now() + (g % 40) * interval '1 day' + interval '30 minutes', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'status', 'BOOKING_STATUS_CONFIRMED', 'policyVersion', 1,
              'createTime', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'updateTime', to_char(now(), 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
              'attendee', '{}'::jsonb, 'metadata', '{}'::jsonb))
     FROM generate_series(0, $4 - 1) g,
          LATERAL (SELECT 'bkg_scale' || lpad(to_hex(g), 12, '0') AS b,
                          'rsc_scale' || lpad((g % $3::integer)::text, 8, '0') AS r) t`,
    [tenantId, serviceId, size.resources, size.events, xidTop],
  );
  // As autovacuum would have done by the time such data is "already stored".
  await step("vacuum analyze", "VACUUM (ANALYZE) bookings, outbox, resources");
  // The load's dirty pages are written now rather than by a checkpoint in the
  // middle of the measurements after it: those measure the steady state.
  await step("checkpoint", "CHECKPOINT");
  return { tenantId, timings };
}

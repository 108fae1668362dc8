import type { JsonObject } from "@bufbuild/protobuf";
import type { WeeklyWindow } from "../domain/catalog.js";
import type { Queryable } from "./pool.js";
import { CHANNEL, notify } from "./signals.js";

export type ResourceKindName = "person" | "room" | "equipment" | "location" | "other";

export type ResourceRow = {
  tenant_id: string;
  id: string;
  name: string;
  kind: ResourceKindName;
  time_zone: string;
  capacity: number;
  metadata: JsonObject;
  weekly_schedule: WeeklyWindow[] | null;
  active: boolean;
  revision: number;
  create_time: Date;
  update_time: Date;
};

const COLUMNS =
  "tenant_id, id, name, kind, time_zone, capacity, metadata, weekly_schedule, active, revision, create_time, update_time";

export type ResourceFields = {
  name: string;
  kind: ResourceKindName;
  timeZone: string;
  capacity: number;
  metadata: JsonObject;
  weeklySchedule: WeeklyWindow[] | null;
};

export async function insertResource(
  q: Queryable,
  tenantId: string,
  f: ResourceFields,
): Promise<ResourceRow> {
  const { rows } = await q.query<ResourceRow>(
    `INSERT INTO resources (tenant_id, name, kind, time_zone, capacity, metadata, weekly_schedule)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb)
     RETURNING ${COLUMNS}`,
    [tenantId, f.name, f.kind, f.timeZone, f.capacity, f.metadata, jsonOrNull(f.weeklySchedule)],
  );
  return rows[0] as ResourceRow;
}

/**
 * The resource; with `lock`, its row is locked until the transaction ends
 * (as strongly as updateResource locks it), so what is read is what an
 * update in the same transaction changes.
 */
export async function getResource(
  q: Queryable,
  tenantId: string,
  id: string,
  opts: { lock?: boolean } = {},
): Promise<ResourceRow | undefined> {
  const { rows } = await q.query<ResourceRow>(
    `SELECT ${COLUMNS} FROM resources WHERE tenant_id = $1 AND id = $2${opts.lock ? " FOR NO KEY UPDATE" : ""}`,
    [tenantId, id],
  );
  return rows[0];
}

export async function listResources(
  q: Queryable,
  tenantId: string,
  opts: {
    after: string | undefined;
    limit: number;
    includeInactive: boolean;
    kind: ResourceKindName | undefined;
    /** Only the resources that deliver this service. */
    serviceId: string | undefined;
  },
): Promise<ResourceRow[]> {
  const { rows } = await q.query<ResourceRow>(
    `SELECT ${COLUMNS} FROM resources
     WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) AND ($3 OR active) AND ($4::text IS NULL OR kind = $4)
       AND ($6::text IS NULL OR id IN (SELECT sr.resource_id FROM service_resources sr
            WHERE sr.tenant_id = $1 AND sr.service_id = $6))
     ORDER BY id LIMIT $5`,
    [
      tenantId,
      opts.after ?? null,
      opts.includeInactive,
      opts.kind ?? null,
      opts.limit,
      opts.serviceId ?? null,
    ],
  );
  return rows;
}

export type ResourceChanges = Partial<
  Omit<ResourceFields, "weeklySchedule"> & { active: boolean }
> & {
  weeklySchedule?: WeeklyWindow[] | null;
};

const COLUMN_OF: Record<keyof ResourceChanges, string> = {
  name: "name",
  kind: "kind",
  timeZone: "time_zone",
  capacity: "capacity",
  metadata: "metadata",
  active: "active",
  weeklySchedule: "weekly_schedule",
};

/**
 * Applies the given changes and bumps the revision, which tells booking
 * writes that a cached copy of this resource is stale.
 */
export async function updateResource(
  q: Queryable,
  tenantId: string,
  id: string,
  changes: ResourceChanges,
): Promise<ResourceRow | undefined> {
  const sets: string[] = [];
  const values: unknown[] = [tenantId, id];
  for (const [field, value] of Object.entries(changes) as [keyof ResourceChanges, unknown][]) {
    if (value === undefined) continue;
    const column = COLUMN_OF[field];
    const isJson = column === "metadata" || column === "weekly_schedule";
    values.push(isJson ? jsonOrNull(value) : value);
    sets.push(`${column} = $${values.length}${isJson ? "::jsonb" : ""}`);
  }
  const { rows } = await q.query<ResourceRow>(
    `UPDATE resources SET ${[...sets, "revision = revision + 1", "update_time = now()"].join(", ")}
     WHERE tenant_id = $1 AND id = $2
     RETURNING ${COLUMNS}`,
    values,
  );
  if (rows[0]) await notify(q, CHANNEL.catalog, tenantId);
  return rows[0];
}

/**
 * Takes the resource's advisory lock until the transaction ends: the lock
 * every booking write of the resource takes (resource_lock_key in
 * src/db/functions/04_occupancy.sql), so what is read after it cannot
 * change under the transaction.
 */
export async function lockResource(tx: Queryable, tenantId: string, id: string): Promise<void> {
  await tx.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [tenantId, id]);
}

/**
 * The blocks (epoch ms, half-open) of the resource's live bookings that
 * have not ended by Postgres's now(): HELD and not yet expired, or
 * CONFIRMED. What its capacity must take; read under its lock.
 */
export async function liveBlocks(
  q: Queryable,
  tenantId: string,
  id: string,
): Promise<{ start: number; end: number }[]> {
  // A block is at most 72 hours (bookings' CHECK), so the occupancy index
  // is read from 72 hours back.
  const { rows } = await q.query<{ start: number; end: number }>(
    `SELECT (date_part('epoch', b.block_start) * 1000)::float8 AS start,
            (date_part('epoch', b.block_end) * 1000)::float8 AS end
     FROM bookings b
     WHERE b.tenant_id = $1 AND b.resource_id = $2 AND b.status IN ('held', 'confirmed')
       AND (b.status = 'confirmed' OR b.expire_time > now())
       AND b.block_start > now() - interval '72 hours' AND b.block_end > now()
     ORDER BY b.block_start`,
    [tenantId, id],
  );
  return rows;
}

/**
 * Marks the resource's live bookings exclusive exactly when its capacity
 * is one, so the schema's no-overlap constraint backs the new capacity up
 * as it does for bookings written under it; and no other of its bookings
 * (lapsed holds the sweeper has not marked yet, bookings that have ended),
 * which block nothing and could otherwise clash with a live one under the
 * constraint. Only bookings whose block may still overlap a live one are
 * read: a block is at most 72 hours. Run under the resource's lock, after
 * the capacity was checked against the same live blocks.
 */
export async function markExclusive(
  q: Queryable,
  tenantId: string,
  id: string,
  capacity: number,
): Promise<void> {
  const exclusive = `($3 = 1 AND block_end > now() AND (status = 'confirmed' OR expire_time > now()))`;
  await q.query(
    `UPDATE bookings SET exclusive = ${exclusive}
     WHERE tenant_id = $1 AND resource_id = $2 AND status IN ('held', 'confirmed')
       AND block_end > now() - interval '72 hours' AND exclusive IS DISTINCT FROM ${exclusive}`,
    [tenantId, id, capacity],
  );
}

/** The ids among `ids` that name no resource of the tenant. */
export async function missingResources(
  q: Queryable,
  tenantId: string,
  ids: readonly string[],
): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT want.id FROM unnest($2::text[]) AS want(id)
     WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.tenant_id = $1 AND r.id = want.id)`,
    [tenantId, [...ids]],
  );
  return rows.map((r) => r.id);
}

function jsonOrNull(value: unknown): string | null {
  return value === null ? null : JSON.stringify(value);
}

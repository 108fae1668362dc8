import type { OverrideRule } from "../domain/override-rule.js";
import { checkOverrideRoom } from "../domain/overrides.js";
import type { Db, Queryable } from "./pool.js";
import { lockResource } from "./resources.js";
import { CHANNEL, notify } from "./signals.js";

export type OverrideRow = OverrideRule & { resourceId: string; title: string; createTime: Date };

// Dates as text: a `date` parsed into a JS Date would shift with the
// process's own time zone.
const COLUMNS = `id, resource_id AS "resourceId", kind, title, all_day AS "allDay",
  to_char(start_date, 'YYYY-MM-DD') AS "startDate", to_char(end_date, 'YYYY-MM-DD') AS "endDate",
  start_minute AS "startMinute", end_minute AS "endMinute", recurrence, create_time AS "createTime"`;

/** The overrides of a resource as JSON rules, for catalog snapshots. */
export const OVERRIDES_JSON = `coalesce((
  SELECT jsonb_agg(jsonb_build_object('id', o.id, 'kind', o.kind, 'allDay', o.all_day,
           'startDate', to_char(o.start_date, 'YYYY-MM-DD'), 'endDate', to_char(o.end_date, 'YYYY-MM-DD'),
           'startMinute', o.start_minute, 'endMinute', o.end_minute, 'recurrence', o.recurrence,
           'title', o.title) ORDER BY o.id)
  FROM overrides o WHERE o.tenant_id = r.tenant_id AND o.resource_id = r.id), '[]')`;

/**
 * Overrides change what may be booked on a resource: adding or removing one
 * bumps the resource's revision, in the same transaction, so writes checked
 * against an older copy are refused and retried.
 */
async function touchResource(q: Queryable, tenantId: string, resourceId: string): Promise<boolean> {
  const { rowCount } = await q.query(
    "UPDATE resources SET revision = revision + 1, update_time = now() WHERE tenant_id = $1 AND id = $2",
    [tenantId, resourceId],
  );
  if (rowCount) await notify(q, CHANNEL.catalog, tenantId);
  return (rowCount ?? 0) > 0;
}

/**
 * Adds an override; undefined when there is no such resource, LIMIT_REACHED
 * when the resource has as many as it may (checkOverrideRoom). Counted
 * under the resource's lock, so two concurrent adds never both take its
 * last place.
 */
export async function insertOverride(
  db: Db,
  tenantId: string,
  title: string,
  rule: Omit<OverrideRule, "id">,
  resourceId: string,
): Promise<OverrideRow | undefined> {
  return db.transaction(async (tx) => {
    await lockResource(tx, tenantId, resourceId);
    const { rows: counted } = await tx.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM overrides WHERE tenant_id = $1 AND resource_id = $2",
      [tenantId, resourceId],
    );
    if (!(await touchResource(tx, tenantId, resourceId))) return undefined;
    checkOverrideRoom(resourceId, counted[0]?.n ?? 0);
    const { rows } = await tx.query<OverrideRow>(
      `INSERT INTO overrides (tenant_id, resource_id, kind, title, all_day, start_date, end_date,
                              start_minute, end_minute, recurrence)
       VALUES ($1, $2, $3, $4, $5, $6::date, $7::date, $8, $9, $10::jsonb)
       RETURNING ${COLUMNS}`,
      [
        tenantId,
        resourceId,
        rule.kind,
        title,
        rule.allDay,
        rule.startDate,
        rule.endDate,
        rule.startMinute,
        rule.endMinute,
        rule.recurrence === null ? null : JSON.stringify(rule.recurrence),
      ],
    );
    return rows[0];
  });
}

export async function listOverrides(
  q: Queryable,
  tenantId: string,
  resourceId: string,
  page: { after: string | undefined; limit: number },
): Promise<OverrideRow[]> {
  const { rows } = await q.query<OverrideRow>(
    `SELECT ${COLUMNS} FROM overrides
     WHERE tenant_id = $1 AND resource_id = $2 AND ($3::text IS NULL OR id > $3)
     ORDER BY id LIMIT $4`,
    [tenantId, resourceId, page.after ?? null, page.limit],
  );
  return rows;
}

/** Deletes an override; false when the resource has no such override. */
export async function deleteOverride(
  db: Db,
  tenantId: string,
  resourceId: string,
  id: string,
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const { rowCount } = await tx.query(
      "DELETE FROM overrides WHERE tenant_id = $1 AND resource_id = $2 AND id = $3",
      [tenantId, resourceId, id],
    );
    if (!rowCount) return false;
    await touchResource(tx, tenantId, resourceId);
    return true;
  });
}

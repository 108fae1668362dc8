import type { JsonObject } from "@bufbuild/protobuf";
import { canonicalJson } from "../domain/canonical-json.js";
import type { Policy } from "../domain/catalog.js";
import { Rejection } from "../domain/rejection.js";
import type { Db, Queryable } from "./pool.js";
import { missingResources } from "./resources.js";
import { CHANNEL, notify } from "./signals.js";

export type ServiceRow = {
  tenant_id: string;
  id: string;
  name: string;
  metadata: JsonObject;
  active: boolean;
  policy_version: number;
  revision: number;
  create_time: Date;
  update_time: Date;
  policy: Policy;
  time_zone: string;
  resource_ids: string[];
};

// A service with its current policy (or the version asked for) and its
// resources in the order they were given.
const SELECT = `
  SELECT s.tenant_id, s.id, s.name, s.metadata, s.active, p.version AS policy_version, s.revision,
         s.create_time, s.update_time, p.policy, p.time_zone,
         coalesce((SELECT array_agg(sr.resource_id ORDER BY sr.position) FROM service_resources sr
                   WHERE sr.tenant_id = s.tenant_id AND sr.service_id = s.id), '{}') AS resource_ids
  FROM services s
  JOIN policy_versions p ON p.tenant_id = s.tenant_id AND p.service_id = s.id`;

export type ServiceFields = {
  name: string;
  resourceIds: string[];
  policy: Policy;
  timeZone: string;
  metadata: JsonObject;
};

export async function insertService(
  db: Db,
  tenantId: string,
  f: ServiceFields,
): Promise<ServiceRow> {
  return db.transaction(async (tx) => {
    await requireResources(tx, tenantId, f.resourceIds);
    const { rows } = await tx.query<{ id: string }>(
      "INSERT INTO services (tenant_id, name, metadata) VALUES ($1, $2, $3::jsonb) RETURNING id",
      [tenantId, f.name, f.metadata],
    );
    const id = (rows[0] as { id: string }).id;
    await insertPolicyVersion(tx, tenantId, id, 1, f.policy, f.timeZone);
    await replaceResources(tx, tenantId, id, f.resourceIds);
    return (await getService(tx, tenantId, id)) as ServiceRow;
  });
}

export async function getService(
  q: Queryable,
  tenantId: string,
  id: string,
  version?: number,
): Promise<ServiceRow | undefined> {
  const { rows } = await q.query<ServiceRow>(
    `${SELECT} AND p.version = coalesce($3::integer, s.policy_version)
     WHERE s.tenant_id = $1 AND s.id = $2`,
    [tenantId, id, version ?? null],
  );
  return rows[0];
}

/**
 * Locks the service's row until the transaction ends and says whether it is
 * active (undefined: no such service): read after any write to it commits.
 */
export async function lockService(
  tx: Queryable,
  tenantId: string,
  id: string,
): Promise<{ active: boolean } | undefined> {
  const { rows } = await tx.query<{ active: boolean }>(
    "SELECT active FROM services WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    [tenantId, id],
  );
  return rows[0];
}

export async function listServices(
  q: Queryable,
  tenantId: string,
  opts: {
    after: string | undefined;
    limit: number;
    includeInactive: boolean;
    resourceId: string | undefined;
  },
): Promise<ServiceRow[]> {
  const { rows } = await q.query<ServiceRow>(
    `${SELECT} AND p.version = s.policy_version
     WHERE s.tenant_id = $1 AND ($2::text IS NULL OR s.id > $2) AND ($3 OR s.active)
       AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM service_resources sr
            WHERE sr.tenant_id = s.tenant_id AND sr.service_id = s.id AND sr.resource_id = $4))
     ORDER BY s.id LIMIT $5`,
    [tenantId, opts.after ?? null, opts.includeInactive, opts.resourceId ?? null, opts.limit],
  );
  return rows;
}

export type ServiceChanges = Partial<ServiceFields & { active: boolean }>;

/**
 * Applies changes under a row lock. A policy or time zone that differs from
 * the current one becomes a new policy version; the old versions stay.
 */
export async function updateService(
  db: Db,
  tenantId: string,
  id: string,
  changes: ServiceChanges,
): Promise<ServiceRow | undefined> {
  return db.transaction(async (tx) => {
    const locked = await tx.query(
      "SELECT 1 FROM services WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
      [tenantId, id],
    );
    if (locked.rowCount === 0) return undefined;
    const current = (await getService(tx, tenantId, id)) as ServiceRow;
    let version = current.policy_version;
    const policy = changes.policy ?? current.policy;
    const timeZone = changes.timeZone ?? current.time_zone;
    if (canonicalJson(policy) !== canonicalJson(current.policy) || timeZone !== current.time_zone) {
      version += 1;
      await insertPolicyVersion(tx, tenantId, id, version, policy, timeZone);
    }
    if (changes.resourceIds) {
      await requireResources(tx, tenantId, changes.resourceIds);
      await replaceResources(tx, tenantId, id, changes.resourceIds);
    }
    await tx.query(
      `UPDATE services SET name = coalesce($3, name), metadata = coalesce($4::jsonb, metadata),
         active = coalesce($5, active), policy_version = $6, revision = revision + 1, update_time = now()
       WHERE tenant_id = $1 AND id = $2`,
      [
        tenantId,
        id,
        changes.name ?? null,
        changes.metadata ?? null,
        changes.active ?? null,
        version,
      ],
    );
    await notify(tx, CHANNEL.catalog, tenantId);
    return getService(tx, tenantId, id);
  });
}

export type PolicyVersionRow = {
  version: number;
  policy: Policy;
  time_zone: string;
  create_time: Date;
};

export async function listPolicyVersions(
  q: Queryable,
  tenantId: string,
  serviceId: string,
  opts: { before: number | undefined; limit: number },
): Promise<PolicyVersionRow[]> {
  const { rows } = await q.query<PolicyVersionRow>(
    `SELECT version, policy, time_zone, create_time FROM policy_versions
     WHERE tenant_id = $1 AND service_id = $2 AND ($3::integer IS NULL OR version < $3)
     ORDER BY version DESC LIMIT $4`,
    [tenantId, serviceId, opts.before ?? null, opts.limit],
  );
  return rows;
}

async function insertPolicyVersion(
  q: Queryable,
  tenantId: string,
  serviceId: string,
  version: number,
  policy: Policy,
  timeZone: string,
): Promise<void> {
  await q.query(
    `INSERT INTO policy_versions (tenant_id, service_id, version, policy, time_zone)
     VALUES ($1, $2, $3, $4::jsonb, $5)`,
    [tenantId, serviceId, version, JSON.stringify(policy), timeZone],
  );
}

async function replaceResources(
  q: Queryable,
  tenantId: string,
  serviceId: string,
  ids: string[],
): Promise<void> {
  await q.query("DELETE FROM service_resources WHERE tenant_id = $1 AND service_id = $2", [
    tenantId,
    serviceId,
  ]);
  await q.query(
    `INSERT INTO service_resources (tenant_id, service_id, resource_id, position)
     SELECT $1, $2, r.id, r.position FROM unnest($3::text[]) WITH ORDINALITY AS r(id, position)`,
    [tenantId, serviceId, ids],
  );
}

async function requireResources(q: Queryable, tenantId: string, ids: string[]): Promise<void> {
  const missing = await missingResources(q, tenantId, ids);
  if (missing.length === 0) return;
  throw new Rejection("RESOURCE_NOT_FOUND", `no resource with id ${missing.join(", ")}`, {
    fieldViolations: missing.map((m) => ({
      field: `resource_ids[${ids.indexOf(m)}]`,
      description: "no such resource",
    })),
  });
}

import { Rejection } from "../domain/rejection.js";
import { OPERATOR_SCOPE, TENANT_SCOPES } from "../domain/scopes.js";
import { isUniqueViolation } from "./errors.js";
import { insertKey, type KeyRow, revokeKeysWithScope } from "./keys.js";
import type { Db, Queryable } from "./pool.js";

export type TenantRow = { id: string; name: string; create_time: Date };

export const DEFAULT_TENANT = "default";

/** Creates a tenant with its first all-scopes key, in one transaction. */
export async function createTenant(
  db: Db,
  name: string,
): Promise<{
  tenant: TenantRow;
  secret: string;
  key: Awaited<ReturnType<typeof insertKey>>["key"];
}> {
  try {
    return await db.transaction(async (tx) => {
      const { rows } = await tx.query<TenantRow>(
        "INSERT INTO tenants (name) VALUES ($1) RETURNING id, name, create_time",
        [name],
      );
      const tenant = rows[0] as TenantRow;
      const { secret, key } = await insertKey(tx, tenant.id, TENANT_SCOPES, "first key");
      return { tenant, secret, key };
    });
  } catch (err) {
    if (isUniqueViolation(err, "tenants_name_key")) {
      throw new Rejection("TENANT_NAME_TAKEN", `a tenant named "${name}" already exists`, {
        fieldViolations: [{ field: "name", description: "is already taken" }],
      });
    }
    throw err;
  }
}

/** The operator named a tenant that does not exist. */
export function tenantNotFound(id: string): Rejection {
  return new Rejection("TENANT_NOT_FOUND", `no tenant with id "${id}"`, {
    fieldViolations: [{ field: "tenant_id", description: "no such tenant" }],
  });
}

export async function getTenant(q: Queryable, id: string): Promise<TenantRow | undefined> {
  const { rows } = await q.query<TenantRow>(
    "SELECT id, name, create_time FROM tenants WHERE id = $1",
    [id],
  );
  return rows[0];
}

/** The tenant with this id or, failing that, this name. */
export async function findTenant(q: Queryable, idOrName: string): Promise<TenantRow | undefined> {
  const { rows } = await q.query<TenantRow>(
    "SELECT id, name, create_time FROM tenants WHERE id = $1 OR name = $1 ORDER BY id = $1 DESC LIMIT 1",
    [idOrName],
  );
  return rows[0];
}

export async function listTenants(
  q: Queryable,
  opts: { after: string | undefined; limit: number },
): Promise<TenantRow[]> {
  const { rows } = await q.query<TenantRow>(
    "SELECT id, name, create_time FROM tenants WHERE ($1::text IS NULL OR id > $1) ORDER BY id LIMIT $2",
    [opts.after ?? null, opts.limit],
  );
  return rows;
}

/**
 * Makes sure tenant `default` exists. The instance that creates it also
 * creates the operator key and returns its secret, to be printed once;
 * unless an operator key comes from the environment, in which case none is
 * made. Safe when several instances start at once: only one insert wins.
 */
export async function bootstrapDefaultTenant(
  db: Db,
  withOperatorKey: boolean,
): Promise<{ tenantId: string; operatorSecret: string | undefined }> {
  return db.transaction(async (tx) => {
    const inserted = await tx.query<{ id: string }>(
      "INSERT INTO tenants (name) VALUES ($1) ON CONFLICT (name) DO NOTHING RETURNING id",
      [DEFAULT_TENANT],
    );
    const created = inserted.rows[0];
    if (!created) {
      const { rows } = await tx.query<{ id: string }>("SELECT id FROM tenants WHERE name = $1", [
        DEFAULT_TENANT,
      ]);
      return { tenantId: (rows[0] as { id: string }).id, operatorSecret: undefined };
    }
    if (!withOperatorKey) return { tenantId: created.id, operatorSecret: undefined };
    const { secret } = await insertKey(
      tx,
      created.id,
      [...TENANT_SCOPES, OPERATOR_SCOPE],
      "operator key (bootstrap)",
    );
    return { tenantId: created.id, operatorSecret: secret };
  });
}

/**
 * The way back when the operator key is lost or leaked: in one transaction,
 * revokes every operator key of tenant `default` (creating the tenant if it
 * is missing) and makes a new one, whose secret is returned to be shown
 * once. A key set with HOLDFAST_ADMIN_KEY is not stored, so not revoked.
 */
export async function rotateOperatorKey(
  db: Db,
): Promise<{ secret: string; key: KeyRow; revoked: KeyRow[] }> {
  return db.transaction(async (tx) => {
    const { tenantId } = await bootstrapDefaultTenant(tx, false);
    const revoked = await revokeKeysWithScope(tx, tenantId, OPERATOR_SCOPE);
    const { secret, key } = await insertKey(
      tx,
      tenantId,
      [...TENANT_SCOPES, OPERATOR_SCOPE],
      "operator key (rotated)",
    );
    return { secret, key, revoked };
  });
}

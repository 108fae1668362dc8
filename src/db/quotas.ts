import { type CatalogQuota, QUOTAS, type Quota, type Quotas } from "../domain/quota.js";
import type { StoredRejection } from "./idempotency.js";
import type { Queryable } from "./pool.js";

const COLUMN: Record<Quota, string> = {
  bookings_per_month: "quota_bookings_per_month",
  active_holds: "quota_active_holds",
  resources: "quota_resources",
  services: "quota_services",
  webhooks: "quota_webhooks",
  api_keys: "quota_api_keys",
};

/**
 * Checks, before one more of what `quota` counts is written in this
 * transaction, that the tenant has room (see quota_rejection in
 * src/db/functions/11_quotas.sql): under the tenant's lock for that quota
 * when it has one, so exact across instances, and lock-free when it has
 * none. The LIMIT_REACHED outcome when it is used up.
 */
export async function quotaRefusal(
  tx: Queryable,
  tenantId: string,
  quota: CatalogQuota,
): Promise<StoredRejection | undefined> {
  const { rows } = await tx.query<{ r: { error: StoredRejection } | null }>(
    "SELECT quota_rejection($1, $2, ARRAY[$2], now()) AS r",
    [tenantId, quota],
  );
  return rows[0]?.r?.error;
}

/**
 * Takes the tenant's lock for `quota` (when it has that quota), held until
 * commit: for a write that adds one only in some cases, which must read
 * whether it does under the lock (see quota_lock in
 * src/db/functions/11_quotas.sql), then call quotaRefusal if it does.
 */
export async function lockQuota(
  tx: Queryable,
  tenantId: string,
  quota: CatalogQuota,
): Promise<void> {
  await tx.query("SELECT quota_lock($1, $2)", [tenantId, quota]);
}

/**
 * Replaces a tenant's quotas (missing ones become unlimited); false if there
 * is no such tenant. Its booking tallies go: writes made while it had no
 * booking quota are not in them, so the next write counts exactly and
 * starts them again.
 */
export async function setQuotas(q: Queryable, tenantId: string, quotas: Quotas): Promise<boolean> {
  const { rowCount } = await q.query(
    `WITH forgotten AS (DELETE FROM quota_tallies WHERE tenant_id = $1)
     UPDATE tenants SET ${QUOTAS.map((name, i) => `${COLUMN[name]} = $${i + 2}`).join(", ")} WHERE id = $1`,
    [tenantId, ...QUOTAS.map((name) => quotas[name] ?? null)],
  );
  return rowCount === 1;
}

export type QuotaUsage = { quota: Quota; limit: number | undefined; usage: number };

/** Every quota of a tenant with what is in use now; undefined if there is no such tenant. */
export async function quotaUsage(
  q: Queryable,
  tenantId: string,
): Promise<QuotaUsage[] | undefined> {
  const { rows } = await q.query<{ quota: Quota; limit: number | null; usage: string }>(
    `SELECT name AS quota, (quota_limits($1)->>name)::integer AS limit, quota_usage($1, name, now()) AS usage
     FROM unnest($2::text[]) AS name
     WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $1)`,
    [tenantId, [...QUOTAS]],
  );
  if (rows.length === 0) return undefined;
  return rows.map((r) => ({ quota: r.quota, limit: r.limit ?? undefined, usage: Number(r.usage) }));
}

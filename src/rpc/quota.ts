import { rejectionOfOutcome } from "../db/errors.js";
import type { Db, Queryable } from "../db/pool.js";
import { lockQuota, quotaRefusal } from "../db/quotas.js";
import type { CatalogQuota } from "../domain/quota.js";

/**
 * Runs `write`, which adds one of what `quota` counts, in one transaction
 * with the quota check before it; throws LIMIT_REACHED (stored under the
 * call's Idempotency-Key, like any business rejection) when it is used up.
 */
export async function withinQuota<T>(
  db: Db,
  tenantId: string,
  quota: CatalogQuota,
  write: (tx: Db) => Promise<T>,
): Promise<T> {
  return db.transaction(async (tx) => {
    await requireQuotaRoom(tx, tenantId, quota);
    return write(tx);
  });
}

/**
 * For a write that adds one of what `quota` counts only in some cases
 * (bringing an inactive service or a deleted resource back), inside its
 * transaction: takes the tenant's lock for the quota first, then asks
 * `adds` (which reads the row, locking it) whether this write adds one,
 * and checks the quota only if so. Decided under the lock, so no other
 * write can add one between the read and the commit.
 */
export async function quotaForRevival(
  tx: Db,
  tenantId: string,
  quota: CatalogQuota,
  adds: () => Promise<boolean>,
): Promise<void> {
  await lockQuota(tx, tenantId, quota);
  if (await adds()) await requireQuotaRoom(tx, tenantId, quota);
}

/** Throws LIMIT_REACHED when `quota` is used up (taking its lock: see quotaRefusal). */
async function requireQuotaRoom(
  tx: Queryable,
  tenantId: string,
  quota: CatalogQuota,
): Promise<void> {
  const refused = await quotaRefusal(tx, tenantId, quota);
  if (refused) throw rejectionOfOutcome(refused);
}

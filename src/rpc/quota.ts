import { rejectionOfOutcome } from "../db/errors.js";
import type { Db } from "../db/pool.js";
import { quotaRefusal } from "../db/quotas.js";
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
    const refused = await quotaRefusal(tx, tenantId, quota);
    if (refused) throw rejectionOfOutcome(refused);
    return write(tx);
  });
}

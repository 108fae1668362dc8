/**
 * Quotas per tenant, set by the operator; unset is unlimited. Each is
 * checked where the work that would exceed it is written (see
 * src/db/functions/11_quotas.sql), so it holds across instances.
 */
export const QUOTAS = [
  "bookings_per_month",
  "active_holds",
  "resources",
  "services",
  "webhooks",
  "api_keys",
] as const;

export type Quota = (typeof QUOTAS)[number];

/** The largest quota accepted. */
export const MAX_QUOTA = 1_000_000_000;

/** A tenant's quotas; a missing entry is unlimited. */
export type Quotas = Partial<Record<Quota, number>>;

/** The quotas of what the catalog and key calls create, each checked alone. */
export type CatalogQuota = Exclude<Quota, "bookings_per_month" | "active_holds">;

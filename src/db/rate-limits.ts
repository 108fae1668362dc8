import type { RateBucket, RateLimit } from "../domain/rate-limit.js";
import type { Queryable } from "./pool.js";

export type RateDefaults = { tenant: RateLimit; key: RateLimit };

/** What lease_rate answered (see src/db/functions/10_rate_limits.sql). */
export type LeaseGrant = {
  /** Tokens granted; 0 when refused. */
  granted: number;
  /** When refused: milliseconds until a token would be granted. */
  retryMs: number;
  /** The buckets {tenant, key} as Postgres saw them after the grant. */
  buckets: RateBucket[];
};

/** The end of an instance's previous lease of a key, handed back with the next call. */
export type LeaseEnd = {
  /** Tokens leased but not spent: they go back to the buckets. */
  refund: number;
  /** What the rate_leases rows counted for that lease (its tokens beyond the first). */
  release: number;
  /** The rates {tenant, key} the lease was taken at. */
  rates: [number, number];
};

/**
 * Leases up to `lease.max` tokens from the tenant's and the key's shared
 * buckets for `instance` to spend from memory for `lease.ms`, ending its
 * previous lease of the key in the same statement; `lease.max` 0 only ends it. One
 * statement, the same rows for every instance.
 */
export async function leaseRate(
  q: Queryable,
  tenantId: string,
  keyId: string,
  defaults: RateDefaults,
  instance: string,
  lease: { max: number; ms: number },
  previous: LeaseEnd | undefined,
): Promise<LeaseGrant> {
  const { rows } = await q.query<{
    granted: number;
    retry_ms: number;
    rates: number[];
    bursts: number[];
    remaining: number[];
    reset_ms: number[];
  }>("SELECT * FROM lease_rate($1, $2, $3::integer[], $4, $5, $6, $7, $8, $9::integer[])", [
    tenantId,
    keyId,
    defaultsArray(defaults),
    instance,
    lease.max,
    Math.round(lease.ms),
    previous?.refund ?? 0,
    previous?.release ?? 0,
    previous?.rates ?? [1, 1],
  ]);
  const r = rows[0];
  if (!r) throw new Error("lease_rate returned no row");
  return {
    granted: r.granted,
    retryMs: r.retry_ms,
    buckets: (["tenant", "key"] as const).map((policy, i) => ({
      policy,
      limit: { perSecond: r.rates[i] as number, burst: r.bursts[i] as number },
      remaining: r.remaining[i] as number,
      resetMs: r.reset_ms[i] as number,
    })),
  };
}

/** A tenant's rate limit override; undefined goes back to the configured default. */
export async function setTenantRateLimit(
  q: Queryable,
  tenantId: string,
  limit: RateLimit | undefined,
): Promise<boolean> {
  const { rowCount } = await q.query(
    "UPDATE tenants SET rate_per_second = $2, rate_burst = $3 WHERE id = $1",
    [tenantId, limit?.perSecond ?? null, limit?.burst ?? null],
  );
  return rowCount === 1;
}

function defaultsArray(d: RateDefaults): number[] {
  return [d.tenant.perSecond, d.tenant.burst, d.key.perSecond, d.key.burst];
}

/** The limit in force for a tenant: its own, else the default. */
export async function tenantRateLimit(
  q: Queryable,
  tenantId: string,
  defaults: RateDefaults,
): Promise<RateLimit> {
  const { rows } = await q.query<{ rates: number[]; bursts: number[] }>(
    "SELECT rates, bursts FROM rate_limits_in_force($1, NULL, $2::integer[])",
    [tenantId, defaultsArray(defaults)],
  );
  const r = rows[0] as { rates: number[]; bursts: number[] };
  return { perSecond: r.rates[0] as number, burst: r.bursts[0] as number };
}

/** The limits in force for a tenant and a key of it, and what each bucket would admit now. */
export async function rateRemaining(
  q: Queryable,
  tenantId: string,
  keyId: string,
  defaults: RateDefaults,
): Promise<{ policy: "tenant" | "key"; limit: RateLimit; remaining: number }[]> {
  const { rows } = await q.query<{ rates: number[]; bursts: number[]; remaining: number[] }>(
    "SELECT rates, bursts, remaining FROM rate_remaining($1, $2, $3::integer[])",
    [tenantId, keyId, defaultsArray(defaults)],
  );
  const r = rows[0] as { rates: number[]; bursts: number[]; remaining: number[] };
  return (["tenant", "key"] as const).map((policy, i) => ({
    policy,
    limit: { perSecond: r.rates[i] as number, burst: r.bursts[i] as number },
    remaining: r.remaining[i] as number,
  }));
}

import type { RateCheck, RateLimit } from "../domain/rate-limit.js";
import type { Queryable } from "./pool.js";

export type RateDefaults = { tenant: RateLimit; key: RateLimit };

/**
 * Takes one request from the tenant's and the key's shared buckets (see
 * src/db/functions/10_rate_limits.sql): one statement, on whichever
 * instance; the buckets are the same rows for all of them.
 */
export async function takeRate(
  q: Queryable,
  tenantId: string,
  keyId: string,
  defaults: RateDefaults,
): Promise<RateCheck> {
  const { rows } = await q.query<{
    allowed: boolean;
    retry_ms: number;
    rates: number[];
    bursts: number[];
    remaining: number[];
    reset_ms: number[];
  }>("SELECT * FROM take_rate($1, $2, $3::integer[])", [tenantId, keyId, defaultsArray(defaults)]);
  const r = rows[0];
  if (!r) throw new Error("take_rate returned no row");
  return {
    allowed: r.allowed,
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

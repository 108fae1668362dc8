/**
 * Rate limits: requests per second with a burst, one token bucket per
 * tenant and per API key. The buckets live in Postgres (see
 * src/db/functions/10_rate_limits.sql); this module holds the rules and the
 * IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10).
 */

export type RateLimit = { perSecond: number; burst: number };

/** The largest rate or burst accepted anywhere (configuration, tenants, keys). */
export const MAX_RATE = 1_000_000;

/** What one request's check found, for the buckets in order: tenant, then key. */
export type RateCheck = {
  allowed: boolean;
  /** When refused: milliseconds until this request would be admitted. */
  retryMs: number;
  buckets: RateBucket[];
};

export type RateBucket = {
  /** The policy name in the RateLimit fields: "tenant" or "key". */
  policy: "tenant" | "key";
  limit: RateLimit;
  /** Requests that would be admitted right now. */
  remaining: number;
  /** Milliseconds until the bucket is full again. */
  resetMs: number;
};

/**
 * A key's limit may not exceed its tenant's, in rate or in burst: the names
 * of the fields that do (empty when the key's limit fits).
 */
export function keyLimitExcess(key: RateLimit, tenant: RateLimit): ("perSecond" | "burst")[] {
  const over: ("perSecond" | "burst")[] = [];
  if (key.perSecond > tenant.perSecond) over.push("perSecond");
  if (key.burst > tenant.burst) over.push("burst");
  return over;
}

/**
 * The limit a key gets when another key creates it. Like scopes, a key
 * cannot grant more than it holds: when the creating key has a limit of
 * its own, a requested limit above it is refused (`over` names the fields
 * that are), and a key created without one gets the creator's (within the
 * tenant's), so a key held to 1 call a second cannot mint one that calls at
 * the tenant's rate. A creator without a limit of its own (it runs at the
 * configured default, as a tenant's first key does) is not held to less
 * than its tenant: what it creates is as asked, within the tenant's limit.
 */
export function grantedKeyLimit(
  requested: RateLimit | undefined,
  creator: RateLimit | undefined,
  tenant: RateLimit,
): { limit: RateLimit | undefined; over: ("perSecond" | "burst")[] } {
  if (!creator) return { limit: requested, over: [] };
  if (requested) return { limit: requested, over: keyLimitExcess(requested, creator) };
  return {
    limit: {
      perSecond: Math.min(creator.perSecond, tenant.perSecond),
      burst: Math.min(creator.burst, tenant.burst),
    },
    over: [],
  };
}

/**
 * The window the RateLimit-Policy field states for a bucket: q = burst
 * requests per w seconds. A token bucket has no window; burst/rate seconds
 * (rounded up, so the rate stated is never above the real one) is the time
 * an empty bucket takes to fill.
 */
export function policyWindowSeconds(limit: RateLimit): number {
  return Math.max(1, Math.ceil(limit.burst / limit.perSecond));
}

/** `RateLimit-Policy: "tenant";q=400;w=2, "key";q=100;w=2` */
export function rateLimitPolicyField(check: RateCheck): string {
  return check.buckets
    .map((b) => `"${b.policy}";q=${b.limit.burst};w=${policyWindowSeconds(b.limit)}`)
    .join(", ");
}

/** `RateLimit: "tenant";r=399;t=1, "key";r=99;t=1` (t: whole seconds until full again). */
export function rateLimitField(check: RateCheck): string {
  return check.buckets
    .map((b) => `"${b.policy}";r=${b.remaining};t=${Math.ceil(b.resetMs / 1000)}`)
    .join(", ");
}

/** The bucket that refused a request: the first with nothing left. */
export function refusingPolicy(check: RateCheck): RateBucket | undefined {
  return check.buckets.find((b) => b.remaining === 0) ?? check.buckets[0];
}

/**
 * The buckets as one instance sees them while it spends a lease: what
 * Postgres answered at the lease, plus what has refilled since and the
 * tokens this instance still holds unspent. Exact at the lease; between
 * leases, what other instances spend is not seen.
 */
export function leasedBuckets(
  atLease: RateBucket[],
  elapsedMs: number,
  held: number,
): RateBucket[] {
  return atLease.map((b) => ({
    ...b,
    remaining: Math.min(
      b.limit.burst,
      Math.floor(b.remaining + (elapsedMs * b.limit.perSecond) / 1000 + held),
    ),
    resetMs: Math.max(0, b.resetMs - elapsedMs - (held * 1000) / b.limit.perSecond),
  }));
}

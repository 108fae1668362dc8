import { randomUUID } from "node:crypto";
import type { Queryable } from "../db/pool.js";
import { type LeaseEnd, type LeaseGrant, leaseRate, type RateDefaults } from "../db/rate-limits.js";
import { leasedBuckets, type RateBucket, type RateCheck } from "../domain/rate-limit.js";
import { log } from "../log.js";

/** How long an instance may spend a lease before it asks Postgres again. */
const LEASE_MS = 1000;
/** The most tokens one lease takes (the SQL takes a sixteenth of the burst, up to this). */
const LEASE_MAX = 1000;
/** Keys with a lease at once; past this, new keys take one token per call, as exact as before. */
const MAX_LEASES = 10_000;

type Lease = {
  tenantId: string;
  /** Tokens granted and not yet spent. */
  left: number;
  granted: number;
  /** performance.now() at the grant, and when this lease may no longer be spent. */
  at: number;
  expires: number;
  /** Refused until then, without asking Postgres again. */
  refusedUntil: number;
  retryMs: number;
  buckets: RateBucket[];
  /** A lease_rate call under way for this key: the others wait for it. */
  pending?: Promise<unknown>;
};

/**
 * The rate limits as one instance enforces them: it leases tokens from the
 * shared buckets in Postgres a few at a time (see lease_rate in
 * src/db/functions/10_rate_limits.sql) and spends them from memory, so
 * most calls cost no statement. A lease ends after a second, or when spent;
 * its unspent tokens go back with the next lease, or from the sweep once a
 * second. A refusal is kept until its retry time, so a caller hammering
 * past its limit costs no statement either.
 */
export class RateLimiter {
  readonly instance = randomUUID();
  private readonly leases = new Map<string, Lease>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(
    private readonly db: Queryable,
    private readonly defaults: RateDefaults,
    private readonly leaseMs = LEASE_MS,
  ) {
    this.sweeper = setInterval(() => {
      this.sweep(false).catch((err: unknown) => log.warn("rate lease sweep failed", { err }));
    }, LEASE_MS);
    this.sweeper.unref();
  }

  /** Takes one call's token from the key's and its tenant's buckets. */
  async take(tenantId: string, keyId: string): Promise<RateCheck> {
    for (;;) {
      const now = performance.now();
      const lease = this.leases.get(keyId);
      if (lease?.pending) {
        await lease.pending.catch(() => {});
        continue;
      }
      if (lease && lease.tenantId === tenantId) {
        if (lease.refusedUntil > now) {
          return { allowed: false, retryMs: lease.refusedUntil - now, buckets: lease.buckets };
        }
        if (lease.left > 0 && lease.expires > now) {
          lease.left--;
          return this.admitted(lease, now);
        }
      }
      const renewal = this.renew(tenantId, keyId, lease);
      const fresh: Lease = {
        tenantId,
        left: 0,
        granted: 0,
        at: now,
        expires: now,
        refusedUntil: 0,
        retryMs: 0,
        buckets: lease?.buckets ?? [],
        pending: renewal,
      };
      this.leases.set(keyId, fresh);
      let grant: LeaseGrant;
      try {
        grant = await renewal;
      } catch (err) {
        this.leases.delete(keyId);
        throw err;
      }
      const at = performance.now();
      Object.assign(fresh, {
        granted: grant.granted,
        // This call spends the first token.
        left: Math.max(0, grant.granted - 1),
        at,
        expires: at + this.leaseMs,
        refusedUntil: grant.granted > 0 ? 0 : at + grant.retryMs,
        retryMs: grant.retryMs,
        buckets: grant.buckets,
        pending: undefined,
      });
      if (grant.granted === 0)
        return { allowed: false, retryMs: grant.retryMs, buckets: grant.buckets };
      return this.admitted(fresh, at);
    }
  }

  /** Hands every unspent token back: at shutdown, so the other instances get them. */
  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.sweep(true);
  }

  private admitted(lease: Lease, now: number): RateCheck {
    return {
      allowed: true,
      retryMs: 0,
      buckets: leasedBuckets(lease.buckets, now - lease.at, lease.left),
    };
  }

  private renew(tenantId: string, keyId: string, previous: Lease | undefined): Promise<LeaseGrant> {
    const leaseMax = this.leases.size >= MAX_LEASES && !previous ? 1 : LEASE_MAX;
    return leaseRate(
      this.db,
      tenantId,
      keyId,
      this.defaults,
      this.instance,
      { max: leaseMax, ms: this.leaseMs },
      ended(previous),
    );
  }

  /**
   * Ends the leases that lapsed (or all of them): unspent tokens go back,
   * one statement per lease that has any, and the key is forgotten.
   */
  private async sweep(all: boolean): Promise<void> {
    const now = performance.now();
    for (const [keyId, lease] of this.leases) {
      if (lease.pending || (!all && (lease.expires > now || lease.refusedUntil > now))) continue;
      const end = ended(lease);
      if (!end || (end.refund === 0 && end.release === 0)) {
        this.leases.delete(keyId);
        continue;
      }
      lease.left = 0;
      lease.pending = leaseRate(
        this.db,
        lease.tenantId,
        keyId,
        this.defaults,
        this.instance,
        { max: 0, ms: this.leaseMs },
        end,
      );
      try {
        await lease.pending;
      } finally {
        if (this.leases.get(keyId) === lease) this.leases.delete(keyId);
      }
    }
  }
}

/** What lease_rate must know of a lease that ends: its unspent tokens and what its rows counted. */
function ended(lease: Lease | undefined): LeaseEnd | undefined {
  if (!lease || lease.granted === 0) return undefined;
  const [tenant, key] = lease.buckets;
  if (!tenant || !key) return undefined;
  return {
    refund: lease.left,
    release: lease.granted - 1,
    rates: [tenant.limit.perSecond, key.limit.perSecond],
  };
}

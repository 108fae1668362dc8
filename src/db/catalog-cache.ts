import type { ResourceSnapshot, ServiceSnapshot } from "../domain/booking.js";
import type { Policy } from "../domain/catalog.js";
import { LoadingCache } from "./loading-cache.js";
import { OVERRIDES_JSON } from "./overrides.js";
import type { Queryable } from "./pool.js";
import { CHANNEL, type Signals } from "./signals.js";

export type PolicyVersion = { policy: Policy; timeZone: string };

/** Entries kept at most, each the least recently used first to go. */
const MAX_SERVICES = 10_000;
const MAX_RESOURCES = 50_000;
const MAX_POLICY_VERSIONS = 10_000;

const keyOf = (tenantId: string, id: string) => `${tenantId}\u0000${id}`;
const tenantOf = (key: string) => key.slice(0, key.indexOf("\u0000"));
const idOf = (key: string) => key.slice(key.indexOf("\u0000") + 1);

type Pending = {
  id: string;
  resolve: (r: ResourceSnapshot | undefined) => void;
  reject: (err: unknown) => void;
};

/**
 * Services and resources (with their overrides) as availability and booking
 * writes need them, kept in memory so a hold costs one round trip, not two.
 * A copy may be stale: every write sends the revisions it checked against
 * and the database refuses the write (HF001) if either changed, whereupon
 * the caller forgets the tenant and retries; ListSlots compares revisions
 * read with its bookings. Notifications of catalog changes drop a tenant's
 * copies on every instance, so staleness is rare and short. Policy
 * versions never change once written and are kept as they are.
 *
 * Each kind is a bounded LRU (see LoadingCache): concurrent misses share
 * one load, ids that do not exist are not kept and evict nothing, and the
 * resources one call misses are read in one query.
 */
export class CatalogCache {
  private readonly services: LoadingCache<ServiceSnapshot>;
  private readonly resourceCache: LoadingCache<ResourceSnapshot>;
  private readonly versions: LoadingCache<PolicyVersion>;
  /** The cached keys of each tenant, so a tenant is forgotten without a scan. */
  private readonly keysOf = new Map<string, Set<string>>();
  /** Resources asked for in this turn of the event loop, by tenant: one query each. */
  private readonly pending = new Map<string, Pending[]>();

  constructor(
    private readonly db: Queryable,
    signals: Signals | undefined,
  ) {
    const index = {
      onInsert: (key: string) => {
        const tenantId = tenantOf(key);
        let keys = this.keysOf.get(tenantId);
        if (!keys) {
          keys = new Set();
          this.keysOf.set(tenantId, keys);
        }
        keys.add(key);
      },
      onDispose: (key: string) => {
        const tenantId = tenantOf(key);
        const keys = this.keysOf.get(tenantId);
        keys?.delete(key);
        if (keys?.size === 0) this.keysOf.delete(tenantId);
      },
    };
    const noMisses = { ttlMs: 0, missMax: 0, missTtlMs: 0 };
    this.services = new LoadingCache<ServiceSnapshot>(
      { max: MAX_SERVICES, ...noMisses, load: (key) => this.loadService(key) },
      index.onDispose,
      index.onInsert,
    );
    this.resourceCache = new LoadingCache<ResourceSnapshot>(
      { max: MAX_RESOURCES, ...noMisses, load: (key) => this.loadResource(key) },
      index.onDispose,
      index.onInsert,
    );
    this.versions = new LoadingCache<PolicyVersion>({
      max: MAX_POLICY_VERSIONS,
      ...noMisses,
      load: (key) => this.loadPolicyVersion(key),
    });
    signals?.on(CHANNEL.catalog, (tenantId: string) => this.forget(tenantId));
    signals?.on("reconnected", () => {
      this.services.clear();
      this.resourceCache.clear();
    });
  }

  forget(tenantId: string): void {
    const keys = [...(this.keysOf.get(tenantId) ?? [])];
    this.services.forget(...keys);
    this.resourceCache.forget(...keys);
  }

  /** Loads run so far, for tests and diagnostics: services, resources and policy versions. */
  get loadCount(): number {
    return this.services.loadCount + this.resourceCache.loadCount + this.versions.loadCount;
  }

  service(tenantId: string, id: string): Promise<ServiceSnapshot | undefined> {
    return this.services.get(keyOf(tenantId, id));
  }

  /** The resources among `ids` that exist in the tenant. */
  async resources(
    tenantId: string,
    ids: readonly string[],
  ): Promise<Map<string, ResourceSnapshot>> {
    const found = await Promise.all(ids.map((id) => this.resourceCache.get(keyOf(tenantId, id))));
    const out = new Map<string, ResourceSnapshot>();
    for (const r of found) if (r) out.set(r.id, r);
    return out;
  }

  async resource(tenantId: string, id: string): Promise<ResourceSnapshot | undefined> {
    return this.resourceCache.get(keyOf(tenantId, id));
  }

  /** A service's policy as of a version (bookings keep the version they were made under). */
  policyVersion(
    tenantId: string,
    serviceId: string,
    version: number,
  ): Promise<PolicyVersion | undefined> {
    return this.versions.get(keyOf(tenantId, `${serviceId}\u0000${version}`));
  }

  private async loadService(key: string): Promise<ServiceSnapshot | undefined> {
    const { rows } = await this.db.query<ServiceSnapshot>(
      `SELECT s.id, s.active, s.revision, s.policy_version AS "policyVersion", p.policy, p.time_zone AS "timeZone",
              array(SELECT sr.resource_id FROM service_resources sr
                    WHERE sr.tenant_id = s.tenant_id AND sr.service_id = s.id ORDER BY sr.position) AS "resourceIds"
       FROM services s
       JOIN policy_versions p ON p.tenant_id = s.tenant_id AND p.service_id = s.id AND p.version = s.policy_version
       WHERE s.tenant_id = $1 AND s.id = $2`,
      [tenantOf(key), idOf(key)],
    );
    return rows[0];
  }

  /** Joins the batch of this tenant's resources read at the next turn of the event loop. */
  private loadResource(key: string): Promise<ResourceSnapshot | undefined> {
    const tenantId = tenantOf(key);
    return new Promise((resolve, reject) => {
      let batch = this.pending.get(tenantId);
      if (!batch) {
        batch = [];
        this.pending.set(tenantId, batch);
        setImmediate(() => this.readResources(tenantId));
      }
      batch.push({ id: idOf(key), resolve, reject });
    });
  }

  private async readResources(tenantId: string): Promise<void> {
    const batch = this.pending.get(tenantId) ?? [];
    this.pending.delete(tenantId);
    try {
      const { rows } = await this.db.query<ResourceSnapshot>(
        `SELECT r.id, r.active, r.revision, r.capacity, r.time_zone AS "timeZone",
                r.weekly_schedule AS "weeklySchedule", ${OVERRIDES_JSON} AS overrides
         FROM resources r WHERE r.tenant_id = $1 AND r.id = ANY ($2::text[])`,
        [tenantId, [...new Set(batch.map((p) => p.id))]],
      );
      const byId = new Map(rows.map((r) => [r.id, r]));
      for (const p of batch) p.resolve(byId.get(p.id));
    } catch (err) {
      for (const p of batch) p.reject(err);
    }
  }

  private async loadPolicyVersion(key: string): Promise<PolicyVersion | undefined> {
    const [serviceId, version] = idOf(key).split("\u0000") as [string, string];
    const { rows } = await this.db.query<PolicyVersion>(
      `SELECT policy, time_zone AS "timeZone" FROM policy_versions
       WHERE tenant_id = $1 AND service_id = $2 AND version = $3`,
      [tenantOf(key), serviceId, Number(version)],
    );
    return rows[0];
  }
}

import type { ResourceSnapshot, ServiceSnapshot } from "../domain/booking.js";
import type { Policy } from "../domain/catalog.js";
import { OVERRIDES_JSON } from "./overrides.js";
import type { Queryable } from "./pool.js";
import { CHANNEL, type Signals } from "./signals.js";

type TenantEntry = {
  services: Map<string, ServiceSnapshot>;
  resources: Map<string, ResourceSnapshot>;
};

export type PolicyVersion = { policy: Policy; timeZone: string };

const MAX_TENANTS = 10_000;

/**
 * Services and resources (with their overrides) as availability and booking
 * writes need them, kept in memory so a hold costs one round trip, not two.
 * A copy may be stale: every write sends the revisions it checked against
 * and the database refuses the write (HF001) if either changed, whereupon
 * the caller forgets the tenant and retries; ListSlots compares revisions
 * read with its bookings. Notifications of catalog changes drop a tenant's
 * copies on every instance, so staleness is rare and short. Policy
 * versions never change once written and are kept as they are.
 */
export class CatalogCache {
  private readonly tenants = new Map<string, TenantEntry>();
  private readonly versions = new Map<string, PolicyVersion>();

  constructor(
    private readonly db: Queryable,
    signals: Signals | undefined,
  ) {
    signals?.on(CHANNEL.catalog, (tenantId: string) => this.forget(tenantId));
    signals?.on("reconnected", () => this.tenants.clear());
  }

  forget(tenantId: string): void {
    this.tenants.delete(tenantId);
  }

  async service(tenantId: string, id: string): Promise<ServiceSnapshot | undefined> {
    const cached = this.tenants.get(tenantId)?.services.get(id);
    if (cached) return cached;
    const { rows } = await this.db.query<ServiceSnapshot>(
      `SELECT s.id, s.active, s.revision, s.policy_version AS "policyVersion", p.policy, p.time_zone AS "timeZone",
              array(SELECT sr.resource_id FROM service_resources sr
                    WHERE sr.tenant_id = s.tenant_id AND sr.service_id = s.id ORDER BY sr.position) AS "resourceIds"
       FROM services s
       JOIN policy_versions p ON p.tenant_id = s.tenant_id AND p.service_id = s.id AND p.version = s.policy_version
       WHERE s.tenant_id = $1 AND s.id = $2`,
      [tenantId, id],
    );
    const found = rows[0];
    if (found) this.entry(tenantId).services.set(id, found);
    return found;
  }

  /** The resources among `ids` that exist in the tenant. */
  async resources(
    tenantId: string,
    ids: readonly string[],
  ): Promise<Map<string, ResourceSnapshot>> {
    const entry = this.tenants.get(tenantId);
    const out = new Map<string, ResourceSnapshot>();
    const missing: string[] = [];
    for (const id of ids) {
      const cached = entry?.resources.get(id);
      if (cached) out.set(id, cached);
      else missing.push(id);
    }
    if (missing.length === 0) return out;
    const { rows } = await this.db.query<ResourceSnapshot>(
      `SELECT r.id, r.active, r.revision, r.capacity, r.time_zone AS "timeZone",
              r.weekly_schedule AS "weeklySchedule", ${OVERRIDES_JSON} AS overrides
       FROM resources r WHERE r.tenant_id = $1 AND r.id = ANY ($2::text[])`,
      [tenantId, missing],
    );
    const fresh = this.entry(tenantId);
    for (const r of rows) {
      fresh.resources.set(r.id, r);
      out.set(r.id, r);
    }
    return out;
  }

  async resource(tenantId: string, id: string): Promise<ResourceSnapshot | undefined> {
    return (await this.resources(tenantId, [id])).get(id);
  }

  /** A service's policy as of a version (bookings keep the version they were made under). */
  async policyVersion(
    tenantId: string,
    serviceId: string,
    version: number,
  ): Promise<PolicyVersion | undefined> {
    const key = `${tenantId}/${serviceId}/${version}`;
    const cached = this.versions.get(key);
    if (cached) return cached;
    const { rows } = await this.db.query<PolicyVersion>(
      `SELECT policy, time_zone AS "timeZone" FROM policy_versions
       WHERE tenant_id = $1 AND service_id = $2 AND version = $3`,
      [tenantId, serviceId, version],
    );
    const found = rows[0];
    if (found) {
      if (this.versions.size >= MAX_TENANTS) this.versions.clear();
      this.versions.set(key, found);
    }
    return found;
  }

  private entry(tenantId: string): TenantEntry {
    let entry = this.tenants.get(tenantId);
    if (!entry) {
      if (this.tenants.size >= MAX_TENANTS) this.tenants.clear();
      entry = { services: new Map(), resources: new Map() };
      this.tenants.set(tenantId, entry);
    }
    return entry;
  }
}

import type { ResourceSnapshot, ServiceSnapshot } from "../domain/booking.js";
import { loadBookingTarget } from "./bookings.js";
import type { Queryable } from "./pool.js";
import { CHANNEL, type Signals } from "./signals.js";

type TenantEntry = {
  services: Map<string, ServiceSnapshot>;
  resources: Map<string, ResourceSnapshot>;
};

const MAX_TENANTS = 10_000;

/**
 * Services and resources as booking writes need them, kept in memory so a
 * hold costs one round trip, not two. A copy may be stale: every write
 * sends the revisions it checked against and the database refuses the
 * write (HF001) if either changed, whereupon the caller forgets the tenant
 * and retries. Notifications of catalog changes drop a tenant's copies on
 * every instance, so staleness is rare and short.
 */
export class CatalogCache {
  private readonly tenants = new Map<string, TenantEntry>();

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

  async bookingTarget(
    tenantId: string,
    serviceId: string,
    resourceId: string,
  ): Promise<{ service: ServiceSnapshot | undefined; resource: ResourceSnapshot | undefined }> {
    const entry = this.tenants.get(tenantId);
    const service = entry?.services.get(serviceId);
    const resource = entry?.resources.get(resourceId);
    if (service && resource) return { service, resource };
    const loaded = await loadBookingTarget(this.db, tenantId, serviceId, resourceId);
    const fresh = this.entry(tenantId);
    if (loaded.service) fresh.services.set(serviceId, loaded.service);
    if (loaded.resource) fresh.resources.set(resourceId, loaded.resource);
    return loaded;
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

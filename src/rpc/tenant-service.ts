import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import type { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import type { Db } from "../db/pool.js";
import { setQuotas } from "../db/quotas.js";
import { type RateDefaults, setTenantRateLimit } from "../db/rate-limits.js";
import { createTenant, listTenants, type TenantRow, tenantNotFound } from "../db/tenants.js";
import type { Quotas } from "../domain/quota.js";
import { timestampOfDate } from "./convert.js";
import { dbOf } from "./idempotency.js";
import { apiKeyOf } from "./key-service.js";
import { readPage, writePage } from "./paging.js";
import * as v from "./validate.js";

export function tenantOf(t: TenantRow) {
  return { id: t.id, name: t.name, createTime: timestampOfDate(t.create_time) };
}

/** Quotas as the proto's Quotas message (unset: unlimited). */
export function quotasMessage(q: Quotas) {
  return {
    bookingsPerMonth: q.bookings_per_month,
    activeHolds: q.active_holds,
    resources: q.resources,
    services: q.services,
    webhooks: q.webhooks,
    apiKeys: q.api_keys,
  };
}

export function tenantService(
  base: Db,
  rateDefaults: RateDefaults,
): ServiceImpl<typeof TenantService> {
  return {
    async createTenant(req, ctx) {
      const f = v.parseRequest(z.object({ name: v.name }), req);
      const { tenant, secret, key } = await createTenant(dbOf(ctx, base), f.name);
      return { tenant: tenantOf(tenant), apiKey: secret, key: apiKeyOf(key) };
    },

    async setTenantRateLimit(req, ctx) {
      const f = v.parseRequest(z.object({ tenantId: v.id, rateLimit: v.rateLimit }), req);
      const db = dbOf(ctx, base);
      if (!(await setTenantRateLimit(db, f.tenantId, f.rateLimit))) {
        throw tenantNotFound(f.tenantId);
      }
      const limit = f.rateLimit ?? rateDefaults.tenant;
      return {
        rateLimit: { requestsPerSecond: limit.perSecond, burst: limit.burst },
        isDefault: f.rateLimit === undefined,
      };
    },

    async setTenantQuotas(req, ctx) {
      const f = v.parseRequest(z.object({ tenantId: v.id, quotas: v.quotas }), req);
      if (!(await setQuotas(dbOf(ctx, base), f.tenantId, f.quotas)))
        throw tenantNotFound(f.tenantId);
      return { quotas: quotasMessage(f.quotas) };
    },

    async listTenants(req, ctx) {
      v.parseRequest(z.object(v.pageFields), req);
      const page = readPage(ctx, req, {});
      const rows = await listTenants(base, { after: page.after, limit: page.size + 1 });
      const { items, nextPageToken } = writePage(rows, page, (t) => t.id);
      return { tenants: items.map(tenantOf), nextPageToken };
    },
  };
}

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import type {
  CatalogService,
  Policy as PolicyMessage,
  PolicySchema,
  ServiceSchema,
} from "../../gen/holdfast/v1/catalog_pb.js";
import type { Db } from "../db/pool.js";
import {
  getService,
  insertService,
  listPolicyVersions,
  listServices,
  lockService,
  type ServiceRow,
  updateService,
} from "../db/services.js";
import {
  checkPolicy,
  MAX_SERVICE_RESOURCES,
  type Policy,
  weeklyWindowsForDisplay,
} from "../domain/catalog.js";
import { invalid, Rejection, serviceNotFound } from "../domain/rejection.js";
import { principalOf } from "./auth.js";
import { durationOfMs, msOfDuration, timestampOfDate } from "./convert.js";
import { dbOf } from "./idempotency.js";
import { numberedKey, readPage, writePage } from "./paging.js";
import { quotaForRevival, withinQuota } from "./quota.js";
import * as v from "./validate.js";

/** A policy message, checked against the domain's rules, with defaults filled in. */
const policy = v.message<PolicyMessage>().transform((p, ctx) => {
  if (p === undefined) {
    ctx.addIssue({ code: "custom", message: "is required (at least its durations)" });
    return z.NEVER;
  }
  const ms = (d: PolicyMessage["holdTtl"]) => (d === undefined ? null : msOfDuration(d));
  const checked = checkPolicy(
    {
      durationsMs: p.durations.map(msOfDuration),
      slotIntervalMs: ms(p.slotInterval),
      bufferBeforeMs: ms(p.bufferBefore),
      bufferAfterMs: ms(p.bufferAfter),
      minNoticeMs: ms(p.minNotice),
      maxAdvanceMs: ms(p.maxAdvance),
      businessHours: p.businessHours,
      holdTtlMs: ms(p.holdTtl),
      maxHoldTtlMs: ms(p.maxHoldTtl),
    },
    "",
  );
  v.reportViolations(ctx, checked.violations);
  return checked.value;
});

const resourceIds = z
  .array(v.id)
  .max(MAX_SERVICE_RESOURCES, `must list at most ${MAX_SERVICE_RESOURCES} resources`)
  .superRefine((ids, ctx) => {
    ids.forEach((id, i) => {
      if (ids.indexOf(id) !== i)
        ctx.addIssue({ code: "custom", message: "is listed twice", path: [i] });
    });
  });

const timeZoneOrUtc = z
  .string()
  .transform((tz) => tz || "UTC")
  .pipe(v.timeZone);

const createSchema = z.object({
  name: v.name,
  resourceIds,
  policy,
  timeZone: timeZoneOrUtc,
  metadata: v.metadata,
});

const UPDATABLE = ["name", "resource_ids", "policy", "time_zone", "metadata", "active"] as const;
const updateFields = {
  name: v.name,
  resourceIds,
  policy,
  timeZone: timeZoneOrUtc,
  metadata: v.metadata,
  active: z.boolean(),
};

export function policyOf(p: Policy): MessageInitShape<typeof PolicySchema> {
  const d = (ms: number | null) => (ms === null ? undefined : durationOfMs(ms));
  return {
    durations: p.durationsMs.map(durationOfMs),
    slotInterval: d(p.slotIntervalMs),
    bufferBefore: d(p.bufferBeforeMs),
    bufferAfter: d(p.bufferAfterMs),
    minNotice: d(p.minNoticeMs),
    maxAdvance: d(p.maxAdvanceMs),
    businessHours: weeklyWindowsForDisplay(p.businessHours),
    holdTtl: d(p.holdTtlMs),
    maxHoldTtl: d(p.maxHoldTtlMs),
  };
}

export function serviceOf(s: ServiceRow): MessageInitShape<typeof ServiceSchema> {
  return {
    id: s.id,
    name: s.name,
    resourceIds: s.resource_ids,
    policy: policyOf(s.policy),
    policyVersion: s.policy_version,
    timeZone: s.time_zone,
    metadata: s.metadata,
    active: s.active,
    createTime: timestampOfDate(s.create_time),
    updateTime: timestampOfDate(s.update_time),
  };
}

export function catalogService(base: Db): ServiceImpl<typeof CatalogService> {
  return {
    async createService(req, ctx) {
      const f = v.parseRequest(createSchema, req);
      const tenantId = principalOf(ctx).tenantId;
      const row = await withinQuota(dbOf(ctx, base), tenantId, "services", (tx) =>
        insertService(tx, tenantId, f),
      );
      return { service: serviceOf(row) };
    },

    async getService(req, ctx) {
      const { policyVersion } = v.parseRequest(
        z.object({ policyVersion: z.number().int().min(0) }),
        req,
      );
      const tenantId = principalOf(ctx).tenantId;
      const row =
        req.serviceId === ""
          ? undefined
          : await getService(base, tenantId, req.serviceId, policyVersion || undefined);
      if (row) return { service: serviceOf(row) };
      if (policyVersion > 0 && (await getService(base, tenantId, req.serviceId))) {
        throw new Rejection(
          "POLICY_VERSION_NOT_FOUND",
          `service "${req.serviceId}" has no policy version ${policyVersion}`,
          {
            fieldViolations: [{ field: "policy_version", description: "no such version" }],
          },
        );
      }
      throw serviceNotFound(req.serviceId);
    },

    async listServices(req, ctx) {
      const filters = v.parseRequest(
        z.object({ ...v.pageFields, includeInactive: z.boolean(), resourceId: v.optionalId }),
        req,
      );
      const page = readPage(ctx, req, { i: filters.includeInactive, r: filters.resourceId });
      const rows = await listServices(base, principalOf(ctx).tenantId, {
        after: page.after,
        limit: page.size + 1,
        includeInactive: filters.includeInactive,
        resourceId: filters.resourceId || undefined,
      });
      const { items, nextPageToken } = writePage(rows, page, (s) => s.id);
      return { services: items.map(serviceOf), nextPageToken };
    },

    async updateService(req, ctx) {
      const target = req.service;
      if (!target || target.id === "")
        throw invalid([{ field: "service.id", description: "is required" }]);
      const paths = v.updatePaths(req.updateMask, target, UPDATABLE);
      const changes = v.parseUpdate("service", updateFields, target, paths);
      const db = dbOf(ctx, base);
      const tenantId = principalOf(ctx).tenantId;
      const row = await db.transaction(async (tx) => {
        // Bringing an inactive service back adds one to the services quota:
        // whether it is inactive is read under the quota's lock.
        if (changes.active === true) {
          await quotaForRevival(
            tx,
            tenantId,
            "services",
            async () => (await lockService(tx, tenantId, target.id))?.active === false,
          );
        }
        return updateService(tx, tenantId, target.id, changes);
      });
      if (!row) throw serviceNotFound(target.id, "service.id");
      return { service: serviceOf(row) };
    },

    async listPolicyVersions(req, ctx) {
      v.parseRequest(z.object({ ...v.pageFields, serviceId: v.id }), req);
      const tenantId = principalOf(ctx).tenantId;
      const page = readPage(ctx, req, { s: req.serviceId });
      if (!(await getService(base, tenantId, req.serviceId)))
        throw serviceNotFound(req.serviceId, "service_id");
      const rows = await listPolicyVersions(base, tenantId, req.serviceId, {
        before: page.after === undefined ? undefined : numberedKey(page.after).n,
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (r) => String(r.version));
      return {
        versions: items.map((r) => ({
          version: r.version,
          policy: policyOf(r.policy),
          timeZone: r.time_zone,
          createTime: timestampOfDate(r.create_time),
        })),
        nextPageToken,
      };
    },
  };
}

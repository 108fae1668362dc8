import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type CreateOverrideRequest,
  type OverrideKind,
  OverrideKindSchema,
  type OverrideSchema,
  type RecurrenceFrequency,
  RecurrenceFrequencySchema,
  ResourceKind,
  ResourceKindSchema,
  type ResourceSchema,
  type ResourceService,
  type WeeklyScheduleSchema,
} from "../../gen/holdfast/v1/resource_pb.js";
import {
  deleteOverride,
  insertOverride,
  listOverrides,
  type OverrideRow,
} from "../db/overrides.js";
import type { Db } from "../db/pool.js";
import {
  getResource,
  insertResource,
  listResources,
  liveBlocks,
  lockResource,
  markExclusive,
  type ResourceKindName,
  type ResourceRow,
  updateResource,
} from "../db/resources.js";
import { checkCapacity } from "../domain/capacity.js";
import { checkWeeklyWindows, weeklyWindowsForDisplay } from "../domain/catalog.js";
import { checkOverride } from "../domain/overrides.js";
import { invalid, Rejection, resourceNotFound } from "../domain/rejection.js";
import { formatClockTime } from "../domain/time.js";
import { principalOf } from "./auth.js";
import { timestampOfDate } from "./convert.js";
import { enumNames } from "./enum-names.js";
import { dbOf } from "./idempotency.js";
import { readPage, writePage } from "./paging.js";
import { quotaForRevival, withinQuota } from "./quota.js";
import * as v from "./validate.js";

const KIND = enumNames<ResourceKind, ResourceKindName>(ResourceKindSchema);

const kind = v
  .enumValue<ResourceKind>(ResourceKindSchema, ResourceKind.OTHER)
  .transform((k) => KIND.nameOf(k) as ResourceKindName);
const capacity = z
  .number()
  .int()
  .min(0)
  .max(10_000, "must be at most 10000")
  .transform((c) => (c === 0 ? 1 : c));

type ScheduleInput =
  | { windows: { weekday: number; startTime: string; endTime: string }[] }
  | undefined;

/** A weekly schedule, validated and normalised; null when unset (available at all hours). */
const weeklySchedule = v.message<NonNullable<ScheduleInput>>().transform((s, ctx) => {
  if (s === undefined) return null;
  if (s.windows.length > 100) {
    ctx.addIssue({ code: "custom", message: "must have at most 100 windows", path: ["windows"] });
    return z.NEVER;
  }
  const checked = checkWeeklyWindows(s.windows, "windows");
  v.reportViolations(ctx, checked.violations);
  return checked.value;
});

const createSchema = z.object({
  name: v.name,
  kind,
  timeZone: v.timeZone,
  capacity,
  metadata: v.metadata,
  weeklySchedule,
});

const UPDATABLE = ["name", "kind", "time_zone", "capacity", "metadata", "active"] as const;
const updateFields = {
  name: v.name,
  kind,
  timeZone: v.timeZone,
  capacity,
  metadata: v.metadata,
  active: z.boolean(),
};

const OVERRIDE_KIND = enumNames<OverrideKind, "block" | "open">(OverrideKindSchema);
const FREQUENCY = enumNames<RecurrenceFrequency, "weekly" | "monthly">(RecurrenceFrequencySchema);

/** An override request checked by the domain's rules: the rule availability reads, and its title. */
const overrideSchema = z
  .object({
    resourceId: v.id,
    kind: v.enumValue<OverrideKind>(OverrideKindSchema),
    title: v.title,
  })
  .loose()
  .transform((f, ctx) => {
    const req = f as unknown as CreateOverrideRequest;
    const r = req.recurrence;
    const checked = checkOverride({
      kind: OVERRIDE_KIND.nameOf(f.kind) ?? "open",
      allDay: req.allDay,
      startDate: req.startDate,
      endDate: req.endDate,
      startTime: req.startTime,
      endTime: req.endTime,
      recurrence: r
        ? {
            frequency: FREQUENCY.nameOf(r.frequency) ?? "unspecified",
            interval: r.interval,
            weekdays: r.weekdays,
            monthDay: r.monthDay,
            weekOfMonth: r.weekOfMonth,
            weekday: r.weekday,
            until: r.until,
          }
        : null,
    });
    v.reportViolations(ctx, checked.violations);
    return { title: f.title, rule: checked.value };
  });

function overrideOf(o: OverrideRow): MessageInitShape<typeof OverrideSchema> {
  const r = o.recurrence;
  return {
    id: o.id,
    resourceId: o.resourceId,
    kind: OVERRIDE_KIND.valueOf(o.kind),
    title: o.title,
    allDay: o.allDay,
    startDate: o.startDate,
    endDate: o.endDate ?? "",
    startTime: o.startMinute === null ? "" : formatClockTime(o.startMinute),
    endTime: o.endMinute === null ? "" : formatClockTime(o.endMinute),
    recurrence: r
      ? {
          frequency: FREQUENCY.valueOf(r.frequency),
          interval: r.interval,
          weekdays: r.weekdays,
          monthDay: r.monthDay ?? 0,
          weekOfMonth: r.weekOfMonth ?? 0,
          weekday: r.weekday ?? 0,
          until: r.until ?? "",
        }
      : undefined,
    createTime: timestampOfDate(o.createTime),
  };
}

export function resourceOf(r: ResourceRow): MessageInitShape<typeof ResourceSchema> {
  return {
    id: r.id,
    name: r.name,
    kind: KIND.valueOf(r.kind),
    timeZone: r.time_zone,
    capacity: r.capacity,
    metadata: r.metadata,
    active: r.active,
    createTime: timestampOfDate(r.create_time),
    updateTime: timestampOfDate(r.update_time),
    weeklySchedule: scheduleOf(r.weekly_schedule),
  };
}

function scheduleOf(
  windows: ResourceRow["weekly_schedule"],
): MessageInitShape<typeof WeeklyScheduleSchema> | undefined {
  return windows === null ? undefined : { windows: weeklyWindowsForDisplay(windows) };
}

export function resourceService(base: Db): ServiceImpl<typeof ResourceService> {
  async function existing(
    tenantId: string,
    id: string,
    field = "resource_id",
  ): Promise<ResourceRow> {
    const row = id === "" ? undefined : await getResource(base, tenantId, id);
    if (!row) throw resourceNotFound(id, field);
    return row;
  }

  return {
    async createResource(req, ctx) {
      const f = v.parseRequest(createSchema, req);
      const tenantId = principalOf(ctx).tenantId;
      const row = await withinQuota(dbOf(ctx, base), tenantId, "resources", (tx) =>
        insertResource(tx, tenantId, f),
      );
      return { resource: resourceOf(row) };
    },

    async getResource(req, ctx) {
      return { resource: resourceOf(await existing(principalOf(ctx).tenantId, req.resourceId)) };
    },

    async listResources(req, ctx) {
      const filters = v.parseRequest(
        z.object({
          ...v.pageFields,
          includeInactive: z.boolean(),
          kind: z.number(),
          serviceId: v.optionalId,
        }),
        req,
      );
      const kindName =
        filters.kind === 0 ? undefined : v.parseRequest(z.object({ kind }), req).kind;
      const serviceId = filters.serviceId || undefined;
      const page = readPage(ctx, req, { i: filters.includeInactive, k: kindName, s: serviceId });
      const rows = await listResources(base, principalOf(ctx).tenantId, {
        after: page.after,
        limit: page.size + 1,
        includeInactive: filters.includeInactive,
        kind: kindName,
        serviceId,
      });
      const { items, nextPageToken } = writePage(rows, page, (r) => r.id);
      return { resources: items.map(resourceOf), nextPageToken };
    },

    async updateResource(req, ctx) {
      const tenantId = principalOf(ctx).tenantId;
      const target = req.resource;
      if (!target || target.id === "")
        throw invalid([{ field: "resource.id", description: "is required" }]);
      const paths = v.updatePaths(req.updateMask, target, UPDATABLE);
      const changes = v.parseUpdate("resource", updateFields, target, paths);
      const row = await dbOf(ctx, base).transaction(async (tx) => {
        // A new capacity is checked against the bookings under the lock
        // every booking write of the resource takes, so none can be added
        // between the check and the change.
        if (changes.capacity !== undefined) await lockResource(tx, tenantId, target.id);
        // Bringing a deleted resource back adds one to the resources quota:
        // whether it is deleted is read under the quota's lock.
        if (changes.active === true) {
          await quotaForRevival(
            tx,
            tenantId,
            "resources",
            async () =>
              (await getResource(tx, tenantId, target.id, { lock: true }))?.active === false,
          );
        }
        const current = await getResource(tx, tenantId, target.id, { lock: true });
        if (!current) return undefined;
        if (changes.capacity !== undefined && changes.capacity < current.capacity) {
          checkCapacity(
            { id: current.id, timeZone: changes.timeZone ?? current.time_zone },
            changes.capacity,
            await liveBlocks(tx, tenantId, target.id),
          );
        }
        if (changes.capacity !== undefined && changes.capacity !== current.capacity) {
          await markExclusive(tx, tenantId, target.id, changes.capacity);
        }
        return updateResource(tx, tenantId, target.id, changes);
      });
      if (!row) throw resourceNotFound(target.id, "resource.id");
      return { resource: resourceOf(row) };
    },

    async deleteResource(req, ctx) {
      const row = await updateResource(dbOf(ctx, base), principalOf(ctx).tenantId, req.resourceId, {
        active: false,
      });
      if (!row) throw resourceNotFound(req.resourceId);
      return { resource: resourceOf(row) };
    },

    async setWeeklySchedule(req, ctx) {
      const tenantId = principalOf(ctx).tenantId;
      const { weeklySchedule: windows } = v.parseRequest(z.object({ weeklySchedule }), req);
      const row = await updateResource(dbOf(ctx, base), tenantId, req.resourceId, {
        weeklySchedule: windows,
      });
      if (!row) throw resourceNotFound(req.resourceId, "resource_id");
      return { resource: resourceOf(row) };
    },

    async createOverride(req, ctx) {
      const f = v.parseRequest(overrideSchema, req);
      const row = await insertOverride(
        dbOf(ctx, base),
        principalOf(ctx).tenantId,
        f.title,
        f.rule,
        req.resourceId,
      );
      if (!row) throw resourceNotFound(req.resourceId, "resource_id");
      return { override: overrideOf(row) };
    },

    async listOverrides(req, ctx) {
      v.parseRequest(z.object({ ...v.pageFields, resourceId: v.id }), req);
      const tenantId = principalOf(ctx).tenantId;
      const page = readPage(ctx, req, { r: req.resourceId });
      await existing(tenantId, req.resourceId, "resource_id");
      const rows = await listOverrides(base, tenantId, req.resourceId, {
        after: page.after,
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (o) => o.id);
      return { overrides: items.map(overrideOf), nextPageToken };
    },

    async deleteOverride(req, ctx) {
      v.parseRequest(z.object({ resourceId: v.id, overrideId: v.id }), req);
      const tenantId = principalOf(ctx).tenantId;
      if (!(await deleteOverride(dbOf(ctx, base), tenantId, req.resourceId, req.overrideId))) {
        await existing(tenantId, req.resourceId, "resource_id");
        throw new Rejection(
          "OVERRIDE_NOT_FOUND",
          `resource "${req.resourceId}" has no override "${req.overrideId}"`,
          {
            fieldViolations: [{ field: "override_id", description: "no such override" }],
          },
        );
      }
      return {};
    },
  };
}

import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import type { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import { checkDuration } from "../domain/booking.js";
import { DAY_MS } from "../domain/time.js";
import { principalOf } from "./auth.js";
import { serviceNotFound } from "./catalog-service.js";
import { slotOf } from "./convert.js";
import type { SlotFinder } from "./slots.js";
import * as v from "./validate.js";

const MAX_RANGE_MS = 62 * DAY_MS;

const listSchema = z
  .object({
    serviceId: v.id,
    resourceIds: z
      .array(v.id)
      .max(100, "must list at most 100 resources")
      .refine((ids) => new Set(ids).size === ids.length, "lists a resource twice"),
    startTime: v.timestampMs,
    endTime: v.timestampMs,
    duration: v.durationMs,
  })
  .refine((f) => f.endTime > f.startTime, {
    message: "must be after start_time",
    path: ["endTime"],
    when: (p) => !p.issues.some((i) => i.path?.[0] === "startTime" || i.path?.[0] === "endTime"),
  })
  .refine((f) => f.endTime - f.startTime <= MAX_RANGE_MS, {
    message: "must be at most 62 days after start_time",
    path: ["endTime"],
    when: (p) => !p.issues.some((i) => i.path?.[0] === "startTime" || i.path?.[0] === "endTime"),
  });

export function availabilityService(
  catalog: CatalogCache,
  finder: SlotFinder,
): ServiceImpl<typeof AvailabilityService> {
  return {
    async listSlots(req, ctx) {
      const f = v.parseRequest(listSchema, req);
      const tenantId = principalOf(ctx).tenantId;
      const service = await catalog.service(tenantId, f.serviceId);
      if (!service) throw serviceNotFound(f.serviceId, "service_id");
      const durationMs = f.duration ?? (service.policy.durationsMs[0] as number);
      checkDuration(service.policy, durationMs, "duration");
      if (!service.active) return { slots: [], timeZones: {} };
      const resources = await finder.resourcesOf(tenantId, service, f.resourceIds);
      const found = await finder.free(
        tenantId,
        service,
        resources,
        { start: f.startTime, end: f.endTime },
        durationMs,
      );
      return {
        slots: finder.offerAll(tenantId, service, found.slots).map(slotOf),
        timeZones: Object.fromEntries(found.resources.map((r) => [r.id, r.timeZone])),
      };
    },
  };
}

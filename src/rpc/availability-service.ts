import { create } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type AvailabilityService,
  type ListSlotsRequest,
  ListSlotsResponseSchema,
} from "../../gen/holdfast/v1/availability_pb.js";
import type { SlotFinder } from "../booking/slot-finder.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import { mustRetry } from "../db/errors.js";
import { type FreeSlot, slotFollows } from "../domain/availability.js";
import { checkDuration } from "../domain/booking.js";
import { serviceNotFound } from "../domain/rejection.js";
import { DAY_MS } from "../domain/time.js";
import { principalOf } from "./auth.js";
import { slotOf } from "./convert.js";
import { answersInBinary } from "./http.js";
import { invalidPageToken, numberedKey, readPage, writePage } from "./paging.js";
import { encodeSlots } from "./slot-wire.js";
import * as v from "./validate.js";

const MAX_RANGE_MS = 62 * DAY_MS;
const SLOT_PAGES = { defaultSize: 1000, maxSize: 5000 };
/**
 * Slots are computed in rounds until a page is full, each reading its own
 * stretch of bookings, so a page costs about what its own slots cost (see
 * roundStarts). GRID_STARTS_PER_ROUND bounds a round: a month of one
 * resource is still one round and one round trip.
 */
const GRID_STARTS_PER_ROUND = 20_000;
/**
 * The most grid starts one call judges, over all its rounds: a service of
 * many resources on a fine grid with little free could otherwise cost
 * seconds a call. Past it the page ends short (even empty) with a
 * next_page_token that searches on from where this one stopped.
 */
const GRID_STARTS_PER_CALL = 200_000;
/** A first round covers this many grid starts per slot the page needs. */
const FIRST_ROUND_STARTS_PER_SLOT = 4;

/**
 * How many grid starts (resources x starts on the grid) the next round of
 * a page covers: `needed` more slots, at the rate of free slots per grid
 * start the rounds so far found (`found` in `searched`), with a quarter again
 * to spare, so that one more round usually fills the page; twice the last
 * round while none was found. Within 1..GRID_STARTS_PER_ROUND.
 */
export function roundStarts(
  needed: number,
  sofar?: { found: number; searched: number; last: number },
): number {
  const want = !sofar
    ? FIRST_ROUND_STARTS_PER_SLOT * needed
    : sofar.found === 0
      ? 2 * sofar.last
      : Math.ceil(((1.25 * needed) / sofar.found) * sofar.searched);
  return Math.max(1, Math.min(GRID_STARTS_PER_ROUND, want));
}

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
    ...v.pageFields,
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

/** The last slot of the previous page, from its token's key `start|resource`. */
function afterKey(key: string): { start: number; resourceId: string } {
  const { n, rest } = numberedKey(key);
  return { start: n, resourceId: rest };
}

export function availabilityService(
  catalog: CatalogCache,
  finder: SlotFinder,
): ServiceImpl<typeof AvailabilityService> {
  return {
    async listSlots(req, ctx) {
      // Computed again if the service changed under it (see SlotFinder.free).
      for (let attempt = 1; ; attempt++) {
        try {
          return await listSlots(req, ctx);
        } catch (err) {
          if (!mustRetry(err) || attempt >= 3) throw err;
        }
      }
    },
  };

  async function listSlots(req: ListSlotsRequest, ctx: HandlerContext) {
    const f = v.parseRequest(listSchema, req);
    const tenantId = principalOf(ctx).tenantId;
    const service = await catalog.service(tenantId, f.serviceId);
    if (!service) throw serviceNotFound(f.serviceId, "service_id");
    const durationMs = f.duration ?? (service.policy.durationsMs[0] as number);
    checkDuration(service.policy, durationMs, "duration");
    if (!service.active) return { slots: [], timeZones: {} };
    const page = readPage(
      ctx,
      req,
      [f.serviceId, f.resourceIds, f.startTime, f.endTime, durationMs],
      SLOT_PAGES,
    );
    const after = page.after === undefined ? undefined : afterKey(page.after);
    // A token names a slot of this range; one edited to reach outside it
    // would widen the search past the 62-day limit.
    if (after && (after.start < f.startTime || after.start >= f.endTime)) throw invalidPageToken();
    let resources = await finder.resourcesOf(tenantId, service, f.resourceIds);
    const slots: FreeSlot[] = [];
    const stepMs = service.policy.slotIntervalMs ?? durationMs;
    const perStep = Math.max(1, resources.length);
    let sofar: { found: number; searched: number; last: number } | undefined;
    // A day a round at least (fewer round trips), unless a day of every
    // resource is more than a round may judge; one grid step at the least.
    const leastSteps = Math.max(
      1,
      Math.min(Math.floor(DAY_MS / stepMs), Math.floor(GRID_STARTS_PER_ROUND / perStep)),
    );
    let from = after?.start ?? f.startTime;
    while (from < f.endTime && slots.length <= page.size) {
      const left = GRID_STARTS_PER_CALL - (sofar?.searched ?? 0);
      if (left < perStep) break;
      const starts = Math.min(roundStarts(page.size + 1 - slots.length, sofar), left);
      const steps = Math.min(
        Math.max(leastSteps, Math.floor(starts / perStep)),
        Math.floor(left / perStep),
      );
      const to = Math.min(f.endTime, from + steps * stepMs);
      const found = await finder.free(
        tenantId,
        service,
        resources,
        { start: from, end: to },
        durationMs,
      );
      for (const s of found.slots) if (!after || slotFollows(s, after)) slots.push(s);
      resources = found.resources;
      const last = Math.ceil((to - from) / stepMs) * perStep;
      sofar = { found: slots.length, searched: (sofar?.searched ?? 0) + last, last };
      from = to;
    }
    const written = writePage(slots, page, (s) => `${s.start}|${s.resourceId}`);
    const { items } = written;
    // Stopped at GRID_STARTS_PER_CALL before the page filled: the next page
    // goes on from every resource's slots at `from`.
    const nextPageToken =
      written.nextPageToken || (from < f.endTime ? page.tokenFor(`${from}|`) : "");
    const answer = create(ListSlotsResponseSchema, {
      timeZones: Object.fromEntries(resources.map((r) => [r.id, r.timeZone])),
      nextPageToken,
    });
    const offered = finder.offerAll(tenantId, service, items, resources).map(slotOf);
    if (!answersInBinary(ctx) || offered.length === 0) {
      answer.slots = offered;
      return answer;
    }
    // Binary answers carry the slots already encoded, as the field's bytes
    // among the message's unknown fields, which protobuf-es writes out
    // verbatim (after the known fields: decoders take fields in any
    // order). The bytes start with field 1's tag, which the writer adds.
    answer.$unknown = [
      { no: 1, wireType: WireType.LengthDelimited, data: encodeSlots(offered).subarray(1) },
    ];
    return answer;
  }
}

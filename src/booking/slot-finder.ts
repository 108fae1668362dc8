import { loadOccupancy, type Occupancy } from "../db/bookings.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import { serviceChanged } from "../db/errors.js";
import type { Queryable } from "../db/pool.js";
import {
  computeSlots,
  type FreeSlot,
  type Interval,
  nearestAlternatives,
  type ServiceRules,
} from "../domain/availability.js";
import { calendarOf, type ResourceSnapshot, type ServiceSnapshot } from "../domain/booking.js";
import { type OfferedSlot, Rejection } from "../domain/rejection.js";
import { type SlotRef, SlotSigner } from "../domain/slot-id.js";
import { DAY_MS, HOUR_MS } from "../domain/time.js";

/** How far around a taken time alternatives are looked for first. */
const ALTERNATIVES_BEFORE_MS = 12 * HOUR_MS;
const ALTERNATIVES_AFTER_MS = 48 * HOUR_MS;
/**
 * How far ahead they are looked for when fewer than three are free that
 * near: a taken Friday afternoon is offered Monday, a weekly resource's
 * full day the next weeks' times.
 */
const ALTERNATIVES_REACH_MS = 14 * DAY_MS;
const ALTERNATIVES_OFFERED = 3;
/**
 * The most grid starts (resources x starts on the grid) one search for
 * alternatives judges, so a refusal costs the same bounded work on a
 * service of 500 resources on a one-minute grid as on one room.
 */
const ALTERNATIVES_GRID_STARTS = 50_000;

/**
 * Where to look for alternatives to a time asked for at `startMs`: from
 * `beforeMs` before it to `afterMs` after it, narrowed on both sides alike
 * so that `resources` resources on a grid of `stepMs` hold at most
 * ALTERNATIVES_GRID_STARTS starts.
 */
export function alternativesRange(
  startMs: number,
  beforeMs: number,
  afterMs: number,
  stepMs: number,
  resources: number,
): Interval {
  const most = Math.max(1, Math.floor(ALTERNATIVES_GRID_STARTS / Math.max(1, resources))) * stepMs;
  const scale = Math.min(1, most / (beforeMs + afterMs));
  return {
    start: startMs - Math.floor(beforeMs * scale),
    end: startMs + Math.ceil(afterMs * scale),
  };
}
/**
 * When many callers lose the same slot at once, the first computes the
 * alternatives and those that ask while it is still computing share its
 * answer (unless a booking of the tenant changes through this instance
 * meanwhile). Nothing is kept once it is answered: a later caller reads
 * afresh, so what it is offered reflects every booking and rule committed
 * before it asked, on any instance.
 */
const MAX_SHARING_TENANTS = 1_000;

/** A booking being moved: its id, and where it is now. */
export type Moving = { id: string; resourceId: string; startMs: number; endMs: number };

/** A refused time to offer alternatives for; `moving`: the booking a refused move was of. */
type Requested = { resourceId: string; startMs: number; durationMs: number; moving?: Moving };

/**
 * Free slots of a service, as ListSlots, SLOT_UNAVAILABLE alternatives and
 * the fair pick of a resource all need them: one round trip for the
 * database's clock and the bookings of the range, cached catalog copies
 * checked against the revisions read with them, then the pure engine.
 */
export class SlotFinder {
  private readonly signer: SlotSigner;
  /** Recent alternatives, per tenant, by the request they answered. */
  /** Alternatives being computed, by tenant, then by what was asked (see alternatives). */
  private readonly computing = new Map<string, Map<string, Promise<OfferedSlot[]>>>();

  constructor(
    private readonly db: Queryable,
    private readonly catalog: CatalogCache,
    key: Buffer,
  ) {
    this.signer = new SlotSigner(key);
  }

  /**
   * The resources to search: `ids` (each must belong to the service), or
   * every resource of the service. Inactive ones are left out.
   */
  async resourcesOf(
    tenantId: string,
    service: ServiceSnapshot,
    ids: readonly string[],
  ): Promise<ResourceSnapshot[]> {
    const wanted = ids.length > 0 ? ids : service.resourceIds;
    ids.forEach((id, i) => {
      if (!service.resourceIds.includes(id)) {
        throw new Rejection(
          "RESOURCE_NOT_IN_SERVICE",
          `resource "${id}" does not deliver service "${service.id}"`,
          {
            fieldViolations: [
              { field: `resource_ids[${i}]`, description: "is not one of the service's resources" },
            ],
          },
        );
      }
    });
    const found = await this.catalog.resources(tenantId, wanted);
    return wanted
      .map((id) => found.get(id))
      .filter((r): r is ResourceSnapshot => r?.active === true);
  }

  /**
   * Free slots of `durationMs` starting in `range`, on `resources`, under
   * `rules` (the service's current policy unless given). Cached copies the
   * database shows to be stale are reloaded before the slots are computed.
   * The bookings read cover `around` as well, for callers that need more of
   * them than the slots do. The booking `exceptId` (one being moved) is
   * left out of them, as its move leaves it out.
   */
  async free(
    tenantId: string,
    service: ServiceSnapshot,
    resources: ResourceSnapshot[],
    range: Interval,
    durationMs: number,
    rules: ServiceRules = { policy: service.policy, timeZone: service.timeZone },
    around?: Interval,
    exceptId?: string,
  ): Promise<{ slots: FreeSlot[]; occupancy: Occupancy; resources: ResourceSnapshot[] }> {
    const from = Math.min(
      range.start - rules.policy.bufferBeforeMs,
      around?.start ?? Number.POSITIVE_INFINITY,
    );
    const to = Math.max(range.end + durationMs + rules.policy.bufferAfterMs, around?.end ?? 0);
    const ids = resources.map((r) => r.id);
    const occupancy = await loadOccupancy(this.db, tenantId, service.id, ids, from, to, exceptId);
    if (occupancy.serviceRevision !== undefined && occupancy.serviceRevision !== service.revision) {
      // The caller decided with a stale copy of the service: it starts over.
      this.catalog.forget(tenantId);
      throw serviceChanged();
    }
    let current = resources;
    if (resources.some((r) => occupancy.resourceRevisions.get(r.id) !== r.revision)) {
      this.catalog.forget(tenantId);
      const fresh = await this.catalog.resources(tenantId, ids);
      current = ids
        .map((id) => fresh.get(id))
        .filter((r): r is ResourceSnapshot => r?.active === true);
    }
    const slots = computeSlots({
      service: rules,
      resources: current.map(calendarOf),
      range,
      durationMs,
      nowMs: occupancy.nowMs,
      busy: occupancy.busy,
    });
    return { slots, occupancy, resources: current };
  }

  /**
   * Up to three free slots near a taken time, the same resource first, as
   * offers with ids; under `rules` (a version of the service's policy) when
   * given, else its current policy. For a refused move, `requested.moving`
   * names the booking: its own blocks do not count as taken, so the times
   * offered are those it could move to, and where it is now is not offered.
   */
  alternatives(
    tenantId: string,
    service: ServiceSnapshot,
    requested: Requested,
    rules?: { version: number } & ServiceRules,
  ): Promise<OfferedSlot[]> {
    const version = rules?.version ?? service.policyVersion;
    const key = `${service.id}/${service.policyVersion}/${version}/${requested.resourceId}/${requested.startMs}/${requested.durationMs}/${requested.moving?.id ?? ""}`;
    let ongoing = this.computing.get(tenantId);
    const shared = ongoing?.get(key);
    if (shared) return shared;
    if (!ongoing) {
      if (this.computing.size >= MAX_SHARING_TENANTS) this.computing.clear();
      ongoing = new Map();
      this.computing.set(tenantId, ongoing);
    }
    const tenantOngoing = ongoing;
    const offers = this.findAlternatives(tenantId, service, requested, rules);
    tenantOngoing.set(key, offers);
    const done = () => {
      if (tenantOngoing.get(key) === offers) tenantOngoing.delete(key);
      if (tenantOngoing.size === 0 && this.computing.get(tenantId) === tenantOngoing) {
        this.computing.delete(tenantId);
      }
    };
    offers.then(done, done);
    return offers;
  }

  /** A booking of the tenant changed: alternatives being computed may be wrong now. */
  bookingsChanged(tenantId: string): void {
    this.computing.delete(tenantId);
  }

  private async findAlternatives(
    tenantId: string,
    service: ServiceSnapshot,
    requested: Requested,
    rules: ServiceRules | undefined,
  ): Promise<OfferedSlot[]> {
    const resourceList = await this.resourcesOf(tenantId, service, []);
    const { moving } = requested;
    const { policy } = rules ?? service;
    const nearest = async (afterMs: number) => {
      const range = alternativesRange(
        requested.startMs,
        ALTERNATIVES_BEFORE_MS,
        afterMs,
        policy.slotIntervalMs ?? requested.durationMs,
        resourceList.length,
      );
      const { slots, resources } = await this.free(
        tenantId,
        service,
        resourceList,
        range,
        requested.durationMs,
        rules,
        undefined,
        moving?.id,
      );
      // Where the booking is now is no time to move it to.
      const open = moving
        ? slots.filter(
            (s) =>
              s.resourceId !== moving.resourceId ||
              s.start !== moving.startMs ||
              s.end !== moving.endMs,
          )
        : slots;
      const near = nearestAlternatives(
        open,
        { resourceId: requested.resourceId, start: requested.startMs },
        ALTERNATIVES_OFFERED,
      );
      return { near, resources };
    };
    let found = await nearest(ALTERNATIVES_AFTER_MS);
    if (found.near.length < ALTERNATIVES_OFFERED) found = await nearest(ALTERNATIVES_REACH_MS);
    return this.offerAll(tenantId, service, found.near, found.resources);
  }

  /**
   * Free slots of `resources` as offers with ids and zones, the ids of each
   * resource's slots made in one batch.
   */
  offerAll(
    tenantId: string,
    service: ServiceSnapshot,
    slots: readonly FreeSlot[],
    resources: readonly ResourceSnapshot[],
  ): OfferedSlot[] {
    const zones = new Map(resources.map((r) => [r.id, r.timeZone]));
    const byResource = new Map<string, number[]>();
    slots.forEach((s, i) => {
      const list = byResource.get(s.resourceId) ?? [];
      list.push(i);
      byResource.set(s.resourceId, list);
    });
    const ids: string[] = new Array(slots.length);
    for (const [resourceId, indexes] of byResource) {
      const batch = indexes.map((i) => ({
        startMs: (slots[i] as FreeSlot).start,
        endMs: (slots[i] as FreeSlot).end,
      }));
      const made = this.signer.idsFor(
        tenantId,
        service.id,
        resourceId,
        service.policyVersion,
        batch,
      );
      indexes.forEach((i, k) => {
        ids[i] = made[k] as string;
      });
    }
    return slots.map((s, i) => ({
      resourceId: s.resourceId,
      startMs: s.start,
      endMs: s.end,
      remaining: s.remaining,
      slotId: ids[i] as string,
      timeZone: zones.get(s.resourceId) ?? "",
    }));
  }

  /** The slot an id names; INVALID_SLOT_ID when forged, altered, another tenant's, or for an older policy. */
  async resolve(tenantId: string, slotId: string): Promise<SlotRef & { service: ServiceSnapshot }> {
    const invalid = (why: string) =>
      new Rejection("INVALID_SLOT_ID", `slot_id ${why}; list slots again`, {
        fieldViolations: [{ field: "slot_id", description: why }],
      });
    const ref = this.signer.decode(tenantId, slotId);
    if (!ref) throw invalid("is not a slot id this server issued");
    const service = await this.catalog.service(tenantId, ref.serviceId);
    if (!service) throw invalid("names a service that no longer exists");
    if (service.policyVersion !== ref.policyVersion)
      throw invalid("is stale: the service's policy has changed since");
    return { ...ref, service };
  }
}

import { performance } from "node:perf_hooks";
import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { type Booking, BookingSchema, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import {
  type BookingAction,
  changeBooking,
  getBooking,
  rescheduleBooking,
} from "../db/bookings.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import { mustRetry } from "../db/errors.js";
import { type IdempotencyClaim, keepOrReplay, type Outcome } from "../db/idempotency.js";
import type { Queryable } from "../db/pool.js";
import { fairOrder, localDay, type ServiceRules } from "../domain/availability.js";
import {
  checkBookable,
  checkResource,
  checkTime,
  holdTtlMs,
  type ResourceSnapshot,
  type ServiceSnapshot,
} from "../domain/booking.js";
import {
  bookingNotFound,
  type OfferedSlot,
  Rejection,
  resourceNotFound,
  serviceNotFound,
} from "../domain/rejection.js";
import { HOUR_MS } from "../domain/time.js";
import { instantText } from "../zod-messages.js";
import type { BookingBatches } from "./batches.js";
import type { Moving, SlotFinder } from "./slot-finder.js";
import type { TenantWrites } from "./tenant-writes.js";

/**
 * The booking writes, between a validated request and the one SQL call
 * that writes (src/db/functions/05_booking_writes.sql): resolve what the
 * request names (a slot id, or service, resource and times), check the
 * clock-free rules (src/domain/booking.ts) against cached catalog copies,
 * pick a resource when none is named, call the write, retry it when the
 * database says something changed under the checks, keep a refusal under
 * the Idempotency-Key, and offer alternatives for a taken time.
 *
 * Plain inputs and outputs: times in epoch milliseconds, results as the
 * write's Outcome (protobuf JSON), rejections as domain Rejections. The RPC
 * layer validates requests and converts answers; nothing here knows
 * Connect.
 */

export type BookingWrites = {
  /** Where the writes and the checks' reads run (the pool). */
  db: Queryable;
  catalog: CatalogCache;
  finder: SlotFinder;
  /** Creates on one resource, batched while another write of it is in flight (on `db`). */
  batches: BookingBatches;
  /**
   * The tenant's turns for its other writes (see TenantWrites), taken here
   * by a create among several candidate resources, which no lane takes.
   */
  turns?: TenantWrites;
  /** Told after every write that reached the database (wakes the event readers). */
  committed?: () => void;
  /** Told how long each write's SQL call took and how it ended (the metrics). */
  observe?: WriteObserver;
};

/** The SQL write functions (src/db/functions/05_booking_writes.sql). */
export type WriteName = "create_booking" | "change_booking" | "reschedule_booking";
/**
 * How a write's call ended: a change, a refusal, an earlier outcome
 * replayed, a retry (see mustRetry), not sent because its caller had gone
 * (its signal aborted: see BookingBatches), a failure.
 */
export type WriteResult = "written" | "refused" | "replayed" | "retry" | "abandoned" | "error";
export type WriteObserver = (write: WriteName, result: WriteResult, seconds: number) => void;

/** A time to book: a slot_id from ListSlots, or a service with start and end (and maybe a resource). */
export type TimeChoice = {
  /** A slot id, or "" when the time is given by the fields below. */
  slotId: string;
  serviceId: string;
  /** "" lets Holdfast pick among the service's resources (new bookings), or keeps the booking's (moves). */
  resourceId: string;
  startMs: number | null;
  endMs: number | null;
};

export type NewBookingRequest = TimeChoice & {
  attendee: JsonObject;
  metadata: JsonObject;
  /** A hold with this ttl (null: the policy's default), or undefined to book straight to CONFIRMED. */
  hold?: { ttlMs: number | null };
};

export type MoveRequest = TimeChoice & { bookingId: string };

export type ChangeRequest = {
  bookingId: string;
  action: BookingAction;
  ttlMs?: number | null;
  reason?: string;
};

/** A write's outcome, and for a taken time up to three free alternatives, the same resource first. */
export type Written = Outcome & { alternatives?: OfferedSlot[] };

/** The service, resource (if named) and time a request names, by slot id or by fields. */
type Target = { service: ServiceSnapshot; resourceId: string; startMs: number; endMs: number };

/** Where to look for alternatives if the write finds the time taken. */
type Near = {
  service: ServiceSnapshot;
  resourceId: string;
  startMs: number;
  endMs: number;
  /** The rules the write was checked under, when not the service's current ones (a move's). */
  rules?: { version: number } & ServiceRules;
  /** The booking being moved (a move's): the times offered leave it out, as the move does. */
  moving?: Moving;
};

/** A write is retried when something changed between checking and writing (see mustRetry). */
export const MAX_ATTEMPTS = 3;

/** CreateHold and CreateBooking: check the rules, then one locked write. */
export async function book(
  w: BookingWrites,
  tenantId: string,
  req: NewBookingRequest,
  claim: IdempotencyClaim | undefined,
  signal?: AbortSignal,
): Promise<Written> {
  let near: Near | undefined;
  const outcome = retrying(w, tenantId, claim, async () => {
    const t = await target(w, tenantId, req, req.serviceId);
    near = t;
    let resources: ResourceSnapshot[];
    if (t.resourceId !== "") {
      const r = await resource(w, tenantId, t.resourceId);
      checkBookable(t.service, r, t);
      resources = [r];
    } else {
      resources = await candidates(w, tenantId, t);
    }
    near = { ...t, resourceId: resources[0]?.id ?? "" };
    const create = () =>
      w.batches.create(
        {
          tenantId,
          service: t.service,
          resources,
          startMs: t.startMs,
          endMs: t.endMs,
          holdTtlMs: req.hold ? holdTtlMs(t.service.policy, req.hold.ttlMs) : null,
          attendee: req.attendee,
          metadata: req.metadata,
        },
        claim,
        signal,
      );
    return timed(w, "create_booking", signal, () =>
      resources.length === 1 || !w.turns ? create() : w.turns.run(tenantId, signal, create),
    );
  });
  return withAlternatives(w, tenantId, outcome, () => near);
}

/**
 * RescheduleBooking: the booking's own policy version decides the rules
 * of its new time, as it decided those of the old one.
 */
export async function reschedule(
  w: BookingWrites,
  tenantId: string,
  req: MoveRequest,
  claim: IdempotencyClaim | undefined,
  signal?: AbortSignal,
): Promise<Written> {
  let near: Near | undefined;
  const outcome = retrying(w, tenantId, claim, async () => {
    const json = await getBooking(w.db, tenantId, req.bookingId);
    if (!json) throw bookingNotFound(req.bookingId);
    const current = fromJson(BookingSchema, json);
    checkMovable(current);
    const t = await target(w, tenantId, req, current.serviceId);
    if (t.service.id !== current.serviceId) {
      throw new Rejection("INVALID_SLOT_ID", "slot_id is for another service than the booking's", {
        fieldViolations: [{ field: "slot_id", description: "names another service" }],
      });
    }
    const rules = await w.catalog.policyVersion(tenantId, current.serviceId, current.policyVersion);
    if (!rules)
      throw new Error(`policy version ${current.policyVersion} of ${current.serviceId} is missing`);
    const r = await resource(w, tenantId, t.resourceId || current.resourceId);
    // A move is checked under the booking's own policy version, and does
    // not conflict with the booking itself: so are the free times offered
    // when it is refused.
    const moving: Moving = {
      id: current.id,
      resourceId: current.resourceId,
      startMs: current.startTime ? timestampMs(current.startTime) : 0,
      endMs: current.endTime ? timestampMs(current.endTime) : 0,
    };
    near = { ...t, resourceId: r.id, rules: { ...rules, version: current.policyVersion }, moving };
    // A move to where it is changes nothing, whatever the rules say now:
    // the write returns it unchanged.
    const stays =
      r.id === moving.resourceId && t.startMs === moving.startMs && t.endMs === moving.endMs;
    if (!stays) {
      checkResource(t.service, r);
      checkTime(rules, r, t);
    }
    return timed(w, "reschedule_booking", signal, () =>
      rescheduleBooking(
        w.db,
        {
          tenantId,
          bookingId: req.bookingId,
          fromResourceId: current.resourceId,
          service: t.service,
          resource: r,
          policy: rules.policy,
          startMs: t.startMs,
          endMs: t.endMs,
        },
        claim,
      ),
    );
  });
  return withAlternatives(w, tenantId, outcome, () => near);
}

/** Confirm, extend, cancel, complete, no-show: one locked write, nothing to check before it. */
export function change(
  w: BookingWrites,
  tenantId: string,
  req: ChangeRequest,
  claim: IdempotencyClaim | undefined,
  signal?: AbortSignal,
): Promise<Written> {
  return retrying(w, tenantId, claim, () =>
    timed(w, "change_booking", signal, () => changeBooking(w.db, { tenantId, ...req }, claim)),
  );
}

/**
 * Runs one write's SQL call, telling `w.observe` (if any) its time and
 * result; not at all if `signal` (the caller's call) has aborted: a write
 * whose caller has gone is not sent, and rejects with the signal's reason.
 */
async function timed(
  w: BookingWrites,
  write: WriteName,
  signal: AbortSignal | undefined,
  call: () => Promise<Outcome>,
): Promise<Outcome> {
  const observe = w.observe;
  if (!observe) {
    signal?.throwIfAborted();
    return call();
  }
  const started = performance.now();
  let result: WriteResult = "error";
  try {
    signal?.throwIfAborted();
    const outcome = await call();
    result = outcome.replayed ? "replayed" : outcome.error ? "refused" : "written";
    return outcome;
  } catch (err) {
    if (mustRetry(err)) result = "retry";
    else if (signal?.aborted && err === signal.reason) result = "abandoned";
    throw err;
  } finally {
    observe(write, result, (performance.now() - started) / 1000);
  }
}

/**
 * Runs `attempt` (its checks, then its one locked write) again, with the
 * catalog reloaded, when the database says the catalog changed under it
 * or a duplicate with the same Idempotency-Key committed first. A
 * rejection the checks raise gives way to the key's stored outcome. After
 * a write: wake the event readers and, if it changed a booking, forget
 * alternatives offered before.
 */
async function retrying(
  w: BookingWrites,
  tenantId: string,
  claim: IdempotencyClaim | undefined,
  attempt: () => Promise<Outcome>,
): Promise<Outcome> {
  for (let n = 1; ; n++) {
    try {
      const outcome = await attempt();
      w.committed?.();
      if (outcome.response && !outcome.replayed) w.finder.bookingsChanged(tenantId);
      return outcome;
    } catch (err) {
      if (mustRetry(err)) {
        if (n < MAX_ATTEMPTS) {
          w.catalog.forget(tenantId);
          continue;
        }
        throw new Rejection("UNAVAILABLE", "the booking kept changing under the request; retry");
      }
      if (!(err instanceof Rejection)) throw err;
      return keepOrReplay(w.db, claim, err);
    }
  }
}

async function target(
  w: BookingWrites,
  tenantId: string,
  f: TimeChoice,
  serviceId: string,
): Promise<Target> {
  if (f.slotId !== "") {
    const slot = await w.finder.resolve(tenantId, f.slotId);
    return {
      service: slot.service,
      resourceId: slot.resourceId,
      startMs: slot.startMs,
      endMs: slot.endMs,
    };
  }
  const service = await w.catalog.service(tenantId, serviceId);
  if (!service) throw serviceNotFound(serviceId, "service_id");
  return {
    service,
    resourceId: f.resourceId,
    startMs: f.startMs as number,
    endMs: f.endMs as number,
  };
}

async function resource(w: BookingWrites, tenantId: string, id: string): Promise<ResourceSnapshot> {
  const found = await w.catalog.resource(tenantId, id);
  if (!found) throw resourceNotFound(id, "resource_id");
  return found;
}

/**
 * A booking that can no longer move answers for its state before any rule
 * about the new time is checked (the move itself checks again under the
 * lock).
 */
function checkMovable(b: Booking): void {
  if (b.status === BookingStatus.EXPIRED) {
    const lapsed = b.expireTime ? instantText(b.expireTime) : "its expiry";
    throw new Rejection("HOLD_EXPIRED", `the hold lapsed at ${lapsed}; hold the time again`);
  }
  if (b.status !== BookingStatus.HELD && b.status !== BookingStatus.CONFIRMED) {
    const status = BookingStatus[b.status].toLowerCase();
    throw new Rejection("INVALID_STATE", `cannot reschedule a booking that is ${status}`, {
      metadata: { status },
    });
  }
}

/**
 * "Any resource": every active resource of the service that the rules
 * allow at that time, fewest bookings that local day first, then the
 * service's order. The write books the first with room.
 */
async function candidates(
  w: BookingWrites,
  tenantId: string,
  t: Target,
): Promise<ResourceSnapshot[]> {
  if (!t.service.active) {
    throw new Rejection(
      "SERVICE_INACTIVE",
      `service "${t.service.id}" is inactive and takes no new bookings`,
    );
  }
  const all = await w.finder.resourcesOf(tenantId, t.service, []);
  let firstRefusal: Rejection | undefined;
  const allowed = all.filter((r) => {
    try {
      checkTime({ policy: t.service.policy, timeZone: t.service.timeZone }, r, {
        startMs: t.startMs,
        endMs: t.endMs,
      });
      return true;
    } catch (err) {
      if (!(err instanceof Rejection)) throw err;
      firstRefusal ??= err;
      return false;
    }
  });
  if (allowed.length === 0) {
    throw (
      firstRefusal ??
      new Rejection("RESOURCE_INACTIVE", `service "${t.service.id}" has no active resources`)
    );
  }
  // Any zone's local day lies within 26 hours of the instant.
  const { occupancy } = await w.finder.free(
    tenantId,
    t.service,
    allowed,
    { start: t.startMs, end: t.startMs + 1 },
    t.endMs - t.startMs,
    undefined,
    { start: t.startMs - 26 * HOUR_MS, end: t.startMs + 26 * HOUR_MS },
  );
  const counts = new Map<string, number>();
  for (const r of allowed) {
    const day = localDay(t.startMs, r.timeZone);
    const n = occupancy.busy.filter(
      (b) => b.resourceId === r.id && b.bookingStart >= day.start && b.bookingStart < day.end,
    ).length;
    counts.set(r.id, n);
  }
  const order = fairOrder(
    allowed.map((r) => r.id),
    counts,
    t.service.resourceIds,
  );
  return order.map((id) => allowed.find((r) => r.id === id) as ResourceSnapshot);
}

/** The refusals that come with free times nearby: the time is taken, or not worked. */
const OFFERS_ALTERNATIVES = new Set(["SLOT_UNAVAILABLE", "OUTSIDE_WORKING_HOURS"]);

/**
 * Adds up to three free alternatives, the same resource first, to a
 * refusal that offers them, whether the write returned it (or replayed it)
 * or the checks before the write threw it.
 */
async function withAlternatives(
  w: BookingWrites,
  tenantId: string,
  written: Promise<Outcome>,
  near: () => Near | undefined,
): Promise<Written> {
  let outcome: Outcome;
  try {
    outcome = await written;
  } catch (err) {
    const at = near();
    if (err instanceof Rejection && OFFERS_ALTERNATIVES.has(err.reason) && at) {
      err.details.alternatives = await alternativesNear(w, tenantId, at);
    }
    throw err;
  }
  const at = near();
  if (!outcome.error || !OFFERS_ALTERNATIVES.has(outcome.error.reason) || !at) return outcome;
  return { ...outcome, alternatives: await alternativesNear(w, tenantId, at) };
}

function alternativesNear(w: BookingWrites, tenantId: string, near: Near): Promise<OfferedSlot[]> {
  return w.finder
    .alternatives(
      tenantId,
      near.service,
      {
        resourceId: near.resourceId,
        startMs: near.startMs,
        durationMs: near.endMs - near.startMs,
        moving: near.moving,
      },
      near.rules,
    )
    .catch(() => []);
}

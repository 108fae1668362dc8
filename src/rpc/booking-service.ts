import { type DescMessage, fromJson, type JsonObject, type MessageShape } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type Attendee,
  type Booking,
  BookingSchema,
  type BookingService,
  BookingStatus,
  BookingStatusSchema,
  CancelBookingResponseSchema,
  CompleteBookingResponseSchema,
  ConfirmBookingResponseSchema,
  CreateBookingResponseSchema,
  CreateHoldResponseSchema,
  ExtendHoldResponseSchema,
  MarkNoShowResponseSchema,
  RescheduleBookingResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import {
  type BookingAction,
  changeBooking,
  createBooking,
  getBooking,
  listBookings,
  mustRetry,
  rescheduleBooking,
} from "../db/bookings.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import type { Outcome } from "../db/idempotency.js";
import type { Db } from "../db/pool.js";
import { fairOrder, localDay } from "../domain/availability.js";
import {
  checkBookable,
  checkResource,
  checkTime,
  holdTtlMs,
  type ResourceSnapshot,
  type ServiceSnapshot,
} from "../domain/booking.js";
import { Rejection } from "../domain/rejection.js";
import { HOUR_MS } from "../domain/time.js";
import { principalOf } from "./auth.js";
import { serviceNotFound } from "./catalog-service.js";
import { bookingStatusName } from "./convert.js";
import { answer, claimOf, keepOrReplay } from "./idempotency.js";
import { numberedKey, readPage, writePage } from "./paging.js";
import { resourceNotFound } from "./resource-service.js";
import type { SlotFinder } from "./slots.js";
import * as v from "./validate.js";

const EMAIL = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

/** Who the booking is for; empty fields are left out. */
const attendee = v.message<Attendee>().transform((a, ctx) => {
  const out: JsonObject = {};
  if (!a) return out;
  const name = a.name.trim();
  const email = a.email.trim();
  const phone = a.phone.trim();
  if (name.length > 200)
    ctx.addIssue({ code: "custom", message: "must be at most 200 characters", path: ["name"] });
  if (email && (email.length > 254 || !EMAIL.test(email))) {
    ctx.addIssue({ code: "custom", message: "is not an email address", path: ["email"] });
  }
  if (phone && !/^\+?[0-9 ().-]{3,32}$/.test(phone)) {
    ctx.addIssue({ code: "custom", message: "is not a phone number", path: ["phone"] });
  }
  if (name) out.name = name;
  if (email) out.email = email;
  if (phone) out.phone = phone;
  return out;
});

const MIN_TTL_MS = 1_000;
const ttl = v.durationMs.refine((ms) => ms === null || ms >= MIN_TTL_MS, "must be at least 1 s");

/** A time to book: a slot_id from ListSlots, or a service with start and end (and maybe a resource). */
const timeFields = {
  serviceId: v.optionalId,
  resourceId: v.optionalId,
  startTime: v.optionalTimestampMs,
  endTime: v.optionalTimestampMs,
  slotId: z.string().max(400, "is not a slot id"),
};

type TimeFields = {
  serviceId: string;
  resourceId: string;
  startTime: number | null;
  endTime: number | null;
  slotId: string;
};

/**
 * Either slot_id alone, or service_id with start_time before end_time;
 * checked even when other fields are wrong, so every violation is named at
 * once (fields that failed their own checks are skipped here).
 */
function oneWayToName<T extends z.ZodType<TimeFields>>(schema: T, needsService: boolean) {
  return schema.superRefine(
    (f, ctx) => {
      const given = (v: unknown) => v !== "" && v !== null && v !== undefined;
      if (f.slotId !== "" && typeof f.slotId === "string") {
        for (const field of ["serviceId", "resourceId", "startTime", "endTime"] as const) {
          if (given(f[field]))
            ctx.addIssue({
              code: "custom",
              path: [field],
              message: "must be empty when slot_id is given",
            });
        }
        return;
      }
      if (needsService && f.serviceId === "") {
        ctx.addIssue({
          code: "custom",
          path: ["serviceId"],
          message: "is required (or give a slot_id)",
        });
      }
      if (f.startTime === null)
        ctx.addIssue({ code: "custom", path: ["startTime"], message: "is required" });
      if (f.endTime === null)
        ctx.addIssue({ code: "custom", path: ["endTime"], message: "is required" });
      if (
        typeof f.startTime === "number" &&
        typeof f.endTime === "number" &&
        f.endTime <= f.startTime
      ) {
        ctx.addIssue({ code: "custom", path: ["endTime"], message: "must be after start_time" });
      }
    },
    { when: () => true },
  );
}

const holdSchema = oneWayToName(
  z.object({ ...timeFields, attendee, metadata: v.metadata, ttl }),
  true,
);
const bookSchema = oneWayToName(z.object({ ...timeFields, attendee, metadata: v.metadata }), true);
// RescheduleBookingRequest has no service_id: a booking stays with its service.
const rescheduleSchema = oneWayToName(
  z.object({ ...timeFields, serviceId: z.string().default(""), bookingId: v.id }),
  false,
);
const bookingId = z.object({ bookingId: v.id });

const statusFilter = z
  .array(v.enumValue<BookingStatus>(BookingStatusSchema))
  .transform((s) => s.map((x) => bookingStatusName(x) as string));
const listSchema = z.object({
  ...v.pageFields,
  resourceId: v.optionalId,
  serviceId: v.optionalId,
  statuses: statusFilter,
  startTimeFrom: v.optionalTimestampMs,
  startTimeTo: v.optionalTimestampMs,
  metadata: z.record(z.string().max(200), z.string().max(1000)),
});

export function bookingNotFound(id: string): Rejection {
  return new Rejection("BOOKING_NOT_FOUND", `no booking with id "${id}"`, {
    fieldViolations: [{ field: "booking_id", description: "no such booking" }],
  });
}

/**
 * A booking that can no longer move answers for its state before any rule
 * about the new time is checked (the move itself checks again under the
 * lock).
 */
function checkMovable(b: Booking): void {
  if (b.status === BookingStatus.EXPIRED) {
    const lapsed = b.expireTime ? timestampDate(b.expireTime).toISOString() : "its expiry";
    throw new Rejection("HOLD_EXPIRED", `the hold lapsed at ${lapsed}; hold the time again`);
  }
  if (b.status !== BookingStatus.HELD && b.status !== BookingStatus.CONFIRMED) {
    const status = BookingStatus[b.status].toLowerCase();
    throw new Rejection("INVALID_STATE", `cannot reschedule a booking that is ${status}`, {
      metadata: { status },
    });
  }
}

/** The service, resource (if named) and time a request names, by slot id or by fields. */
type Target = { service: ServiceSnapshot; resourceId: string; startMs: number; endMs: number };

/** A write is retried when something changed between checking and writing (see mustRetry). */
const MAX_ATTEMPTS = 3;

export function bookingService(
  base: Db,
  catalog: CatalogCache,
  finder: SlotFinder,
  feed: { committed(): void },
): ServiceImpl<typeof BookingService> {
  /**
   * After every booking write: wake the event readers and, if it changed a
   * booking, forget alternatives offered before.
   */
  function written(tenantId: string, outcome: Outcome): void {
    feed.committed();
    if (outcome.response && !outcome.replayed) finder.bookingsChanged(tenantId);
  }

  /**
   * Runs `attempt` (its checks, then its one locked write) again, with the
   * catalog reloaded, when the database says the catalog changed under it
   * or a duplicate with the same Idempotency-Key committed first. A
   * rejection the checks raise gives way to the key's stored outcome.
   */
  async function write(
    ctx: HandlerContext,
    tenantId: string,
    attempt: () => Promise<Outcome>,
  ): Promise<Outcome> {
    for (let n = 1; ; n++) {
      try {
        const outcome = await attempt();
        written(tenantId, outcome);
        return outcome;
      } catch (err) {
        if (mustRetry(err)) {
          if (n < MAX_ATTEMPTS) {
            catalog.forget(tenantId);
            continue;
          }
          throw new Rejection("UNAVAILABLE", "the booking kept changing under the request; retry");
        }
        if (!(err instanceof Rejection)) throw err;
        return keepOrReplay(base, ctx, err);
      }
    }
  }

  async function target(tenantId: string, f: TimeFields, serviceId: string): Promise<Target> {
    if (f.slotId !== "") {
      const slot = await finder.resolve(tenantId, f.slotId);
      return {
        service: slot.service,
        resourceId: slot.resourceId,
        startMs: slot.startMs,
        endMs: slot.endMs,
      };
    }
    const service = await catalog.service(tenantId, serviceId);
    if (!service) throw serviceNotFound(serviceId, "service_id");
    return {
      service,
      resourceId: f.resourceId,
      startMs: f.startTime as number,
      endMs: f.endTime as number,
    };
  }

  async function resource(tenantId: string, id: string): Promise<ResourceSnapshot> {
    const found = await catalog.resource(tenantId, id);
    if (!found) throw resourceNotFound(id, "resource_id");
    return found;
  }

  /**
   * Without a named resource: every active resource of the service that the
   * rules allow at that time, fewest bookings that local day first, then the
   * service's order. The write books the first with room.
   */
  async function candidates(tenantId: string, t: Target): Promise<ResourceSnapshot[]> {
    if (!t.service.active) {
      throw new Rejection(
        "SERVICE_INACTIVE",
        `service "${t.service.id}" is inactive and takes no new bookings`,
      );
    }
    const all = await finder.resourcesOf(tenantId, t.service, []);
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
    const { occupancy } = await finder.free(
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

  /** Adds up to three free alternatives to a SLOT_UNAVAILABLE answer, the same resource first. */
  async function withAlternatives<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    outcome: Outcome,
    near:
      | {
          tenantId: string;
          service: ServiceSnapshot;
          resourceId: string;
          startMs: number;
          endMs: number;
        }
      | undefined,
  ): Promise<MessageShape<D>> {
    try {
      return answer(ctx, schema, outcome);
    } catch (err) {
      if (err instanceof Rejection && err.reason === "SLOT_UNAVAILABLE" && near) {
        err.details.alternatives = await finder
          .alternatives(near.tenantId, near.service, {
            resourceId: near.resourceId,
            startMs: near.startMs,
            durationMs: near.endMs - near.startMs,
          })
          .catch(() => []);
      }
      throw err;
    }
  }

  /** CreateHold and CreateBooking: check the rules, then one locked write. */
  async function book<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    f: z.infer<typeof bookSchema> & { ttl?: number | null },
    hold: boolean,
  ) {
    const tenantId = principalOf(ctx).tenantId;
    let near: Parameters<typeof withAlternatives>[3];
    const outcome = await write(ctx, tenantId, async () => {
      const t = await target(tenantId, f, f.serviceId);
      let resources: ResourceSnapshot[];
      if (t.resourceId !== "") {
        const r = await resource(tenantId, t.resourceId);
        checkBookable(t.service, r, t);
        resources = [r];
      } else {
        resources = await candidates(tenantId, t);
      }
      near = {
        tenantId,
        service: t.service,
        resourceId: resources[0]?.id ?? "",
        startMs: t.startMs,
        endMs: t.endMs,
      };
      return createBooking(
        base,
        {
          tenantId,
          service: t.service,
          resources,
          startMs: t.startMs,
          endMs: t.endMs,
          holdTtlMs: hold ? holdTtlMs(t.service.policy, f.ttl ?? null) : null,
          attendee: f.attendee,
          metadata: f.metadata,
        },
        claimOf(ctx),
      );
    });
    return withAlternatives(ctx, schema, outcome, near);
  }

  /**
   * RescheduleBooking: the booking's own policy version decides the rules
   * of its new time, as it decided those of the old one.
   */
  async function reschedule(ctx: HandlerContext, f: z.infer<typeof rescheduleSchema>) {
    const tenantId = principalOf(ctx).tenantId;
    let near: Parameters<typeof withAlternatives>[3];
    const outcome = await write(ctx, tenantId, async () => {
      const json = await getBooking(base, tenantId, f.bookingId);
      if (!json) throw bookingNotFound(f.bookingId);
      const current = fromJson(BookingSchema, json);
      checkMovable(current);
      const t = await target(tenantId, f, current.serviceId);
      if (t.service.id !== current.serviceId) {
        throw new Rejection(
          "INVALID_SLOT_ID",
          "slot_id is for another service than the booking's",
          {
            fieldViolations: [{ field: "slot_id", description: "names another service" }],
          },
        );
      }
      const rules = await catalog.policyVersion(tenantId, current.serviceId, current.policyVersion);
      if (!rules)
        throw new Error(
          `policy version ${current.policyVersion} of ${current.serviceId} is missing`,
        );
      const r = await resource(tenantId, t.resourceId || current.resourceId);
      checkResource(t.service, r);
      checkTime(rules, r, t);
      near = {
        tenantId,
        service: t.service,
        resourceId: r.id,
        startMs: t.startMs,
        endMs: t.endMs,
      };
      return rescheduleBooking(
        base,
        {
          tenantId,
          bookingId: f.bookingId,
          fromResourceId: current.resourceId,
          service: t.service,
          resource: r,
          policy: rules.policy,
          startMs: t.startMs,
          endMs: t.endMs,
        },
        claimOf(ctx),
      );
    });
    return withAlternatives(ctx, RescheduleBookingResponseSchema, outcome, near);
  }

  async function change<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    id: string,
    action: BookingAction,
    extra: { ttlMs?: number | null; reason?: string } = {},
  ) {
    const change = { tenantId: principalOf(ctx).tenantId, bookingId: id, action, ...extra };
    const outcome = await write(ctx, change.tenantId, () =>
      changeBooking(base, change, claimOf(ctx)),
    );
    return answer(ctx, schema, outcome);
  }

  return {
    async createHold(req, ctx) {
      return book(ctx, CreateHoldResponseSchema, v.parseRequest(holdSchema, req), true);
    },

    async createBooking(req, ctx) {
      return book(ctx, CreateBookingResponseSchema, v.parseRequest(bookSchema, req), false);
    },

    async confirmBooking(req, ctx) {
      const { bookingId: id } = v.parseRequest(bookingId, req);
      return change(ctx, ConfirmBookingResponseSchema, id, "confirm");
    },

    async extendHold(req, ctx) {
      const f = v.parseRequest(z.object({ bookingId: v.id, ttl }), req);
      return change(ctx, ExtendHoldResponseSchema, f.bookingId, "extend", { ttlMs: f.ttl });
    },

    async cancelBooking(req, ctx) {
      const f = v.parseRequest(
        z.object({
          bookingId: v.id,
          reason: z.string().max(500, "must be at most 500 characters"),
        }),
        req,
      );
      return change(ctx, CancelBookingResponseSchema, f.bookingId, "cancel", { reason: f.reason });
    },

    async completeBooking(req, ctx) {
      const { bookingId: id } = v.parseRequest(bookingId, req);
      return change(ctx, CompleteBookingResponseSchema, id, "complete");
    },

    async markNoShow(req, ctx) {
      const { bookingId: id } = v.parseRequest(bookingId, req);
      return change(ctx, MarkNoShowResponseSchema, id, "no_show");
    },

    async rescheduleBooking(req, ctx) {
      return reschedule(ctx, v.parseRequest(rescheduleSchema, req));
    },

    async getBooking(req, ctx) {
      const { bookingId: id } = v.parseRequest(bookingId, req);
      const json = await getBooking(base, principalOf(ctx).tenantId, id);
      if (!json) throw bookingNotFound(id);
      return { booking: fromJson(BookingSchema, json) };
    },

    async listBookings(req, ctx) {
      const f = v.parseRequest(listSchema, req);
      const filter = {
        resourceId: f.resourceId || undefined,
        serviceId: f.serviceId || undefined,
        statuses: f.statuses,
        startFromMs: f.startTimeFrom,
        startToMs: f.startTimeTo,
        metadata: f.metadata,
      };
      const page = readPage(req, filter);
      const after = page.after === undefined ? undefined : numberedKey(page.after);
      const rows = await listBookings(base, principalOf(ctx).tenantId, filter, {
        after: after && { startMs: after.n, id: after.rest },
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (r) => `${r.startMs}|${r.id}`);
      return { bookings: items.map((r) => fromJson(BookingSchema, r.booking)), nextPageToken };
    },
  };
}

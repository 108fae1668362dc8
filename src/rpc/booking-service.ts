import { type DescMessage, fromJson, type JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type Attendee,
  BookingSchema,
  type BookingService,
  type BookingStatus,
  BookingStatusSchema,
  CancelBookingResponseSchema,
  CompleteBookingResponseSchema,
  ConfirmBookingResponseSchema,
  CreateBookingResponseSchema,
  CreateHoldResponseSchema,
  ExtendHoldResponseSchema,
  MarkNoShowResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import {
  type BookingAction,
  changeBooking,
  createBooking,
  getBooking,
  isStaleCatalog,
  listBookings,
} from "../db/bookings.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import type { Outcome } from "../db/idempotency.js";
import type { Db } from "../db/pool.js";
import { checkBookable, holdTtlMs } from "../domain/booking.js";
import { Rejection } from "../domain/rejection.js";
import { principalOf } from "./auth.js";
import { serviceNotFound } from "./catalog-service.js";
import { bookingStatusName } from "./convert.js";
import { answer, claimOf, replayOr } from "./idempotency.js";
import { readPage, writePage } from "./paging.js";
import { resourceNotFound } from "./resource-service.js";
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

const timeFields = {
  serviceId: v.id,
  resourceId: v.id,
  startTime: v.timestampMs,
  endTime: v.timestampMs,
  attendee,
  metadata: v.metadata,
  slotId: z.string().max(0, "slot ids are not accepted by this server yet"),
};

/** end_time after start_time, checked even when other fields are wrong, so every violation is named at once. */
function endsAfterStart<T extends z.ZodType<{ startTime: number; endTime: number }>>(schema: T) {
  return schema.refine((t) => t.endTime > t.startTime, {
    message: "must be after start_time",
    path: ["endTime"],
    when: (p) => !p.issues.some((i) => i.path?.[0] === "startTime" || i.path?.[0] === "endTime"),
  });
}

const holdSchema = endsAfterStart(z.object({ ...timeFields, ttl }));
const bookSchema = endsAfterStart(z.object(timeFields));
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

export function bookingService(
  base: Db,
  catalog: CatalogCache,
): ServiceImpl<typeof BookingService> {
  /** CreateHold and CreateBooking: check the rules, then one locked write. */
  async function book<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    f: z.infer<typeof bookSchema> & { ttl?: number | null },
    hold: boolean,
  ) {
    const tenantId = principalOf(ctx).tenantId;
    for (let attempt = 1; ; attempt++) {
      let outcome: Outcome;
      try {
        const { service, resource } = await catalog.bookingTarget(
          tenantId,
          f.serviceId,
          f.resourceId,
        );
        if (!service) throw serviceNotFound(f.serviceId, "service_id");
        if (!resource) throw resourceNotFound(f.resourceId, "resource_id");
        checkBookable(service, resource, { startMs: f.startTime, endMs: f.endTime });
        outcome = await createBooking(
          base,
          {
            tenantId,
            service,
            resource,
            startMs: f.startTime,
            endMs: f.endTime,
            holdTtlMs: hold ? holdTtlMs(service.policy, f.ttl ?? null) : null,
            attendee: f.attendee,
            metadata: f.metadata,
          },
          claimOf(ctx),
        );
      } catch (err) {
        if (isStaleCatalog(err) && attempt < 3) {
          catalog.forget(tenantId);
          continue;
        }
        if (!(err instanceof Rejection)) throw err;
        outcome = await replayOr(base, ctx, err);
      }
      return answer(ctx, schema, outcome);
    }
  }

  async function change<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    id: string,
    action: BookingAction,
    extra: { ttlMs?: number | null; reason?: string } = {},
  ) {
    const outcome = await changeBooking(
      base,
      { tenantId: principalOf(ctx).tenantId, bookingId: id, action, ...extra },
      claimOf(ctx),
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

    async rescheduleBooking() {
      throw new Rejection("METHOD_NOT_FOUND", "RescheduleBooking is not available yet");
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
      const [startMs, id] = page.after?.split("|") ?? [];
      const rows = await listBookings(base, principalOf(ctx).tenantId, filter, {
        after: page.after ? { startMs: Number(startMs), id: id ?? "" } : undefined,
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (r) => `${r.startMs}|${r.id}`);
      return { bookings: items.map((r) => fromJson(BookingSchema, r.booking)), nextPageToken };
    },
  };
}

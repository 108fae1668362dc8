import type { DescMessage, JsonObject } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type Attendee,
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
  RescheduleBookingResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import type { BookingBatches } from "../booking/batches.js";
import type { SlotFinder } from "../booking/slot-finder.js";
import type { TenantWrites } from "../booking/tenant-writes.js";
import type { BookingWrites, WriteObserver } from "../booking/writes.js";
import * as writes from "../booking/writes.js";
import { type BookingAction, getBooking, listBookings } from "../db/bookings.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import type { Db } from "../db/pool.js";
import { bookingNotFound } from "../domain/rejection.js";
import { lineProblem } from "../domain/text.js";
import { principalOf } from "./auth.js";
import { bookingOfJson } from "./booking-json.js";
import { BOOKING_STATUS } from "./convert.js";
import { answer, claimOf } from "./idempotency.js";
import { numberedKey, readPage, writePage } from "./paging.js";
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
  const nameProblem = lineProblem(name);
  if (nameProblem) ctx.addIssue({ code: "custom", message: nameProblem, path: ["name"] });
  const emailProblem = lineProblem(email);
  if (emailProblem) ctx.addIssue({ code: "custom", message: emailProblem, path: ["email"] });
  else if (email && (email.length > 254 || !EMAIL.test(email))) {
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
  startTime: v.optionalBookingTimeMs,
  endTime: v.optionalBookingTimeMs,
  slotId: z.string().max(400, "is not a slot id"),
};

type TimeFields = {
  serviceId: string;
  resourceId: string;
  startTime: number | null;
  endTime: number | null;
  slotId: string;
};

const given = (v: unknown) => v !== "" && v !== null && v !== undefined;

/**
 * Either slot_id alone, or service_id with start_time before end_time;
 * checked even when other fields are wrong, so every violation is named at
 * once (fields that failed their own checks are skipped here).
 */
function oneWayToName<T extends z.ZodType<TimeFields>>(schema: T, needsService: boolean) {
  return schema.superRefine(
    (f, ctx) => {
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
  .transform((s) => s.map((x) => BOOKING_STATUS.nameOf(x) as string));
const listSchema = z
  .object({
    ...v.pageFields,
    resourceId: v.optionalId,
    serviceId: v.optionalId,
    statuses: statusFilter,
    startTimeFrom: v.optionalTimestampMs,
    startTimeTo: v.optionalTimestampMs,
    metadata: z.record(z.string().max(200), z.string().max(1000)),
  })
  // A window that holds no instant is a mistake, as ListSlots says of its own.
  .refine(
    (f) => f.startTimeFrom === null || f.startTimeTo === null || f.startTimeTo > f.startTimeFrom,
    {
      message: "must be after start_time_from",
      path: ["startTimeTo"],
      when: (p) =>
        !p.issues.some((i) => i.path?.[0] === "startTimeFrom" || i.path?.[0] === "startTimeTo"),
    },
  );

export function bookingService(
  base: Db,
  catalog: CatalogCache,
  finder: SlotFinder,
  feed: { committed(): void },
  observe: WriteObserver | undefined,
  batches: BookingBatches,
  turns?: TenantWrites,
): ServiceImpl<typeof BookingService> {
  const w: BookingWrites = {
    db: base,
    catalog,
    finder,
    batches,
    turns,
    committed: () => feed.committed(),
    observe,
  };

  function book<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    f: z.infer<typeof bookSchema> & { ttl?: number | null },
    hold: boolean,
  ) {
    const req = { ...f, startMs: f.startTime, endMs: f.endTime };
    const tenantId = principalOf(ctx).tenantId;
    return writes
      .book(
        w,
        tenantId,
        hold ? { ...req, hold: { ttlMs: f.ttl ?? null } } : req,
        claimOf(ctx),
        ctx.signal,
      )
      .then((outcome) => answer(ctx, schema, outcome));
  }

  function change<D extends DescMessage>(
    ctx: HandlerContext,
    schema: D,
    bookingId: string,
    action: BookingAction,
    extra: { ttlMs?: number | null; reason?: string } = {},
  ) {
    const tenantId = principalOf(ctx).tenantId;
    return writes
      .change(w, tenantId, { bookingId, action, ...extra }, claimOf(ctx), ctx.signal)
      .then((outcome) => answer(ctx, schema, outcome));
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
          reason: v.freeText,
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
      const f = v.parseRequest(rescheduleSchema, req);
      const outcome = await writes.reschedule(
        w,
        principalOf(ctx).tenantId,
        { ...f, startMs: f.startTime, endMs: f.endTime },
        claimOf(ctx),
        ctx.signal,
      );
      return answer(ctx, RescheduleBookingResponseSchema, outcome);
    },

    async getBooking(req, ctx) {
      const { bookingId: id } = v.parseRequest(bookingId, req);
      const json = await getBooking(base, principalOf(ctx).tenantId, id);
      if (!json) throw bookingNotFound(id);
      return { booking: bookingOfJson(json) };
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
      const page = readPage(ctx, req, filter);
      const after = page.after === undefined ? undefined : numberedKey(page.after);
      const rows = await listBookings(base, principalOf(ctx).tenantId, filter, {
        after: after && { startMs: after.n, id: after.rest },
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (r) => `${r.startMs}|${r.id}`);
      return { bookings: items.map((r) => bookingOfJson(r.booking)), nextPageToken };
    },
  };
}

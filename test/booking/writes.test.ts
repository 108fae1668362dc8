import { randomBytes } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type BookingWrites,
  book,
  change,
  type MoveRequest,
  type NewBookingRequest,
  reschedule,
  type Written,
} from "../../src/booking/writes.js";
import type { IdempotencyClaim } from "../../src/db/idempotency.js";
import { poolDb } from "../../src/db/pool.js";
import { updateResource } from "../../src/db/resources.js";
import { updateService } from "../../src/db/services.js";
import { createTenant } from "../../src/db/tenants.js";
import { Rejection } from "../../src/domain/rejection.js";
import { bookingWritesOn, serviceOver, thirtyMinutePolicy } from "../support/booking-writes.js";
import { freshDatabase } from "../support/database.js";

/**
 * The booking writes called directly, on a real Postgres and without a
 * server: what a handler gets back for each kind of request.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** A Monday, far enough ahead for every rule of the clock. */
const MONDAY = Date.UTC(2030, 2, 4);

let pool: pg.Pool;
let w: BookingWrites & { commits: number };
let tenantId: string;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await freshDatabase(), max: 4 });
  const db = poolDb(pool);
  w = {
    ...bookingWritesOn(pool),
    commits: 0,
    committed: () => {
      w.commits++;
    },
  };
  tenantId = (await createTenant(db, `writes-${randomBytes(4).toString("hex")}`)).tenant.id;
});
afterAll(() => pool.end());

/** A service over `n` new resources of this file's tenant. */
function world(
  n: number,
  weeklySchedule: { weekday: number; start: number; end: number }[] | null = null,
) {
  return serviceOver(pool, tenantId, n, weeklySchedule);
}

function request(
  serviceId: string,
  startMs: number,
  more: Partial<NewBookingRequest> = {},
): NewBookingRequest {
  return {
    slotId: "",
    serviceId,
    resourceId: "",
    startMs,
    endMs: startMs + 30 * MINUTE,
    attendee: {},
    metadata: {},
    ...more,
  };
}

/** A move of booking `bookingId` to `startMs` (30 min), on `resourceId` ("" keeps its own). */
function move(bookingId: string, startMs: number, resourceId = ""): MoveRequest {
  return {
    bookingId,
    slotId: "",
    serviceId: "",
    resourceId,
    startMs,
    endMs: startMs + 30 * MINUTE,
  };
}

/** A hold of the first of `resourceIds` at `startMs`: its booking id. */
async function holdAt(serviceId: string, resourceId: string | undefined, startMs: number) {
  const held = await book(
    w,
    tenantId,
    request(serviceId, startMs, { resourceId, hold: { ttlMs: null } }),
    undefined,
  );
  return bookingOf(held).id as string;
}

const bookingOf = (o: Written) => (o.response as { booking: JsonObject }).booking;

function claim(key: string, body: string): IdempotencyClaim {
  return {
    tenantId,
    apiKeyId: "key_test",
    method: "test/Write",
    key,
    hash: Buffer.from(body.padEnd(32, "-")),
  };
}

async function refusal(p: Promise<unknown>): Promise<Rejection> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(Rejection);
  return err as Rejection;
}

describe("book", () => {
  it("holds a named resource, and books straight to CONFIRMED without a hold", async () => {
    const { serviceId, resourceIds } = await world(1);
    const before = w.commits;
    const held = await book(
      w,
      tenantId,
      request(serviceId, MONDAY + 9 * HOUR, { resourceId: resourceIds[0], hold: { ttlMs: null } }),
      undefined,
    );
    expect(bookingOf(held)).toMatchObject({
      resourceId: resourceIds[0],
      status: "BOOKING_STATUS_HELD",
    });
    expect(w.commits).toBe(before + 1);
    const booked = await book(w, tenantId, request(serviceId, MONDAY + 10 * HOUR), undefined);
    expect(bookingOf(booked)).toMatchObject({ status: "BOOKING_STATUS_CONFIRMED" });
  });

  it("picks the resource with fewest bookings that day, then offers alternatives when all are taken", async () => {
    const { serviceId, resourceIds } = await world(2);
    const [first, second] = resourceIds as [string, string];
    // A booking earlier that day on the first resource makes the second the fairer pick.
    await book(
      w,
      tenantId,
      request(serviceId, MONDAY + 8 * HOUR, { resourceId: first }),
      undefined,
    );
    const a = await book(w, tenantId, request(serviceId, MONDAY + 9 * HOUR), undefined);
    expect(bookingOf(a).resourceId).toBe(second);
    const b = await book(w, tenantId, request(serviceId, MONDAY + 9 * HOUR), undefined);
    expect(bookingOf(b).resourceId).toBe(first);
    const c = await book(w, tenantId, request(serviceId, MONDAY + 9 * HOUR), undefined);
    expect(c.error?.reason).toBe("SLOT_UNAVAILABLE");
    expect(c.error?.conflicts?.length).toBeGreaterThan(0);
    expect(c.alternatives?.length).toBe(3);
    for (const alt of c.alternatives ?? []) {
      expect(alt.startMs).not.toBe(MONDAY + 9 * HOUR);
      expect(alt.slotId).not.toBe("");
    }
  });

  it("refuses by the rules before writing, and keeps the refusal under the Idempotency-Key", async () => {
    const mondayMornings = [{ weekday: 1, start: 9 * 60, end: 12 * 60 }];
    const { serviceId, resourceIds } = await world(1, mondayMornings);
    const late = request(serviceId, MONDAY + 15 * HOUR, { resourceId: resourceIds[0] });
    const r = await refusal(book(w, tenantId, late, undefined));
    expect(r.reason).toBe("OUTSIDE_WORKING_HOURS");
    expect(r.message).toContain("works 09:00-12:00 on Monday 2030-03-04 (UTC)");
    // The nearest free times come with it, the latest morning slots first.
    expect(r.details.alternatives?.map((a) => new Date(a.startMs).toISOString())).toEqual([
      "2030-03-04T11:30:00.000Z",
      "2030-03-04T11:00:00.000Z",
      "2030-03-04T10:30:00.000Z",
    ]);

    const key = claim(`late-${serviceId}`, "late");
    const kept = await book(w, tenantId, late, key);
    expect(kept.error?.reason).toBe("OUTSIDE_WORKING_HOURS");
    expect(kept.alternatives).toEqual(r.details.alternatives);
    // The same request again replays the stored refusal.
    const again = await book(w, tenantId, late, key);
    expect(again).toMatchObject({ replayed: true, error: { reason: "OUTSIDE_WORKING_HOURS" } });
  });

  it("looks further ahead for alternatives when few are free near the taken time", async () => {
    // Mondays 09:00-10:00 only: once both of a Monday's times are taken, nothing
    // is free within two days; the next Monday's are what there is to offer
    // (the one after starts 14 days on, where the search ends).
    const mondayHour = [{ weekday: 1, start: 9 * 60, end: 10 * 60 }];
    const { serviceId, resourceIds } = await world(1, mondayHour);
    await holdAt(serviceId, resourceIds[0], MONDAY + 9 * HOUR);
    await holdAt(serviceId, resourceIds[0], MONDAY + 9 * HOUR + 30 * MINUTE);
    const taken = await book(w, tenantId, request(serviceId, MONDAY + 9 * HOUR), undefined);
    expect(taken.error?.reason).toBe("SLOT_UNAVAILABLE");
    const WEEK = 7 * 24 * HOUR;
    expect(taken.alternatives?.map((a) => a.startMs)).toEqual([
      MONDAY + WEEK + 9 * HOUR,
      MONDAY + WEEK + 9 * HOUR + 30 * MINUTE,
    ]);
  });

  it("names what does not exist", async () => {
    const { serviceId } = await world(1);
    expect((await refusal(book(w, tenantId, request("svc_nope", MONDAY), undefined))).reason).toBe(
      "SERVICE_NOT_FOUND",
    );
    const r = await refusal(
      book(w, tenantId, request(serviceId, MONDAY, { resourceId: "rsc_nope" }), undefined),
    );
    expect(r.reason).toBe("RESOURCE_NOT_FOUND");
  });

  it("checks again and writes when the catalog changed after it was cached", async () => {
    const { serviceId, resourceIds } = await world(1);
    const [id] = resourceIds as [string];
    // Cache the resource, then change it behind the cache's back (no notification reaches it).
    await book(w, tenantId, request(serviceId, MONDAY + 9 * HOUR, { resourceId: id }), undefined);
    await updateResource(pool, tenantId, id, { name: "renamed" });
    const after = await book(
      w,
      tenantId,
      request(serviceId, MONDAY + 10 * HOUR, { resourceId: id }),
      undefined,
    );
    expect(bookingOf(after)).toMatchObject({ resourceId: id, status: "BOOKING_STATUS_CONFIRMED" });
  });
});

describe("reschedule", () => {
  it("moves a booking, and refuses to move one that is cancelled", async () => {
    const { serviceId, resourceIds } = await world(2);
    const id = await holdAt(serviceId, resourceIds[0], MONDAY + 9 * HOUR);
    const moved = await reschedule(
      w,
      tenantId,
      move(id, MONDAY + 11 * HOUR, resourceIds[1]),
      undefined,
    );
    expect(bookingOf(moved)).toMatchObject({
      id,
      resourceId: resourceIds[1],
      startTime: "2030-03-04T11:00:00.000000Z",
      status: "BOOKING_STATUS_HELD",
    });

    await change(
      w,
      tenantId,
      { bookingId: id, action: "cancel", reason: "plans changed" },
      undefined,
    );
    const r = await refusal(reschedule(w, tenantId, move(id, MONDAY + 12 * HOUR), undefined));
    expect(r.reason).toBe("INVALID_STATE");
    expect(r.details.metadata).toEqual({ status: "cancelled" });
  });

  it("offers alternatives when the new time is taken", async () => {
    const { serviceId, resourceIds } = await world(1);
    const [rid] = resourceIds as [string];
    await book(w, tenantId, request(serviceId, MONDAY + 14 * HOUR, { resourceId: rid }), undefined);
    const mine = await holdAt(serviceId, rid, MONDAY + 9 * HOUR);
    const taken = await reschedule(w, tenantId, move(mine, MONDAY + 14 * HOUR), undefined);
    expect(taken.error?.reason).toBe("SLOT_UNAVAILABLE");
    expect(taken.alternatives?.map((a) => a.resourceId)).toEqual([rid, rid, rid]);
  });
  it("offers, for a move refused, free times under the booking's own policy version", async () => {
    const { serviceId, resourceIds } = await world(1);
    const [rid] = resourceIds as [string];
    await book(w, tenantId, request(serviceId, MONDAY + 14 * HOUR, { resourceId: rid }), undefined);
    const mine = await holdAt(serviceId, rid, MONDAY + 9 * HOUR);
    // Version 2 starts bookings every 15 minutes; the hold keeps version 1's 30.
    await updateService(poolDb(pool), tenantId, serviceId, {
      policy: { ...thirtyMinutePolicy, slotIntervalMs: 15 * MINUTE },
    });
    const taken = await reschedule(w, tenantId, move(mine, MONDAY + 14 * HOUR), undefined);
    expect(taken.error?.reason).toBe("SLOT_UNAVAILABLE");
    const offered = taken.alternatives ?? [];
    expect(offered.map((a) => a.startMs)).toEqual([
      MONDAY + 13 * HOUR + 30 * MINUTE,
      MONDAY + 14 * HOUR + 30 * MINUTE,
      MONDAY + 13 * HOUR,
    ]);
    // Each is one the move takes.
    for (const alt of offered) {
      const moved = await reschedule(
        w,
        tenantId,
        { ...move(mine, 0), slotId: alt.slotId, startMs: 0, endMs: 0 },
        undefined,
      );
      expect(bookingOf(moved).status).toBe("BOOKING_STATUS_HELD");
    }
  });
});

describe("change", () => {
  it("confirms a hold once, and replays the confirmation for the same key", async () => {
    const { serviceId, resourceIds } = await world(1);
    const id = await holdAt(serviceId, resourceIds[0], MONDAY + 9 * HOUR);
    const key = claim(`confirm-${id}`, id);
    const first = await change(w, tenantId, { bookingId: id, action: "confirm" }, key);
    expect(bookingOf(first).status).toBe("BOOKING_STATUS_CONFIRMED");
    const again = await change(w, tenantId, { bookingId: id, action: "confirm" }, key);
    expect(again.replayed).toBe(true);
    expect(bookingOf(again)).toEqual(bookingOf(first));
    const missing = await change(
      w,
      tenantId,
      { bookingId: "bkg_nope", action: "cancel" },
      undefined,
    );
    expect(missing.error?.reason).toBe("BOOKING_NOT_FOUND");
  });
});

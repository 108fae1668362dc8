import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import {
  at,
  bookingWorld,
  DAY,
  HOUR,
  MINUTE,
  minutes,
  seconds,
  sleep,
} from "../support/booking.js";
import { clientFor, fieldViolations, jsonReason, postJson, rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  // A slow sweeper: these tests see lapsed holds before anything marks them.
  server = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "60000" });
});

/**
 * Moves a booking's time into the past behind the API's back: no call can
 * book the past, and waiting for a real start would make the test slow.
 */
async function startedAlready(bookingId: string): Promise<void> {
  await server.pool.query(
    `UPDATE bookings SET start_time = now() - interval '5 minutes', end_time = now() + interval '25 minutes',
       block_start = now() - interval '5 minutes', block_end = now() + interval '25 minutes'
     WHERE id = $1`,
    [bookingId],
  );
}

async function outboxTypes(bookingId: string): Promise<string[]> {
  const { rows } = await server.pool.query<{ type: string }>(
    "SELECT type FROM outbox WHERE booking_id = $1 ORDER BY xid, seq",
    [bookingId],
  );
  return rows.map((r) => r.type);
}

describe("holds", () => {
  it("hold, then confirm: HELD with expire_time, then CONFIRMED; each step in the outbox", async () => {
    const w = await bookingWorld(server.url);
    const slot = at(1, 10);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...slot,
      attendee: { name: "Ada", email: "ada@example.com", phone: "+44 20 7946 0000" },
      metadata: { conversationId: "c-1", lead: { score: 7 } },
    });
    expect(booking).toMatchObject({
      status: BookingStatus.HELD,
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      policyVersion: 1,
      attendee: { name: "Ada", email: "ada@example.com", phone: "+44 20 7946 0000" },
      metadata: { conversationId: "c-1", lead: { score: 7 } },
    });
    expect(booking?.id).toMatch(/^bkg_/);
    expect(booking?.startTime).toEqual(slot.startTime);
    const ttl = Number(booking?.expireTime?.seconds) - Number(booking?.createTime?.seconds);
    expect(ttl).toBeGreaterThanOrEqual(119);
    expect(ttl).toBeLessThanOrEqual(121);

    const confirmed = await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    expect(confirmed.booking?.status).toBe(BookingStatus.CONFIRMED);
    expect(confirmed.booking?.expireTime).toBeUndefined();
    // Confirming again returns it unchanged.
    const again = await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    expect(again.booking).toEqual(confirmed.booking);
    expect(await outboxTypes(booking?.id as string)).toEqual(["booking.held", "booking.confirmed"]);

    const { rows } = await server.pool.query("SELECT payload FROM outbox WHERE booking_id = $1", [
      booking?.id,
    ]);
    expect(rows[0].payload.booking).toMatchObject({
      id: booking?.id,
      metadata: { conversationId: "c-1" },
    });
  });

  it("takes the requested ttl, capped at max_hold_ttl", async () => {
    const w = await bookingWorld(server.url, {
      policy: { durations: [minutes(30)], maxHoldTtl: minutes(5) },
    });
    const short = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
      ttl: seconds(30),
    });
    const life = (b: typeof short.booking) =>
      Number(b?.expireTime?.seconds) - Number(b?.createTime?.seconds);
    expect(life(short.booking)).toBeGreaterThanOrEqual(29);
    expect(life(short.booking)).toBeLessThanOrEqual(31);
    const long = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 10),
      ttl: minutes(60),
    });
    expect(life(long.booking)).toBeLessThanOrEqual(301);
    await rejected(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 11),
        ttl: { seconds: 0n, nanos: 5e8 },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("a lapsed hold stops blocking at expire_time, before any sweeper, and can no longer be confirmed", async () => {
    const w = await bookingWorld(server.url);
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 12) };
    const { booking } = await w.bookings.createHold({ ...slot, ttl: seconds(1) });
    await rejected(w.bookings.createHold(slot), Code.Aborted, "SLOT_UNAVAILABLE");
    await sleep(1_200);
    // Read time: the hold reads as expired though nothing has marked it.
    const { rows } = await server.pool.query("SELECT status FROM bookings WHERE id = $1", [
      booking?.id,
    ]);
    expect(rows[0].status).toBe("held");
    expect(
      (await w.bookings.getBooking({ bookingId: booking?.id as string })).booking?.status,
    ).toBe(BookingStatus.EXPIRED);
    // The slot is free again, and the stale hold was recorded as expired on the way.
    const next = await w.bookings.createHold(slot);
    expect(next.booking?.status).toBe(BookingStatus.HELD);
    expect(await outboxTypes(booking?.id as string)).toEqual(["booking.held", "booking.expired"]);
    await rejected(
      w.bookings.confirmBooking({ bookingId: booking?.id as string }),
      Code.FailedPrecondition,
      "HOLD_EXPIRED",
    );
  });

  it("ListSlots offers a lapsed hold's time again from expire_time on, before any sweeper", async () => {
    const w = await bookingWorld(server.url);
    const availability = clientFor(AvailabilityService, server.url, w.key);
    const slot = at(2, 9);
    const starts = async () =>
      (
        await availability.listSlots({
          serviceId: w.serviceId,
          startTime: timestampFromMs(slot.startMs - HOUR),
          endTime: timestampFromMs(slot.startMs + HOUR),
          duration: minutes(30),
        })
      ).slots.map((s) => Number(s.startTime?.seconds) * 1000);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      startTime: slot.startTime,
      endTime: slot.endTime,
      ttl: seconds(6),
    });
    // Several calls, so a cached plan (not only a first one) is the one judged.
    for (let i = 0; i < 3; i++) {
      const held = await starts();
      expect(held).not.toContain(slot.startMs);
      expect(held).not.toContain(slot.startMs - 15 * MINUTE);
      expect(held).toContain(slot.startMs + 30 * MINUTE);
    }
    const expireMs =
      Number(booking?.expireTime?.seconds) * 1000 + (booking?.expireTime?.nanos ?? 0) / 1e6;
    await sleep(expireMs - Date.now() + 300);
    const { rows } = await server.pool.query("SELECT status FROM bookings WHERE id = $1", [
      booking?.id,
    ]);
    expect(rows[0].status).toBe("held");
    const lapsed = await starts();
    expect(lapsed).toContain(slot.startMs);
    expect(lapsed).toContain(slot.startMs - 15 * MINUTE);
  });

  it("a confirm after expiry records the expiry itself", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 13),
      ttl: seconds(1),
    });
    await sleep(1_200);
    await rejected(
      w.bookings.confirmBooking({ bookingId: booking?.id as string }),
      Code.FailedPrecondition,
      "HOLD_EXPIRED",
    );
    expect(await outboxTypes(booking?.id as string)).toEqual(["booking.held", "booking.expired"]);
    await rejected(
      w.bookings.extendHold({ bookingId: booking?.id as string }),
      Code.FailedPrecondition,
      "HOLD_EXPIRED",
    );
  });

  it("HOLD_EXPIRED reads the same whichever check refuses, its instant as protobuf JSON writes it", async () => {
    const w = await bookingWorld(server.url);
    const cases = [
      ["2020-01-02T03:04:05Z", "2020-01-02T03:04:05Z"],
      ["2020-01-02T03:04:05.25Z", "2020-01-02T03:04:05.250Z"],
      ["2020-01-02T03:04:05.123456Z", "2020-01-02T03:04:05.123456Z"],
    ];
    for (const [i, [stored, shown]] of cases.entries()) {
      const { booking } = await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9 + 2 * i),
      });
      const bookingId = booking?.id as string;
      await server.pool.query("UPDATE bookings SET expire_time = $2 WHERE id = $1", [
        bookingId,
        stored,
      ]);
      const said = `the hold lapsed at ${shown}; hold the time again`;
      // A move is refused before its write (src/booking/writes.ts), a confirm
      // under the lock (src/db/functions/05_booking_writes.sql).
      const moved = await rejected(
        w.bookings.rescheduleBooking({ bookingId, ...at(3, 10 + 2 * i) }),
        Code.FailedPrecondition,
        "HOLD_EXPIRED",
      );
      expect(moved.rawMessage).toBe(said);
      const confirmed = await rejected(
        w.bookings.confirmBooking({ bookingId }),
        Code.FailedPrecondition,
        "HOLD_EXPIRED",
      );
      expect(confirmed.rawMessage).toBe(said);
    }
  });

  it("extends a live hold, never past max_hold_ttl from now", async () => {
    const w = await bookingWorld(server.url, {
      policy: { durations: [minutes(30)], holdTtl: seconds(60), maxHoldTtl: minutes(3) },
    });
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 14),
    });
    const extended = await w.bookings.extendHold({
      bookingId: booking?.id as string,
      ttl: minutes(10),
    });
    const gained =
      Number(extended.booking?.expireTime?.seconds) - Number(booking?.createTime?.seconds);
    expect(gained).toBeGreaterThanOrEqual(179);
    expect(gained).toBeLessThanOrEqual(182);
    expect(extended.booking?.status).toBe(BookingStatus.HELD);
    expect(await outboxTypes(booking?.id as string)).toEqual([
      "booking.held",
      "booking.hold_extended",
    ]);
    await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    await rejected(
      w.bookings.extendHold({ bookingId: booking?.id as string }),
      Code.FailedPrecondition,
      "INVALID_STATE",
    );
  });

  it("an extension that would not move the expiry later changes nothing and records no event", async () => {
    const w = await bookingWorld(server.url, {
      policy: { durations: [minutes(30)], holdTtl: minutes(5), maxHoldTtl: minutes(10) },
    });
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 16),
    });
    const id = booking?.id as string;
    for (let i = 0; i < 2; i++) {
      // Ten seconds from now ends before the 5-minute hold does.
      const same = await w.bookings.extendHold({ bookingId: id, ttl: seconds(10) });
      expect(same.booking?.expireTime).toEqual(booking?.expireTime);
      expect(same.booking?.updateTime).toEqual(booking?.updateTime);
    }
    expect(await outboxTypes(id)).toEqual(["booking.held"]);
    const later = await w.bookings.extendHold({ bookingId: id, ttl: minutes(8) });
    expect(Number(later.booking?.expireTime?.seconds)).toBeGreaterThan(
      Number(booking?.expireTime?.seconds),
    );
    expect(await outboxTypes(id)).toEqual(["booking.held", "booking.hold_extended"]);
  });
});

describe("changes that change nothing", () => {
  it("a move to where the booking already is returns it unchanged and records no event", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(2, 11),
    });
    const id = booking?.id as string;
    const { startTime, endTime } = at(2, 11);
    const moved = await w.bookings.rescheduleBooking({ bookingId: id, startTime, endTime });
    expect(moved.booking).toEqual(booking);
    const again = await w.bookings.rescheduleBooking({
      bookingId: id,
      resourceId: w.resourceId,
      startTime,
      endTime,
    });
    expect(again.booking).toEqual(booking);
    // Whatever the rules say now: the resource no longer works that day.
    await w.resources.setWeeklySchedule({ resourceId: w.resourceId, weeklySchedule: {} });
    const closed = await w.bookings.rescheduleBooking({ bookingId: id, startTime, endTime });
    expect(closed.booking).toEqual(booking);
    expect(await outboxTypes(id)).toEqual(["booking.held"]);
    await w.resources.setWeeklySchedule({ resourceId: w.resourceId });
    // A real move still moves it, and says so.
    await w.bookings.rescheduleBooking({ bookingId: id, ...at(2, 12) });
    expect(await outboxTypes(id)).toEqual(["booking.held", "booking.rescheduled"]);
  });

  it("cancelling a lapsed hold returns it unchanged, EXPIRED: its time is free already", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 15),
      ttl: seconds(1),
    });
    const bookingId = booking?.id as string;
    await sleep(1_200);
    // Not yet marked by the sweeper, or already: the same answer.
    for (let i = 0; i < 2; i++) {
      const { booking: cancelled } = await w.bookings.cancelBooking({ bookingId, reason: "no" });
      expect(cancelled?.status).toBe(BookingStatus.EXPIRED);
      expect(cancelled?.cancelReason).toBe("");
    }
    expect(await outboxTypes(bookingId)).toEqual(["booking.held", "booking.expired"]);
  });
});

describe("cancel, complete, no-show", () => {
  it("cancelling frees the time at once; a cancelled booking cannot be confirmed", async () => {
    const w = await bookingWorld(server.url);
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 15) };
    const { booking } = await w.bookings.createBooking(slot);
    expect(booking?.status).toBe(BookingStatus.CONFIRMED);
    await rejected(w.bookings.createHold(slot), Code.Aborted, "SLOT_UNAVAILABLE");
    const cancelled = await w.bookings.cancelBooking({
      bookingId: booking?.id as string,
      reason: "caller changed plans",
    });
    expect(cancelled.booking).toMatchObject({
      status: BookingStatus.CANCELLED,
      cancelReason: "caller changed plans",
    });
    expect((await w.bookings.createHold(slot)).booking?.status).toBe(BookingStatus.HELD);
    const err = await rejected(
      w.bookings.confirmBooking({ bookingId: booking?.id as string }),
      Code.FailedPrecondition,
      "INVALID_STATE",
    );
    expect(err.rawMessage).toContain("cancelled");
    // Cancelling twice returns it unchanged.
    expect(
      (await w.bookings.cancelBooking({ bookingId: booking?.id as string })).booking?.cancelReason,
    ).toBe("caller changed plans");
    expect(await outboxTypes(booking?.id as string)).toEqual([
      "booking.confirmed",
      "booking.cancelled",
    ]);
  });

  it("complete and no-show only once the booking has started", async () => {
    const w = await bookingWorld(server.url);
    const a = (
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
      })
    ).booking;
    const later = (
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(2, 9),
      })
    ).booking;
    await rejected(
      w.bookings.completeBooking({ bookingId: a?.id as string }),
      Code.FailedPrecondition,
      "NOT_STARTED",
    );
    await startedAlready(a?.id as string);
    expect((await w.bookings.completeBooking({ bookingId: a?.id as string })).booking?.status).toBe(
      BookingStatus.COMPLETED,
    );
    await rejected(
      w.bookings.markNoShow({ bookingId: a?.id as string }),
      Code.FailedPrecondition,
      "INVALID_STATE",
    );
    const notYet = await rejected(
      w.bookings.markNoShow({ bookingId: later?.id as string }),
      Code.FailedPrecondition,
      "NOT_STARTED",
    );
    // A whole second reads with no fraction, as protobuf JSON writes it.
    const starts = new Date(at(2, 9).startMs).toISOString().replace(".000Z", "Z");
    expect(notYet.rawMessage).toBe(
      `the booking starts at ${starts}; it can be marked a no-show once it has started`,
    );
    const held = (
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(2, 11),
      })
    ).booking;
    await rejected(
      w.bookings.completeBooking({ bookingId: held?.id as string }),
      Code.FailedPrecondition,
      "INVALID_STATE",
    );
    expect(await outboxTypes(a?.id as string)).toEqual(["booking.confirmed", "booking.completed"]);
  });

  it("marks a started booking as a no-show", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 10),
    });
    await startedAlready(booking?.id as string);
    expect(
      (await w.bookings.markNoShow({ bookingId: booking?.id as string })).booking?.status,
    ).toBe(BookingStatus.NO_SHOW);
    expect(await outboxTypes(booking?.id as string)).toEqual([
      "booking.confirmed",
      "booking.no_show",
    ]);
  });
});

describe("conflicts", () => {
  it("half-open intervals: a booking ending at 14:30 does not conflict with one starting at 14:30", async () => {
    const w = await bookingWorld(server.url);
    await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 14),
    });
    const next = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 14, 30),
    });
    expect(next.booking?.status).toBe(BookingStatus.HELD);
    const err = await rejected(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 14, 0, 60),
      }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    const [detail] = err.findDetails(SlotConflictSchema);
    expect(
      detail?.conflicts.map((c) => [c.startTime?.seconds, c.endTime?.seconds, c.status]),
    ).toEqual([
      [at(1, 14).startTime.seconds, at(1, 14).endTime.seconds, BookingStatus.CONFIRMED],
      [at(1, 14, 30).startTime.seconds, at(1, 14, 30).endTime.seconds, BookingStatus.HELD],
    ]);
    // Ranges and statuses only: nothing about the other callers.
    expect(JSON.stringify(detail?.conflicts.map((c) => Object.keys(c)))).not.toMatch(
      /attendee|metadata|id/,
    );
  });

  it("keeps the policy's buffers free around every booking", async () => {
    const w = await bookingWorld(server.url, {
      policy: { durations: [minutes(30)], bufferAfter: minutes(15), slotInterval: minutes(15) },
    });
    const base = { serviceId: w.serviceId, resourceId: w.resourceId };
    await w.bookings.createBooking({ ...base, ...at(1, 10) });
    await rejected(
      w.bookings.createHold({ ...base, ...at(1, 10, 30) }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    expect((await w.bookings.createHold({ ...base, ...at(1, 10, 45) })).booking?.status).toBe(
      BookingStatus.HELD,
    );
  });

  it("a resource of capacity 2 takes two overlapping bookings, at the busiest instant", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const base = { serviceId: w.serviceId, resourceId: w.resourceId };
    await w.bookings.createBooking({ ...base, ...at(1, 9) });
    await w.bookings.createBooking({ ...base, ...at(1, 9, 30) });
    // 09:00-10:00 overlaps both, but never more than one at once: it fits.
    await w.bookings.createBooking({ ...base, ...at(1, 9, 0, 60) });
    await rejected(
      w.bookings.createHold({ ...base, ...at(1, 9, 15, 30) }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
  });
});

describe("rules and reasons", () => {
  it("refuses durations the policy does not offer", async () => {
    const w = await bookingWorld(server.url);
    const err = await rejected(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9, 0, 45),
      }),
      Code.FailedPrecondition,
      "INVALID_DURATION",
    );
    expect(err.rawMessage).toContain("30 min, 60 min");
  });

  it("refuses a start or end with a part below a millisecond as off the grid, never books it rounded", async () => {
    const w = await bookingWorld(server.url);
    const { startMs } = at(1, 10);
    const ts = (ms: number, nanos: number) => ({
      seconds: BigInt(Math.floor(ms / 1000)),
      nanos: (ms % 1000) * 1_000_000 + nanos,
    });
    const json = clientFor(BookingService, server.url, w.key, "connect");
    for (const [client, resourceId] of [
      [w.bookings, w.resourceId],
      [json, w.resourceId],
      [w.bookings, ""], // any resource
    ] as const) {
      // As a start a millisecond off is refused...
      await rejected(
        client.createHold({
          serviceId: w.serviceId,
          resourceId,
          startTime: ts(startMs + 1, 0),
          endTime: ts(startMs + 1 + 30 * MINUTE, 0),
        }),
        Code.FailedPrecondition,
        "OFF_GRID",
      );
      // ...so is one half a microsecond off, not read as 10:00:00.000.
      const err = await rejected(
        client.createHold({
          serviceId: w.serviceId,
          resourceId,
          startTime: ts(startMs, 500),
          endTime: ts(startMs + 30 * MINUTE, 500),
        }),
        Code.FailedPrecondition,
        "OFF_GRID",
      );
      expect(fieldViolations(err)).toEqual(["start_time"]);
      // An end below a millisecond off makes a length the policy does not offer.
      await rejected(
        client.createHold({
          serviceId: w.serviceId,
          resourceId,
          startTime: ts(startMs, 0),
          endTime: ts(startMs + 30 * MINUTE, 999_999),
        }),
        Code.FailedPrecondition,
        "INVALID_DURATION",
      );
    }
    // Connect JSON as written: "…T10:00:00.0005Z".
    const body = {
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      startTime: new Date(startMs).toISOString().replace(".000Z", ".0005Z"),
      endTime: new Date(startMs + 30 * MINUTE).toISOString().replace(".000Z", ".0005Z"),
    };
    const reply = await postJson(server.url, "holdfast.v1.BookingService/CreateHold", body, w.key);
    expect([reply.status, jsonReason(reply)]).toEqual([400, "OFF_GRID"]);
    // A move too.
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 11),
    });
    await rejected(
      w.bookings.rescheduleBooking({
        bookingId: booking?.id as string,
        startTime: ts(startMs, 1),
        endTime: ts(startMs + 30 * MINUTE, 1),
      }),
      Code.FailedPrecondition,
      "OFF_GRID",
    );
    const { bookings } = await w.bookings.listBookings({});
    expect(bookings.map((b) => b.id)).toEqual([booking?.id]);
  });

  it("refuses times in the past or too soon, and too far ahead, by the database clock", async () => {
    const w = await bookingWorld(server.url, {
      policy: {
        durations: [minutes(30)],
        minNotice: minutes(60),
        maxAdvance: { seconds: BigInt(7 * 86400), nanos: 0 },
      },
    });
    const base = { serviceId: w.serviceId, resourceId: w.resourceId };
    // On the 30-minute grid, within the hour of notice the policy asks for.
    const soon = Math.ceil((Date.now() + MINUTE) / (30 * MINUTE)) * 30 * MINUTE;
    const tooSoon = await rejected(
      w.bookings.createHold({
        ...base,
        startTime: timestampFromMs(soon),
        endTime: timestampFromMs(soon + 30 * MINUTE),
      }),
      Code.FailedPrecondition,
      "TOO_SOON",
    );
    expect(tooSoon.rawMessage).toContain("60 min");
    await rejected(
      w.bookings.createHold({ ...base, ...at(9, 9) }),
      Code.FailedPrecondition,
      "TOO_FAR_AHEAD",
    );
    const past = Math.floor(Date.now() / (30 * MINUTE)) * 30 * MINUTE - HOUR;
    await rejected(
      clientFor(BookingService, server.url, w.key).createBooking({
        ...base,
        startTime: timestampFromMs(past),
        endTime: timestampFromMs(past + 30 * MINUTE),
      }),
      Code.FailedPrecondition,
      "TOO_SOON",
    );
    expect((await w.bookings.createHold({ ...base, ...at(3, 9) })).booking?.status).toBe(
      BookingStatus.HELD,
    );
  });

  it("refuses unknown or foreign services, resources and bookings", async () => {
    const w = await bookingWorld(server.url);
    const other = await bookingWorld(server.url);
    const slot = at(1, 9);
    await rejected(
      w.bookings.createHold({ serviceId: "svc_nope", resourceId: w.resourceId, ...slot }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
    await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: other.resourceId, ...slot }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    const theirs = (
      await other.bookings.createHold({
        serviceId: other.serviceId,
        resourceId: other.resourceId,
        ...slot,
      })
    ).booking;
    const bookingId = theirs?.id as string;
    await rejected(w.bookings.getBooking({ bookingId }), Code.NotFound, "BOOKING_NOT_FOUND");
    await rejected(w.bookings.confirmBooking({ bookingId }), Code.NotFound, "BOOKING_NOT_FOUND");
    await rejected(w.bookings.cancelBooking({ bookingId }), Code.NotFound, "BOOKING_NOT_FOUND");
    expect(
      (await other.bookings.getBooking({ bookingId: theirs?.id as string })).booking?.status,
    ).toBe(BookingStatus.HELD);
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
  });

  it("refuses a resource outside the service, inactive resources and inactive services", async () => {
    const w = await bookingWorld(server.url, { resources: 2 });
    const loose = (await w.resources.createResource({ name: "Loose", timeZone: "UTC" })).resource
      ?.id as string;
    await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: loose, ...at(1, 9) }),
      Code.FailedPrecondition,
      "RESOURCE_NOT_IN_SERVICE",
    );
    await w.resources.deleteResource({ resourceId: w.resourceIds[1] as string });
    await rejected(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceIds[1] as string,
        ...at(1, 9),
      }),
      Code.FailedPrecondition,
      "RESOURCE_INACTIVE",
    );
    await w.catalog.updateService({
      service: { id: w.serviceId, active: false },
      updateMask: { paths: ["active"] },
    });
    await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) }),
      Code.FailedPrecondition,
      "SERVICE_INACTIVE",
    );
  });

  it("names every bad field of a malformed request", async () => {
    const w = await bookingWorld(server.url);
    const slot = at(1, 9);
    const err = await rejected(
      w.bookings.createHold({
        serviceId: "",
        resourceId: w.resourceId,
        startTime: slot.endTime,
        endTime: slot.startTime,
        attendee: { email: "not-an-email", phone: "call me" },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual([
      "attendee.email",
      "attendee.phone",
      "end_time",
      "service_id",
    ]);
    await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });
});

describe("reading bookings", () => {
  it("refuses a start window that holds no instant, as ListSlots does", async () => {
    const w = await bookingWorld(server.url);
    const { startTime, endTime } = at(1, 9);
    for (const [from, to] of [
      [endTime, startTime],
      [startTime, startTime],
    ]) {
      const err = await rejected(
        w.bookings.listBookings({ startTimeFrom: from, startTimeTo: to }),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      expect(err.rawMessage).toContain("start_time_to: must be after start_time_from");
    }
    // Either end alone, or a window with room, lists.
    await w.bookings.listBookings({ startTimeFrom: endTime });
    await w.bookings.listBookings({ startTimeTo: startTime });
    await w.bookings.listBookings({ startTimeFrom: startTime, startTimeTo: endTime });
  });

  it("lists with filters by resource, service, status, start window and metadata, paged", async () => {
    const w = await bookingWorld(server.url, { resources: 2 });
    const [r1, r2] = w.resourceIds as [string, string];
    const make = (
      resourceId: string,
      hour: number,
      confirmed: boolean,
      metadata: Record<string, string>,
    ) =>
      (confirmed ? w.bookings.createBooking : w.bookings.createHold)({
        serviceId: w.serviceId,
        resourceId,
        ...at(1, hour),
        metadata,
      });
    await make(r1, 9, true, { channel: "voice" });
    await make(r1, 10, false, { channel: "chat" });
    await make(r2, 9, false, { channel: "voice", extra: "x" });
    await make(r2, 11, true, { channel: "voice" });
    const ids = (res: { bookings: { resourceId: string; startTime?: { seconds: bigint } }[] }) =>
      res.bookings.map(
        (b) =>
          `${b.resourceId === r1 ? "r1" : "r2"}@${(Number(b.startTime?.seconds) * 1000 - at(1, 0).startMs) / HOUR}`,
      );

    expect(ids(await w.bookings.listBookings({}))).toEqual(["r1@9", "r2@9", "r1@10", "r2@11"]);
    expect(ids(await w.bookings.listBookings({ resourceId: r2 }))).toEqual(["r2@9", "r2@11"]);
    expect(ids(await w.bookings.listBookings({ statuses: [BookingStatus.HELD] }))).toEqual([
      "r2@9",
      "r1@10",
    ]);
    expect(ids(await w.bookings.listBookings({ metadata: { channel: "voice" } }))).toEqual([
      "r1@9",
      "r2@9",
      "r2@11",
    ]);
    expect(
      ids(await w.bookings.listBookings({ metadata: { channel: "voice", extra: "x" } })),
    ).toEqual(["r2@9"]);
    expect(
      ids(
        await w.bookings.listBookings({
          startTimeFrom: at(1, 10).startTime,
          startTimeTo: at(1, 11).startTime,
        }),
      ),
    ).toEqual(["r1@10"]);
    expect(ids(await w.bookings.listBookings({ serviceId: "svc_other" }))).toEqual([]);

    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await w.bookings.listBookings({ pageSize: 3, pageToken });
      seen.push(...ids(page));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual(["r1@9", "r2@9", "r1@10", "r2@11"]);
    await rejected(
      w.bookings.listBookings({ statuses: [99 as BookingStatus] }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("ListBookings sees a lapsed hold as expired", async () => {
    const w = await bookingWorld(server.url);
    await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
      ttl: seconds(1),
    });
    await sleep(1_100);
    expect((await w.bookings.listBookings({ statuses: [BookingStatus.HELD] })).bookings).toEqual(
      [],
    );
    expect(
      (await w.bookings.listBookings({ statuses: [BookingStatus.EXPIRED] })).bookings,
    ).toHaveLength(1);
  });
});

describe("the sweeper", () => {
  it("marks lapsed holds expired within about a second and writes booking.expired", async () => {
    const fast = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "200" });
    const w = await bookingWorld(fast.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
      ttl: seconds(1),
    });
    const deadline = Date.now() + 3_000;
    let status = "held";
    while (status === "held" && Date.now() < deadline) {
      await sleep(100);
      status = (await fast.pool.query("SELECT status FROM bookings WHERE id = $1", [booking?.id]))
        .rows[0].status;
    }
    expect(status).toBe("expired");
    const { rows } = await fast.pool.query(
      "SELECT o.occur_time - b.expire_time AS lag FROM outbox o JOIN bookings b ON b.id = o.booking_id WHERE o.booking_id = $1 AND o.type = 'booking.expired'",
      [booking?.id],
    );
    expect(rows).toHaveLength(1);
  });
});

void DAY;

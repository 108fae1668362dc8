import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { AvailabilityService, type Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { type Booking, BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { type Event, EventService } from "../../gen/holdfast/v1/event_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { HOUR, MINUTE, minutes, sleep } from "../support/booking.js";
import { clientFor, newTenant, postJson, rejected } from "../support/clients.js";
import { webhookReceiver } from "../support/receiver.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true" });
});

const NEW_YORK = "America/New_York";
const KOLKATA = "Asia/Kolkata";
const msOf = (t: { seconds: bigint; nanos: number } | undefined) =>
  Number(t?.seconds) * 1000 + Math.floor((t?.nanos ?? 0) / 1e6);
const pad = (n: number) => String(n).padStart(2, "0");

/**
 * Next year's spring-forward in New York: the second Sunday of March, when
 * 02:00 EST (07:00 UTC) becomes 03:00 EDT. Computed, so the test keeps
 * working whatever today's date.
 */
function springForward() {
  const year = new Date().getUTCFullYear() + 1;
  let day = 8;
  while (new Date(Date.UTC(year, 2, day)).getUTCDay() !== 0) day++;
  const date = `${year}-03-${pad(day)}`;
  return { year, date, atMs: Date.UTC(year, 2, day, 7) };
}

/** Every local time names the same instant as its UTC field, in the given zone. */
function expectConsistent(x: Slot | Booking, zone: string) {
  expect(x.timeZone).toBe(zone);
  expect(Date.parse(x.localStartTime)).toBe(msOf(x.startTime));
  expect(Date.parse(x.localEndTime)).toBe(msOf(x.endTime));
}

/** A tenant with a New York resource and a Kolkata one (no schedules: open at all hours), one service on both. */
async function world() {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const ny = (await resources.createResource({ name: "NY", timeZone: NEW_YORK })).resource
    ?.id as string;
  const kolkata = (await resources.createResource({ name: "Kolkata", timeZone: KOLKATA })).resource
    ?.id as string;
  const { service } = await clientFor(CatalogService, server.url, key).createService({
    name: "Consultation",
    resourceIds: [ny, kolkata],
    policy: { durations: [minutes(30)], slotInterval: minutes(30) },
  });
  return {
    key,
    ny,
    kolkata,
    serviceId: service?.id as string,
    slots: clientFor(AvailabilityService, server.url, key),
    bookings: clientFor(BookingService, server.url, key),
    events: clientFor(EventService, server.url, key),
  };
}

describe("local times", () => {
  it("are on slots across a DST change and in a half-hour zone, and on the holds made from them", async () => {
    const w = await world();
    const dst = springForward();
    // New York's local midnight (05:00 UTC) to 05:00 EDT.
    const { slots, timeZones } = await w.slots.listSlots({
      serviceId: w.serviceId,
      resourceIds: [w.ny],
      startTime: timestampFromMs(dst.atMs - 2 * HOUR),
      endTime: timestampFromMs(dst.atMs + 2 * HOUR),
    });
    expect(timeZones).toEqual({ [w.ny]: NEW_YORK });
    for (const s of slots) expectConsistent(s, NEW_YORK);
    const across = slots.find((s) => msOf(s.startTime) === dst.atMs - 30 * MINUTE) as Slot;
    expect([across.localStartTime, across.localEndTime]).toEqual([
      `${dst.date}T01:30:00-05:00`,
      `${dst.date}T03:00:00-04:00`,
    ]);
    expect(slots.find((s) => msOf(s.startTime) === dst.atMs)?.localStartTime).toBe(
      `${dst.date}T03:00:00-04:00`,
    );

    // Kolkata is UTC+05:30 all year: 03:30 UTC is 09:00 there.
    const nineInKolkata = Date.UTC(dst.year, 5, 3, 3, 30);
    const kolkataSlots = (
      await w.slots.listSlots({
        serviceId: w.serviceId,
        resourceIds: [w.kolkata],
        startTime: timestampFromMs(nineInKolkata),
        endTime: timestampFromMs(nineInKolkata + HOUR),
      })
    ).slots;
    expect(kolkataSlots.map((s) => [s.localStartTime, s.localEndTime, s.timeZone])).toEqual([
      [`${dst.year}-06-03T09:00:00+05:30`, `${dst.year}-06-03T09:30:00+05:30`, KOLKATA],
      [`${dst.year}-06-03T09:30:00+05:30`, `${dst.year}-06-03T10:00:00+05:30`, KOLKATA],
    ]);

    // A hold by slot id, its confirmation, reads, and an idempotent replay.
    const withKey = { headers: { "Idempotency-Key": `hold-${w.ny}` } };
    const held = (await w.bookings.createHold({ slotId: across.slotId }, withKey))
      .booking as Booking;
    expect([held.localStartTime, held.localEndTime, held.timeZone]).toEqual([
      `${dst.date}T01:30:00-05:00`,
      `${dst.date}T03:00:00-04:00`,
      NEW_YORK,
    ]);
    let replayed = false;
    const again = await w.bookings.createHold(
      { slotId: across.slotId },
      {
        ...withKey,
        onHeader: (h) => {
          replayed = h.get("idempotent-replayed") === "true";
        },
      },
    );
    expect(replayed).toBe(true);
    expect(again.booking?.localStartTime).toBe(held.localStartTime);
    const confirmed = (await w.bookings.confirmBooking({ bookingId: held.id })).booking as Booking;
    expectConsistent(confirmed, NEW_YORK);
    expectConsistent(
      (await w.bookings.getBooking({ bookingId: held.id })).booking as Booking,
      NEW_YORK,
    );
    const listed = (await w.bookings.listBookings({})).bookings;
    expect(listed.map((b) => b.localStartTime)).toEqual([held.localStartTime]);

    // The same over plain Connect JSON, by the JSON names.
    const json = await postJson(
      server.url,
      "holdfast.v1.BookingService/GetBooking",
      { bookingId: held.id },
      w.key,
    );
    expect(json.body.booking).toMatchObject({
      localStartTime: `${dst.date}T01:30:00-05:00`,
      localEndTime: `${dst.date}T03:00:00-04:00`,
      timeZone: NEW_YORK,
    });

    // Moved to the Kolkata resource, it reads in Kolkata's time.
    const moved = (
      await w.bookings.rescheduleBooking({
        bookingId: held.id,
        resourceId: w.kolkata,
        startTime: timestampFromMs(nineInKolkata),
        endTime: timestampFromMs(nineInKolkata + 30 * MINUTE),
      })
    ).booking as Booking;
    expect([moved.localStartTime, moved.localEndTime, moved.timeZone]).toEqual([
      `${dst.year}-06-03T09:00:00+05:30`,
      `${dst.year}-06-03T09:30:00+05:30`,
      KOLKATA,
    ]);
  });

  it("are on the free alternatives of a taken slot", async () => {
    const w = await world();
    const dst = springForward();
    await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.ny,
      startTime: timestampFromMs(dst.atMs - 30 * MINUTE),
      endTime: timestampFromMs(dst.atMs),
    });
    const err = await rejected(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.ny,
        startTime: timestampFromMs(dst.atMs - 30 * MINUTE),
        endTime: timestampFromMs(dst.atMs),
      }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    const alternatives = err.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    expect(alternatives).toHaveLength(3);
    for (const a of alternatives) expectConsistent(a, a.resourceId === w.ny ? NEW_YORK : KOLKATA);
    // The same resource first: either side of the change, each in its own offset.
    expect(alternatives.filter((a) => a.resourceId === w.ny).map((a) => a.localStartTime)).toEqual(
      expect.arrayContaining([`${dst.date}T01:00:00-05:00`, `${dst.date}T03:00:00-04:00`]),
    );
  });

  it("are on the bookings of events, streamed and listed, and of webhook deliveries", async () => {
    const w = await world();
    const dst = springForward();
    let secret = "";
    const receiver = await webhookReceiver({ secrets: () => [secret] });
    try {
      const created = await clientFor(WebhookService, server.url, w.key).createWebhook({
        url: receiver.url(),
        eventTypes: ["booking.held"],
      });
      secret = created.secret;
      const abort = new AbortController();
      const streamed: Event[] = [];
      const reading = (async () => {
        try {
          for await (const res of w.events.watchEvents(
            { fromBeginning: true },
            { signal: abort.signal },
          )) {
            if (res.event) streamed.push(res.event);
          }
        } catch {}
      })();
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.ny,
        startTime: timestampFromMs(dst.atMs - 30 * MINUTE),
        endTime: timestampFromMs(dst.atMs),
      });

      let listed: Event[] = [];
      for (let i = 0; i < 200 && listed.length === 0; i++) {
        listed = (await w.events.listEvents({})).events;
        if (listed.length === 0) await sleep(50);
      }
      for (let i = 0; i < 200 && streamed.length === 0; i++) await sleep(50);
      abort.abort();
      await reading;
      for (const e of [listed[0], streamed[0]]) {
        expect(e?.booking?.localStartTime).toBe(`${dst.date}T01:30:00-05:00`);
        expect(e?.booking?.localEndTime).toBe(`${dst.date}T03:00:00-04:00`);
        expect(e?.booking?.timeZone).toBe(NEW_YORK);
      }

      const [delivery] = await receiver.waitFor((r) => r.length >= 1);
      // Signed as sent: the local times are part of what the signature covers.
      expect(delivery?.verified).toMatchObject({
        type: "booking.held",
        data: {
          booking: {
            localStartTime: `${dst.date}T01:30:00-05:00`,
            localEndTime: `${dst.date}T03:00:00-04:00`,
            timeZone: NEW_YORK,
          },
        },
      });
    } finally {
      await receiver.stop();
    }
  });
});

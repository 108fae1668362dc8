import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AvailabilityService, type Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import {
  OverrideKind,
  RecurrenceFrequency,
  ResourceService,
} from "../../gen/holdfast/v1/resource_pb.js";
import { DAY, dayStart, HOUR, MINUTE, minutes, seconds } from "../support/booking.js";
import { clientFor, fieldViolations, newTenant, postJson, rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", "Z");
const ms = (t: { seconds: bigint } | undefined) => Number(t?.seconds) * 1000;
const range = (fromMs: number, toMs: number) => ({
  startTime: timestampFromMs(fromMs),
  endTime: timestampFromMs(toMs),
});

/** The next Monday at least two days from now, 00:00 UTC. */
function nextMonday(): number {
  let d = dayStart(2);
  while (new Date(d).getUTCDay() !== 1) d += DAY;
  return d;
}

async function clinic(
  opts: {
    timeZone?: string;
    capacity?: number;
    policy?: Parameters<
      ReturnType<typeof clientFor<typeof CatalogService>>["createService"]
    >[0]["policy"];
    resources?: number;
  } = {},
) {
  const { key, tenantId } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const ids: string[] = [];
  for (let i = 0; i < (opts.resources ?? 1); i++) {
    const { resource } = await resources.createResource({
      name: `Dr ${i}`,
      timeZone: opts.timeZone ?? "UTC",
      capacity: opts.capacity ?? 1,
      weeklySchedule: {
        windows: [1, 2, 3, 4, 5].flatMap((weekday) => [
          { weekday, startTime: "09:00", endTime: "12:00" },
          { weekday, startTime: "13:00", endTime: "17:00" },
        ]),
      },
    });
    ids.push(resource?.id as string);
  }
  const catalog = clientFor(CatalogService, server.url, key);
  const { service } = await catalog.createService({
    name: "Consultation",
    resourceIds: ids,
    policy: opts.policy ?? { durations: [minutes(30), minutes(60)] },
  });
  return {
    key,
    tenantId,
    resourceId: ids[0] as string,
    resourceIds: ids,
    serviceId: service?.id as string,
    resources,
    catalog,
    slots: clientFor(AvailabilityService, server.url, key),
    bookings: clientFor(BookingService, server.url, key),
  };
}

const starts = (slots: Slot[]) => slots.map((s) => iso(ms(s.startTime)).slice(11, 16));

describe("ListSlots", () => {
  it("lists exactly the working time on the grid, with each resource's zone, an empty day being an answer", async () => {
    const c = await clinic();
    const monday = nextMonday();
    const { slots, timeZones } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday, monday + DAY),
      duration: minutes(60),
    });
    expect(starts(slots)).toEqual(["09:00", "10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]);
    expect(
      slots.every(
        (s) => s.remaining === 1 && s.slotId.startsWith("slot_") && s.resourceId === c.resourceId,
      ),
    ).toBe(true);
    expect(timeZones).toEqual({ [c.resourceId]: "UTC" });
    // Saturday: nothing, and that is not an error.
    const saturday = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday + 5 * DAY, monday + 6 * DAY),
    });
    expect(saturday.slots).toEqual([]);
    // The default duration is the policy's first (30 min): 14 starts.
    expect(
      (await c.slots.listSlots({ serviceId: c.serviceId, ...range(monday, monday + DAY) })).slots,
    ).toHaveLength(14);
  });

  it("reads schedules in the resource's zone, across a daylight-saving change", async () => {
    const c = await clinic({ timeZone: "America/New_York", policy: { durations: [minutes(60)] } });
    // 2031-03-09 is the spring-forward Sunday in New York; give the resource weekend hours.
    await c.resources.setWeeklySchedule({
      resourceId: c.resourceId,
      weeklySchedule: {
        windows: [
          { weekday: 7, startTime: "00:00", endTime: "24:00" },
          { weekday: 1, startTime: "09:00", endTime: "10:00" },
        ],
      },
    });
    const sunday = Date.parse("2031-03-09T05:00:00Z");
    const { slots } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(sunday, sunday + 2 * DAY),
    });
    const sundayStarts = slots.filter((s) => ms(s.startTime) < Date.parse("2031-03-10T04:00:00Z"));
    // A 23-hour day: 23 hourly starts, none twice.
    expect(sundayStarts).toHaveLength(23);
    expect(new Set(sundayStarts.map((s) => ms(s.startTime))).size).toBe(23);
    // Monday 09:00 in New York is 13:00Z once daylight time has begun.
    expect(iso(ms(slots[slots.length - 1]?.startTime))).toBe("2031-03-10T13:00:00Z");
  });

  it("applies the policy: slot interval, buffers around bookings, min notice, max advance", async () => {
    const c = await clinic({
      policy: {
        durations: [minutes(30)],
        slotInterval: minutes(15),
        bufferAfter: minutes(15),
        maxAdvance: { seconds: BigInt(40 * 86400), nanos: 0 },
      },
    });
    const monday = nextMonday();
    await c.bookings.createBooking({
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + 10 * HOUR, monday + 10.5 * HOUR),
    });
    const { slots } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday + 9 * HOUR, monday + 12 * HOUR),
    });
    // 10:00-10:30 booked and 10:30-10:45 kept free after it; the 15-minute buffer after 09:30 also keeps 09:45 off.
    expect(starts(slots)).toEqual(["09:00", "09:15", "10:45", "11:00", "11:15", "11:30"]);
    const farAway = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday + 45 * DAY, monday + 52 * DAY),
    });
    expect(farAway.slots).toEqual([]);
  });

  it("intersects the service's business hours, read in the service's own zone", async () => {
    const c = await clinic({ timeZone: "Europe/London" });
    await c.catalog.updateService({
      service: {
        id: c.serviceId,
        timeZone: "America/New_York",
        policy: {
          durations: [minutes(60)],
          businessHours: [1, 2, 3, 4, 5].map((weekday) => ({
            weekday,
            startTime: "09:00",
            endTime: "17:00",
          })),
        },
      },
    });
    // A January Monday: London is UTC, New York UTC-5, so business hours are 14:00-22:00 in London.
    const monday = Date.parse("2031-01-06T00:00:00Z");
    const { slots } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday, monday + DAY),
    });
    expect(starts(slots)).toEqual(["14:00", "15:00", "16:00"]);
  });

  it("shows capacity left, and drops a full slot", async () => {
    const c = await clinic({ capacity: 2, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const nine = range(monday + 9 * HOUR, monday + 10 * HOUR);
    const remaining = async () =>
      (
        await c.slots.listSlots({
          serviceId: c.serviceId,
          ...range(monday + 9 * HOUR, monday + 10 * HOUR),
        })
      ).slots.map((s) => s.remaining);
    expect(await remaining()).toEqual([2]);
    await c.bookings.createHold({ serviceId: c.serviceId, resourceId: c.resourceId, ...nine });
    expect(await remaining()).toEqual([1]);
    await c.bookings.createBooking({ serviceId: c.serviceId, resourceId: c.resourceId, ...nine });
    expect(await remaining()).toEqual([]);
  });

  it("refuses ranges over 62 days, durations the policy lacks, and resources outside the service", async () => {
    const c = await clinic();
    const monday = nextMonday();
    const err = await rejected(
      c.slots.listSlots({ serviceId: c.serviceId, ...range(monday, monday + 63 * DAY) }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["end_time"]);
    await rejected(
      c.slots.listSlots({
        serviceId: c.serviceId,
        ...range(monday, monday + DAY),
        duration: minutes(45),
      }),
      Code.FailedPrecondition,
      "INVALID_DURATION",
    );
    const other = (await c.resources.createResource({ name: "Other", timeZone: "UTC" })).resource
      ?.id as string;
    await rejected(
      c.slots.listSlots({
        serviceId: c.serviceId,
        resourceIds: [other],
        ...range(monday, monday + DAY),
      }),
      Code.FailedPrecondition,
      "RESOURCE_NOT_IN_SERVICE",
    );
    await rejected(
      c.slots.listSlots({ serviceId: "svc_nope", ...range(monday, monday + DAY) }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
  });

  it("answers the same slots in every protocol and format", async () => {
    // Binary answers carry their slots pre-encoded (src/rpc/slot-wire.ts), JSON ones through protobuf-es.
    // 400 slots make an answer above 64 KiB, which goes out gzipped.
    const c = await clinic({
      resources: 2,
      timeZone: "America/New_York",
      policy: { durations: [minutes(30)], slotInterval: minutes(5) },
    });
    const monday = nextMonday();
    const req = { serviceId: c.serviceId, ...range(monday, monday + 3 * DAY), pageSize: 400 };
    const interceptors = [
      (next: Parameters<Interceptor>[0]) => (r: Parameters<ReturnType<Interceptor>>[0]) => {
        r.header.set("authorization", `Bearer ${c.key}`);
        return next(r);
      },
    ];
    const answers = await Promise.all([
      c.slots.listSlots(req),
      clientFor(AvailabilityService, server.url, c.key, "grpc-web").listSlots(req),
      clientFor(AvailabilityService, server.url, c.key, "connect").listSlots(req),
      ...[
        { useBinaryFormat: true },
        { useHttpGet: true },
        { useHttpGet: true, useBinaryFormat: true },
      ].map((o) =>
        createClient(
          AvailabilityService,
          createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", interceptors, ...o }),
        ).listSlots(req),
      ),
    ]);
    const first = answers[0];
    expect(first?.slots).toHaveLength(400);
    expect(first?.nextPageToken).not.toBe("");
    expect(first?.slots[0]?.localStartTime).toMatch(/^\d{4}-\d{2}-\d{2}T09:00:00-0[45]:00$/);
    for (const a of answers.slice(1)) expect(a).toEqual(first);
    const last = await c.slots.listSlots({ ...req, pageSize: 1000 });
    expect(last.slots.slice(0, 400)).toEqual(first?.slots);
    expect(last.nextPageToken).toBe("");
  });

  it("pages long answers: every slot once, in order, across pages and computation rounds", async () => {
    // A one-minute grid: 3 resources x 7 days is 30,240 grid starts, in several rounds of computation.
    const c = await clinic({
      resources: 3,
      policy: { durations: [minutes(30)], slotInterval: minutes(1) },
    });
    const monday = nextMonday();
    const window = { serviceId: c.serviceId, ...range(monday, monday + 7 * DAY) };
    const paged: Slot[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await c.slots.listSlots({ ...window, pageSize: 777, pageToken });
      expect(page.slots.length).toBeLessThanOrEqual(777);
      paged.push(...page.slots);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "" && pages < 100);
    // Each weekday: 151 starts in 09:00-12:00 and 211 in 13:00-17:00, per resource.
    const total = 3 * (151 + 211) * 5;
    expect(paged).toHaveLength(total);
    expect(pages).toBe(Math.ceil(total / 777));
    const byDay: Slot[] = [];
    for (let d = 0; d < 7; d++) {
      const day = range(monday + d * DAY, monday + (d + 1) * DAY);
      byDay.push(...(await c.slots.listSlots({ ...window, ...day, pageSize: 5000 })).slots);
    }
    const key = (s: Slot) => `${ms(s.startTime)} ${s.resourceId}`;
    expect(paged.map(key)).toEqual(byDay.map(key));
  });

  it("bounds the work of a call: over a long closed stretch of many resources, pages come short with a token", async () => {
    // 150 resources on a one-minute grid, closed all weekend: 432,000 grid
    // starts before Monday's first slot, more than one call judges.
    const c = await clinic({
      resources: 150,
      policy: { durations: [minutes(30)], slotInterval: minutes(1) },
    });
    const monday = nextMonday();
    const window = { serviceId: c.serviceId, ...range(monday - 2 * DAY, monday + DAY) };
    const first = await c.slots.listSlots({ ...window, pageSize: 5 });
    expect(first.slots).toEqual([]);
    expect(first.nextPageToken).not.toBe("");
    expect(Object.keys(first.timeZones)).toHaveLength(150);
    // Paging on finds Monday's first slots, as one call over Monday alone does.
    let page = first;
    let pages = 1;
    while (page.slots.length === 0 && page.nextPageToken !== "" && pages < 20) {
      page = await c.slots.listSlots({ ...window, pageSize: 5, pageToken: page.nextPageToken });
      pages++;
    }
    expect(pages).toBeGreaterThan(2);
    const monday9 = await c.slots.listSlots({
      ...window,
      ...range(monday, monday + DAY),
      pageSize: 5,
    });
    const key = (s: Slot) => `${ms(s.startTime)} ${s.resourceId}`;
    expect(page.slots.map(key)).toEqual(monday9.slots.map(key));
    expect(iso(ms(page.slots[0]?.startTime))).toBe(iso(monday + 9 * HOUR));
  }, 60_000);

  it("notices a service changed elsewhere before its notification arrives", async () => {
    const c = await clinic();
    const monday = nextMonday();
    const window = { serviceId: c.serviceId, ...range(monday, monday + DAY) };
    expect((await c.slots.listSlots(window)).slots.length).toBeGreaterThan(0);
    // As another instance would, without the notification that drops cached copies.
    await server.pool.query(
      "UPDATE services SET active = false, revision = revision + 1 WHERE id = $1",
      [c.serviceId],
    );
    expect((await c.slots.listSlots(window)).slots).toEqual([]);
  });

  it("returns 1000 slots by default and refuses a token used with another query", async () => {
    const c = await clinic({ resources: 3 });
    const monday = nextMonday();
    const window = { serviceId: c.serviceId, ...range(monday, monday + 62 * DAY) };
    const first = await c.slots.listSlots(window);
    expect(first.slots).toHaveLength(1000);
    expect(first.nextPageToken).not.toBe("");
    const second = await c.slots.listSlots({ ...window, pageToken: first.nextPageToken });
    expect(ms(second.slots[0]?.startTime)).toBeGreaterThanOrEqual(ms(first.slots[999]?.startTime));
    await rejected(
      c.slots.listSlots({ ...window, duration: minutes(60), pageToken: first.nextPageToken }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await rejected(
      c.slots.listSlots({ ...window, pageToken: "bm90IGEgdG9rZW4" }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    // A token edited to start before the range would search past the 62-day limit.
    const token = JSON.parse(Buffer.from(first.nextPageToken, "base64url").toString());
    for (const k of [`${monday - 3650 * DAY}|`, "-9007199254740991|"]) {
      await rejected(
        c.slots.listSlots({
          ...window,
          pageToken: Buffer.from(JSON.stringify({ ...token, k })).toString("base64url"),
        }),
        Code.InvalidArgument,
        "INVALID_PAGE_TOKEN",
      );
    }
    const negative = await rejected(
      c.slots.listSlots({ ...window, pageSize: -1 }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(negative)).toEqual(["page_size"]);
  });
});

describe("overrides", () => {
  it("block a vacation and a recurring meeting, open a Saturday, and can be listed and deleted", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const date = (offset: number) => iso(monday + offset * DAY).slice(0, 10);
    const vacation = await c.resources.createOverride({
      resourceId: c.resourceId,
      kind: OverrideKind.BLOCK,
      title: "Vacation",
      allDay: true,
      startDate: date(1),
      endDate: date(2),
    });
    await c.resources.createOverride({
      resourceId: c.resourceId,
      kind: OverrideKind.BLOCK,
      title: "Standup",
      startDate: date(0),
      startTime: "09:00",
      endTime: "10:00",
      recurrence: { frequency: RecurrenceFrequency.WEEKLY, weekdays: [1, 4] },
    });
    await c.resources.createOverride({
      resourceId: c.resourceId,
      kind: OverrideKind.OPEN,
      title: "Saturday clinic",
      startDate: date(5),
      startTime: "10:00",
      endTime: "12:00",
    });
    const week = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday, monday + 7 * DAY),
    });
    const perDay = (offset: number) =>
      starts(
        week.slots.filter(
          (s) =>
            ms(s.startTime) >= monday + offset * DAY &&
            ms(s.startTime) < monday + (offset + 1) * DAY,
        ),
      );
    expect(perDay(0)).toEqual(["10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]);
    expect(perDay(1)).toEqual([]);
    expect(perDay(2)).toEqual([]);
    // Thursday has the standup too.
    expect(perDay(3)).toEqual(["10:00", "11:00", "13:00", "14:00", "15:00", "16:00"]);
    expect(perDay(4)).toHaveLength(7);
    expect(perDay(5)).toEqual(["10:00", "11:00"]);
    expect(perDay(6)).toEqual([]);

    const listed = await c.resources.listOverrides({ resourceId: c.resourceId });
    expect(listed.overrides.map((o) => o.title)).toEqual([
      "Vacation",
      "Standup",
      "Saturday clinic",
    ]);
    expect(listed.overrides[1]?.recurrence?.weekdays).toEqual([1, 4]);
    await c.resources.deleteOverride({
      resourceId: c.resourceId,
      overrideId: vacation.override?.id as string,
    });
    const after = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday + DAY, monday + 2 * DAY),
    });
    expect(after.slots).toHaveLength(7);
    await rejected(
      c.resources.deleteOverride({
        resourceId: c.resourceId,
        overrideId: vacation.override?.id as string,
      }),
      Code.NotFound,
      "OVERRIDE_NOT_FOUND",
    );
  });

  it("name every bad field", async () => {
    const c = await clinic();
    const err = await rejected(
      c.resources.createOverride({
        resourceId: c.resourceId,
        kind: OverrideKind.BLOCK,
        startDate: "2031-02-30",
        startTime: "9am",
        recurrence: { frequency: RecurrenceFrequency.MONTHLY, monthDay: 40 },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(
      expect.arrayContaining(["start_date", "start_time", "end_time", "recurrence.month_day"]),
    );
    const kind = await rejected(
      c.resources.createOverride({
        resourceId: c.resourceId,
        startDate: "2031-02-03",
        allDay: true,
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(kind)).toEqual(["kind"]);
    await rejected(
      c.resources.createOverride({
        resourceId: "rsc_nope",
        kind: OverrideKind.OPEN,
        startDate: "2031-02-03",
        allDay: true,
      }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
  });
});

describe("holds follow the same rules", () => {
  it("accept every listed slot by its slot_id, and refuse each rule with its reason", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    await c.resources.createOverride({
      resourceId: c.resourceId,
      kind: OverrideKind.BLOCK,
      title: "Lunch meeting",
      startDate: iso(monday).slice(0, 10),
      startTime: "14:00",
      endTime: "15:00",
    });
    const { slots } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday, monday + DAY),
    });
    expect(starts(slots)).toEqual(["09:00", "10:00", "11:00", "13:00", "15:00", "16:00"]);
    for (const s of slots) {
      const { booking } = await c.bookings.createHold({ slotId: s.slotId });
      expect([booking?.resourceId, ms(booking?.startTime), ms(booking?.endTime)]).toEqual([
        s.resourceId,
        ms(s.startTime),
        ms(s.endTime),
      ]);
    }
    const at = (h: number, length = 60) => ({
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + h * HOUR, monday + h * HOUR + length * MINUTE),
    });
    const tuesday = (h: number) => ({
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + DAY + h * HOUR, monday + DAY + (h + 1) * HOUR),
    });
    await rejected(c.bookings.createHold(at(14)), Code.FailedPrecondition, "SCHEDULE_BLOCKED");
    await rejected(c.bookings.createHold(at(12)), Code.FailedPrecondition, "OUTSIDE_WORKING_HOURS");
    await rejected(c.bookings.createHold(tuesday(9.5)), Code.FailedPrecondition, "OFF_GRID");
    await rejected(c.bookings.createHold(at(9, 30)), Code.FailedPrecondition, "INVALID_DURATION");
    await rejected(
      c.bookings.createBooking(tuesday(20)),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    expect((await c.bookings.createBooking(tuesday(9))).booking?.status).toBe(
      BookingStatus.CONFIRMED,
    );
  });

  it("say when the resource works that day, with free times nearby, and name the block in the way", async () => {
    const c = await clinic({ timeZone: "America/New_York", policy: { durations: [minutes(60)] } });
    const localHour = (ms: number) =>
      new Intl.DateTimeFormat("en-GB", {
        timeZone: "America/New_York",
        hour: "2-digit",
        minute: "2-digit",
      }).format(new Date(ms));
    // Midnight in New York on a Monday ahead (05:00 UTC, or 04:00 in summer time).
    const mondayUtc = nextMonday();
    const date = iso(mondayUtc).slice(0, 10);
    const midnight = mondayUtc + (12 - Number(localHour(mondayUtc + 12 * HOUR).slice(0, 2))) * HOUR;
    const at = (dayOffset: number, h: number) => ({
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(midnight + dayOffset * DAY + h * HOUR, midnight + dayOffset * DAY + (h + 1) * HOUR),
    });

    // The lunch gap: the day's hours, and the nearest free hours of the same resource.
    const lunch = await rejected(
      c.bookings.createHold(at(0, 12)),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    expect(lunch.rawMessage).toBe(
      `resource "${c.resourceId}" works 09:00-12:00, 13:00-17:00 on Monday ${date} (America/New_York); 12:00-13:00 is outside those hours`,
    );
    expect(lunch.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
      local_date: date,
      time_zone: "America/New_York",
      working_hours: "09:00-12:00, 13:00-17:00",
    });
    const offered = lunch.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    expect(offered.map((s) => localHour(ms(s.startTime)))).toEqual(["11:00", "13:00", "10:00"]);
    expect(offered.every((s) => s.slotId !== "" && s.resourceId === c.resourceId)).toBe(true);
    const { booking } = await c.bookings.createHold({ slotId: offered[0]?.slotId as string });
    expect(localHour(ms(booking?.startTime))).toBe("11:00");

    // A day it does not work; with an Idempotency-Key the stored refusal carries them too.
    const saturday = await rejected(
      c.bookings.createHold(at(5, 10), { headers: { "Idempotency-Key": `sat-${c.serviceId}` } }),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    const saturdayDate = iso(mondayUtc + 5 * DAY).slice(0, 10);
    expect(saturday.rawMessage).toBe(
      `resource "${c.resourceId}" does not work on Saturday ${saturdayDate} (America/New_York)`,
    );
    expect(saturday.findDetails(ErrorInfoSchema)[0]?.metadata.working_hours).toBe("");

    // A block: its title and its span, in the resource's time.
    const block = await c.resources.createOverride({
      resourceId: c.resourceId,
      kind: OverrideKind.BLOCK,
      title: "Staff training",
      startDate: iso(mondayUtc + DAY).slice(0, 10),
      startTime: "14:00",
      endTime: "16:00",
    });
    const blocked = await rejected(
      c.bookings.createHold(at(1, 15)),
      Code.FailedPrecondition,
      "SCHEDULE_BLOCKED",
    );
    const tuesday = iso(mondayUtc + DAY).slice(0, 10);
    expect(blocked.rawMessage).toBe(
      `resource "${c.resourceId}" is blocked for "Staff training" from ${tuesday} 14:00 to ${tuesday} 16:00 (America/New_York)`,
    );
    expect(blocked.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({
      override_id: block.override?.id,
      block_title: "Staff training",
    });
  });

  it("name a block that runs to 9999 (stored before dates were bounded) at once, with its real span", async () => {
    // Before, each such block was walked day by day, 2.9 million days: one
    // hold took 20-30 s of the whole event loop, and the any-resource path
    // paid it once per resource. The test timeout is the structural bound.
    const c = await clinic({ resources: 3, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const date = iso(monday).slice(0, 10);
    const [r0, r1, r2] = c.resourceIds as [string, string, string];

    // The API takes dates up to 2199-12-31, the last year it takes times in.
    const far = await rejected(
      c.resources.createOverride({
        resourceId: r0,
        kind: OverrideKind.BLOCK,
        allDay: true,
        startDate: date,
        endDate: "9999-12-31",
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(far)).toEqual(["end_date"]);
    expect(far.rawMessage).toContain("end_date: must be a date from 2000-01-01 to 2199-12-31");
    await c.resources.createOverride({
      resourceId: r0,
      kind: OverrideKind.BLOCK,
      title: "Closed",
      allDay: true,
      startDate: date,
      endDate: "2199-12-31",
    });
    // Blocks to 9999 as an older server stored them, on the other two resources.
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    try {
      await db.query(
        `INSERT INTO overrides (tenant_id, resource_id, kind, title, all_day, start_date, end_date)
         SELECT $1, id, 'block', 'Sabbatical', true, $2::date, '9999-12-31'
         FROM unnest($3::text[]) AS id`,
        [c.tenantId, date, [r1, r2]],
      );
      await db.query(
        "UPDATE resources SET revision = revision + 1 WHERE tenant_id = $1 AND id = ANY($2)",
        [c.tenantId, [r1, r2]],
      );
    } finally {
      await db.end();
    }
    // Listing sees the new revisions and reads the catalog afresh; a listing
    // clips blocks to its range, so it was never slow.
    const { slots } = await c.slots.listSlots({
      serviceId: c.serviceId,
      ...range(monday, monday + DAY),
    });
    expect(slots).toEqual([]);

    const tenAm = range(monday + 10 * HOUR, monday + 11 * HOUR);
    // Any resource: every resource is checked and refused; the first refusal is answered.
    const anyResource = await rejected(
      c.bookings.createHold({ serviceId: c.serviceId, ...tenAm }),
      Code.FailedPrecondition,
      "SCHEDULE_BLOCKED",
    );
    expect(anyResource.rawMessage).toBe(
      `resource "${r0}" is blocked for "Closed" from ${date} 00:00 to 2200-01-01 00:00 (UTC)`,
    );
    expect(anyResource.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({
      block_start: `${date}T00:00:00+00:00`,
      block_end: "2200-01-01T00:00:00+00:00",
    });
    for (const resourceId of [r1, r2]) {
      const blocked = await rejected(
        c.bookings.createHold({ serviceId: c.serviceId, resourceId, ...tenAm }),
        Code.FailedPrecondition,
        "SCHEDULE_BLOCKED",
      );
      // RFC 3339 cannot write 10000-01-01: the message names the last day's 24:00, block_end is empty.
      expect(blocked.rawMessage).toBe(
        `resource "${resourceId}" is blocked for "Sabbatical" from ${date} 00:00 to 9999-12-31 24:00 (UTC)`,
      );
      expect(blocked.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({
        block_title: "Sabbatical",
        block_start: `${date}T00:00:00+00:00`,
        block_end: "",
      });
    }
  });

  it("refuse forged, altered, foreign and stale slot ids", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)] } });
    const other = await clinic({ policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const [slot] = (
      await c.slots.listSlots({ serviceId: c.serviceId, ...range(monday, monday + DAY) })
    ).slots;
    const id = slot?.slotId as string;
    // One character changed (the third from the end, to another letter).
    const tampered = `${id.slice(0, -3)}${id.at(-3) === "A" ? "B" : "A"}${id.slice(-2)}`;
    expect(tampered).not.toBe(id);
    for (const bad of ["slot_nope", tampered, `${id}x`, "x".repeat(50)]) {
      await rejected(
        c.bookings.createHold({ slotId: bad }),
        Code.InvalidArgument,
        "INVALID_SLOT_ID",
      );
    }
    await rejected(
      other.bookings.createHold({ slotId: id }),
      Code.InvalidArgument,
      "INVALID_SLOT_ID",
    );
    await c.catalog.updateService({
      service: { id: c.serviceId, policy: { durations: [minutes(60)], holdTtl: seconds(300) } },
    });
    const stale = await rejected(
      c.bookings.createHold({ slotId: id }),
      Code.InvalidArgument,
      "INVALID_SLOT_ID",
    );
    expect(stale.rawMessage).toContain("stale");
    const both = await rejected(
      c.bookings.createHold({ slotId: id, serviceId: c.serviceId }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(both)).toEqual(["service_id"]);
  });

  it("answer SLOT_UNAVAILABLE with up to three nearest free slots, the same resource first", async () => {
    const c = await clinic({ resources: 2, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const ten = {
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + 10 * HOUR, monday + 11 * HOUR),
    };
    await c.bookings.createBooking(ten);
    const err = await rejected(c.bookings.createHold(ten), Code.Aborted, "SLOT_UNAVAILABLE");
    const [detail] = err.findDetails(SlotConflictSchema);
    // What is in the way names its resource and is given on that resource's clock too.
    const [taken] = detail?.conflicts ?? [];
    expect(taken?.resourceId).toBe(c.resourceId);
    expect(taken?.timeZone).toBe("UTC");
    expect([taken?.localStartTime, taken?.localEndTime]).toEqual([
      `${iso(monday + 10 * HOUR).slice(0, 19)}+00:00`,
      `${iso(monday + 11 * HOUR).slice(0, 19)}+00:00`,
    ]);
    const alternatives = detail?.alternatives.map((a) => [
      a.resourceId === c.resourceId ? "same" : "other",
      iso(ms(a.startTime)).slice(11, 16),
    ]);
    expect(alternatives).toEqual([
      ["same", "09:00"],
      ["same", "11:00"],
      ["same", "13:00"],
    ]);
    // An offered slot can be held at once.
    const offered = detail?.alternatives[1]?.slotId as string;
    expect((await c.bookings.createHold({ slotId: offered })).booking?.status).toBe(
      BookingStatus.HELD,
    );
    // The next caller to lose 10:00, straight after, is not offered 11:00.
    const again = await rejected(c.bookings.createHold(ten), Code.Aborted, "SLOT_UNAVAILABLE");
    const next = again.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    expect(next.map((a) => iso(ms(a.startTime)).slice(11, 16))).not.toContain("11:00");
    expect(next).toHaveLength(3);
  });

  it("give every caller that loses the same slot at once the same alternatives", async () => {
    const c = await clinic({ resources: 1, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const ten = {
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + 10 * HOUR, monday + 11 * HOUR),
    };
    await c.bookings.createBooking(ten);
    const losers = await Promise.all(
      Array.from({ length: 12 }, () =>
        rejected(c.bookings.createHold(ten), Code.Aborted, "SLOT_UNAVAILABLE"),
      ),
    );
    const offers = losers.map((e) =>
      (e.findDetails(SlotConflictSchema)[0]?.alternatives ?? []).map((a) => a.slotId),
    );
    expect(offers[0]).toHaveLength(3);
    for (const o of offers) expect(o).toEqual(offers[0]);
  });
});

describe("without a resource, Holdfast picks one fairly", () => {
  it("takes the resource with the fewest bookings that day, then the service's order", async () => {
    const c = await clinic({ resources: 3, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const hour = (h: number) => ({
      serviceId: c.serviceId,
      ...range(monday + h * HOUR, monday + (h + 1) * HOUR),
    });
    const [a, b, d] = c.resourceIds as [string, string, string];
    await c.bookings.createBooking({ ...hour(9), resourceId: a });
    await c.bookings.createBooking({ ...hour(10), resourceId: a });
    await c.bookings.createBooking({ ...hour(11), resourceId: b });
    // a has 2 that day, b 1, d 0: d first, then b, then a.
    expect((await c.bookings.createHold(hour(13))).booking?.resourceId).toBe(d);
    expect((await c.bookings.createHold(hour(13))).booking?.resourceId).toBe(b);
    expect((await c.bookings.createHold(hour(13))).booking?.resourceId).toBe(a);
    const full = await rejected(c.bookings.createHold(hour(13)), Code.Aborted, "SLOT_UNAVAILABLE");
    expect(full.findDetails(SlotConflictSchema)[0]?.alternatives.length).toBe(3);
    // Ties go to the service's order.
    expect((await c.bookings.createHold(hour(15))).booking?.resourceId).toBe(d);
    await rejected(
      c.bookings.createHold(hour(12)),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
  });
});

describe("RescheduleBooking", () => {
  it("moves a booking atomically, keeping its id and status, and frees the old time", async () => {
    const c = await clinic({ resources: 2, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const at = (h: number, resourceId = c.resourceId) => ({
      resourceId,
      ...range(monday + h * HOUR, monday + (h + 1) * HOUR),
    });
    const { booking } = await c.bookings.createBooking({ serviceId: c.serviceId, ...at(9) });
    const moved = await c.bookings.rescheduleBooking({
      bookingId: booking?.id as string,
      ...at(11),
    });
    expect(moved.booking).toMatchObject({
      id: booking?.id,
      status: BookingStatus.CONFIRMED,
      resourceId: c.resourceId,
    });
    expect(iso(ms(moved.booking?.startTime)).slice(11, 16)).toBe("11:00");
    // The old time is free again.
    expect(
      (await c.bookings.createHold({ serviceId: c.serviceId, ...at(9) })).booking?.status,
    ).toBe(BookingStatus.HELD);
    // To another resource, by slot id.
    const [slot] = (
      await c.slots.listSlots({
        serviceId: c.serviceId,
        resourceIds: [c.resourceIds[1] as string],
        ...range(monday + 15 * HOUR, monday + 16 * HOUR),
      })
    ).slots;
    const across = await c.bookings.rescheduleBooking({
      bookingId: booking?.id as string,
      slotId: slot?.slotId as string,
    });
    expect(across.booking?.resourceId).toBe(c.resourceIds[1]);
    const { rows } = await server.pool.query(
      "SELECT type, payload FROM outbox WHERE booking_id = $1 ORDER BY xid, seq",
      [booking?.id],
    );
    expect(rows.map((r) => r.type)).toEqual([
      "booking.confirmed",
      "booking.rescheduled",
      "booking.rescheduled",
    ]);
    expect(rows[2].payload).toMatchObject({
      previousResourceId: c.resourceId,
      previousStartTime: iso(monday + 11 * HOUR).replace("Z", ".000000Z"),
      booking: { resourceId: c.resourceIds[1] },
    });
  });

  it("applies every rule to the new time, and offers alternatives when it is taken", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const at = (h: number) => ({
      resourceId: c.resourceId,
      ...range(monday + h * HOUR, monday + (h + 1) * HOUR),
    });
    const mine = (await c.bookings.createHold({ serviceId: c.serviceId, ...at(9) })).booking
      ?.id as string;
    await c.bookings.createBooking({ serviceId: c.serviceId, ...at(10) });
    const taken = await rejected(
      c.bookings.rescheduleBooking({ bookingId: mine, ...at(10) }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    expect(taken.findDetails(SlotConflictSchema)[0]?.alternatives.length).toBeGreaterThan(0);
    await rejected(
      c.bookings.rescheduleBooking({ bookingId: mine, ...at(12) }),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    await rejected(
      c.bookings.rescheduleBooking({ bookingId: mine, ...at(9.5) }),
      Code.FailedPrecondition,
      "OFF_GRID",
    );
    // Moving onto its own time (or overlapping itself) is fine: it does not conflict with itself.
    expect(
      (await c.bookings.rescheduleBooking({ bookingId: mine, ...at(9) })).booking?.status,
    ).toBe(BookingStatus.HELD);
    await c.bookings.cancelBooking({ bookingId: mine });
    // A booking that cannot move answers for its state, whatever time is asked for.
    for (const h of [11, 9.5, 12]) {
      await rejected(
        c.bookings.rescheduleBooking({ bookingId: mine, ...at(h) }),
        Code.FailedPrecondition,
        "INVALID_STATE",
      );
    }
    const lapsing = (
      await c.bookings.createHold({ serviceId: c.serviceId, ...at(14), ttl: { seconds: 1n } })
    ).booking?.id as string;
    await new Promise((r) => setTimeout(r, 1_100));
    for (const h of [15, 9.5]) {
      await rejected(
        c.bookings.rescheduleBooking({ bookingId: lapsing, ...at(h) }),
        Code.FailedPrecondition,
        "HOLD_EXPIRED",
      );
    }
    await rejected(
      c.bookings.rescheduleBooking({ bookingId: "bkg_nope", ...at(11) }),
      Code.NotFound,
      "BOOKING_NOT_FOUND",
    );
  });

  it("two moves crossing between two resources at once both finish (locks in a fixed order)", async () => {
    const c = await clinic({ resources: 2, policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const [r1, r2] = c.resourceIds as [string, string];
    const at = (h: number, resourceId: string) => ({
      resourceId,
      ...range(monday + h * HOUR, monday + (h + 1) * HOUR),
    });
    for (let round = 0; round < 5; round++) {
      const day = round * DAY;
      const shift = (x: ReturnType<typeof at>) => ({
        ...x,
        ...range(ms(x.startTime) + day, ms(x.endTime) + day),
      });
      const a = (await c.bookings.createBooking({ serviceId: c.serviceId, ...shift(at(9, r1)) }))
        .booking?.id as string;
      const b = (await c.bookings.createBooking({ serviceId: c.serviceId, ...shift(at(9, r2)) }))
        .booking?.id as string;
      const [x, y] = await Promise.all([
        c.bookings.rescheduleBooking({ bookingId: a, ...shift(at(11, r2)) }),
        c.bookings.rescheduleBooking({ bookingId: b, ...shift(at(13, r1)) }),
      ]);
      expect([x.booking?.resourceId, y.booking?.resourceId]).toEqual([r2, r1]);
    }
  });
});

describe("versioned policies", () => {
  it("a booking keeps the policy version it was held under and is confirmed under it", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)], maxHoldTtl: minutes(10) } });
    const monday = nextMonday();
    const hold = (
      await c.bookings.createHold({
        serviceId: c.serviceId,
        resourceId: c.resourceId,
        ...range(monday + 9 * HOUR, monday + 10 * HOUR),
      })
    ).booking;
    expect(hold?.policyVersion).toBe(1);
    await c.catalog.updateService({
      service: { id: c.serviceId, policy: { durations: [minutes(30)], maxHoldTtl: minutes(2) } },
    });
    // v2 no longer offers an hour, and allows 2-minute holds only; the v1 hold lives by v1.
    const extended = await c.bookings.extendHold({
      bookingId: hold?.id as string,
      ttl: minutes(9),
    });
    expect(ms(extended.booking?.expireTime) - Date.now()).toBeGreaterThan(8 * MINUTE);
    const confirmed = await c.bookings.confirmBooking({ bookingId: hold?.id as string });
    expect(confirmed.booking).toMatchObject({ status: BookingStatus.CONFIRMED, policyVersion: 1 });
    await rejected(
      c.bookings.createHold({
        serviceId: c.serviceId,
        resourceId: c.resourceId,
        ...range(monday + 11 * HOUR, monday + 12 * HOUR),
      }),
      Code.FailedPrecondition,
      "INVALID_DURATION",
    );
    const v2 = await c.bookings.createHold({
      serviceId: c.serviceId,
      resourceId: c.resourceId,
      ...range(monday + 11 * HOUR, monday + 11.5 * HOUR),
    });
    expect(v2.booking?.policyVersion).toBe(2);
  });
});

describe("over Connect JSON", () => {
  it("lists slots and holds one by its id with plain HTTP posts", async () => {
    const c = await clinic({ policy: { durations: [minutes(60)] } });
    const monday = nextMonday();
    const listed = await postJson(
      server.url,
      "holdfast.v1.AvailabilityService/ListSlots",
      {
        serviceId: c.serviceId,
        startTime: iso(monday),
        endTime: iso(monday + DAY),
        duration: "3600s",
      },
      c.key,
    );
    const slots = listed.body.slots as { slotId: string; startTime: string; remaining: number }[];
    expect(slots[0]).toMatchObject({ startTime: iso(monday + 9 * HOUR), remaining: 1 });
    expect(listed.body.timeZones).toEqual({ [c.resourceId]: "UTC" });
    const held = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      { slotId: slots[0]?.slotId },
      c.key,
    );
    expect(held.status).toBe(200);
    expect((held.body.booking as { startTime: string }).startTime).toBe(iso(monday + 9 * HOUR));
  });
});

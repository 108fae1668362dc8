import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, type ConnectError } from "@connectrpc/connect";
import ICAL from "ical.js";
import pg from "pg";
import { Temporal } from "temporal-polyfill";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { MAX_CALENDAR_FEEDS_PER_TENANT, MAX_FEED_EVENTS } from "../../src/domain/calendar-feed.js";
import { TENANT_SCOPES } from "../../src/domain/scopes.js";
import { DAY, MINUTE, minutes } from "../support/booking.js";
import { clientFor, newTenant, postJson, rejected } from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * Calendar feeds, read as a calendar app would (a plain GET, no key) and
 * parsed with ical.js, a parser independent of the library that writes them.
 * Times are checked as instants computed by ical.js from the feed's own
 * VTIMEZONEs, on both sides of a daylight-saving change.
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

const NEW_YORK = "America/New_York";
const BERLIN = "Europe/Berlin";

/** 09:00 wall-clock time in `zone` on the day `days` from the instant `ms`. */
function nineAm(zone: string, ms: number, days: number): number {
  const day = Temporal.Instant.fromEpochMilliseconds(ms + days * DAY)
    .toZonedDateTimeISO(zone)
    .toPlainDate();
  return day.toZonedDateTime({ timeZone: zone, plainTime: "09:00" }).epochMilliseconds;
}

/**
 * New York's next clock change at least a week away: bookings three days
 * either side of it are in the future and within any feed's window,
 * whatever today's date.
 */
function nextClockChange(zone: string): number {
  const transition = Temporal.Instant.fromEpochMilliseconds(Date.now() + 7 * DAY)
    .toZonedDateTimeISO(zone)
    .getTimeZoneTransition("next");
  if (!transition) throw new Error(`${zone} has no clock change ahead`);
  return transition.epochMilliseconds;
}

type ParsedEvent = {
  uid: string;
  status: string;
  summary: string;
  startMs: number;
  endMs: number;
  zone: string;
  hour: number;
  attendees: string[];
  /** Each attendee's name (its CN parameter), as the parser decodes it. */
  attendeeNames: string[];
  description: string;
};

// NAME (RFC 7986) and X-WR-CALNAME are TEXT, which ical.js knows of
// neither: told so, it decodes their escapes as a calendar app does.
for (const name of ["name", "x-wr-calname"]) {
  ICAL.design.icalendar.property[name] = { defaultType: "text" };
}

/**
 * Writes text the API now refuses (a line break in an attendee's name,
 * controls in a resource's name) as it took it before: such rows may still
 * be in a database, and the feed must stay whole with them.
 */
async function storeAsBefore(sql: string, params: unknown[]): Promise<void> {
  const db = new pg.Client({ connectionString: server.databaseUrl });
  await db.connect();
  try {
    const { rowCount } = await db.query(sql, params);
    expect(rowCount).toBe(1);
  } finally {
    await db.end();
  }
}

/** The feed at `urlPath`, fetched without a key and parsed with ical.js. */
async function readFeed(urlPath: string) {
  const res = await fetch(`${server.url}${urlPath}`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toBe("text/calendar; charset=utf-8");
  // Unfolded (RFC 5545 3.1), so that a search for a word finds it.
  const text = (await res.text()).replace(/\r\n[ \t]/g, "");
  const calendar = new ICAL.Component(ICAL.parse(text));
  const events: ParsedEvent[] = calendar.getAllSubcomponents("vevent").map((v) => {
    const e = new ICAL.Event(v);
    return {
      uid: e.uid,
      status: String(v.getFirstPropertyValue("status")),
      summary: e.summary,
      startMs: e.startDate.toJSDate().getTime(),
      endMs: e.endDate.toJSDate().getTime(),
      zone: e.startDate.zone?.tzid ?? "",
      hour: e.startDate.hour,
      attendees: e.attendees.map((a) => String(a.getFirstValue()).toLowerCase()),
      attendeeNames: e.attendees.map((a) => String(a.getParameter("cn"))),
      description: e.description,
    };
  });
  return {
    text,
    name: String(calendar.getFirstPropertyValue("x-wr-calname")),
    title: String(calendar.getFirstPropertyValue("name")),
    zone: String(calendar.getFirstPropertyValue("x-wr-timezone")),
    zones: calendar
      .getAllSubcomponents("vtimezone")
      .map((z) => String(z.getFirstPropertyValue("tzid"))),
    events,
    byUid: (uid: string) => events.find((e) => e.uid === uid),
  };
}

describe("calendar feeds", () => {
  let key: string;
  let feeds: ReturnType<typeof clientFor<typeof CalendarFeedService>>;
  let ny: string;
  let berlin: string;
  let serviceId: string;
  const ids = {} as Record<
    "beforeChange" | "afterChange" | "held" | "cancelled" | "inBerlin",
    string
  >;
  const at = {} as Record<"beforeChange" | "afterChange" | "inBerlin", number>;

  beforeAll(async () => {
    ({ key } = await newTenant(server.url));
    const resources = clientFor(ResourceService, server.url, key);
    ny = (await resources.createResource({ name: "Dr. Ada", timeZone: NEW_YORK })).resource
      ?.id as string;
    berlin = (await resources.createResource({ name: "Dr. Bo", timeZone: BERLIN })).resource
      ?.id as string;
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Consultation",
      resourceIds: [ny, berlin],
      policy: { durations: [minutes(30)], slotInterval: minutes(30) },
    });
    serviceId = service?.id as string;
    feeds = clientFor(CalendarFeedService, server.url, key, "connect");

    const change = nextClockChange(NEW_YORK);
    at.beforeChange = nineAm(NEW_YORK, change, -3);
    at.afterChange = nineAm(NEW_YORK, change, 3);
    at.inBerlin = nineAm(BERLIN, change, 3);
    const bookings = clientFor(BookingService, server.url, key);
    const range = (startMs: number) => ({
      startTime: timestampFromMs(startMs),
      endTime: timestampFromMs(startMs + 30 * MINUTE),
    });
    const book = async (resourceId: string, startMs: number, name: string) =>
      (
        await bookings.createBooking({
          serviceId,
          resourceId,
          ...range(startMs),
          attendee: { name, email: `${name.toLowerCase()}@example.com`, phone: "+1 555 0100" },
        })
      ).booking?.id as string;
    ids.beforeChange = await book(ny, at.beforeChange, "Grace");
    ids.afterChange = await book(ny, at.afterChange, "Alan");
    ids.inBerlin = await book(berlin, at.inBerlin, "Emmy");
    ids.held = (
      await bookings.createHold({
        serviceId,
        resourceId: ny,
        ...range(at.afterChange + DAY),
        ttl: { seconds: 600n, nanos: 0 },
        attendee: { name: "Barbara" },
      })
    ).booking?.id as string;
    ids.cancelled = await book(ny, at.afterChange + 2 * DAY, "Edsger");
    await bookings.cancelBooking({ bookingId: ids.cancelled, reason: "patient ill" });
  });

  it("shows a resource's bookings in its zone, at the right instants across a clock change", async () => {
    const { urlPath, feed } = await feeds.createCalendarFeed({
      resourceId: ny,
      includeHolds: true,
      description: "front desk",
    });
    expect(urlPath).toMatch(/^\/v1\/feeds\/hfcal_[A-Za-z0-9_-]{43}\.ics$/);
    expect(feed).toMatchObject({ resourceId: ny, serviceId: "", freeBusy: false });
    expect(urlPath).toContain(feed?.prefix);

    const cal = await readFeed(urlPath);
    expect(cal.name).toBe("Dr. Ada");
    expect(cal.zone).toBe(NEW_YORK);
    expect(cal.zones).toEqual([NEW_YORK]);
    expect(cal.events.map((e) => e.uid).sort()).toEqual(
      [ids.beforeChange, ids.afterChange, ids.held, ids.cancelled].sort(),
    );

    const before = cal.byUid(ids.beforeChange);
    const after = cal.byUid(ids.afterChange);
    // 09:00 in New York on both sides, which are different UTC offsets.
    for (const [event, startMs] of [
      [before, at.beforeChange],
      [after, at.afterChange],
    ] as const) {
      expect(event).toMatchObject({
        zone: NEW_YORK,
        hour: 9,
        startMs,
        endMs: startMs + 30 * MINUTE,
        status: "CONFIRMED",
      });
    }
    expect(
      new Date(at.beforeChange).getUTCHours() - new Date(at.afterChange).getUTCHours(),
    ).not.toBe(0);
    expect(before?.summary).toBe("Consultation, Grace");
    expect(before?.attendees).toEqual(["mailto:grace@example.com"]);

    expect(cal.byUid(ids.held)).toMatchObject({ status: "TENTATIVE", hour: 9 });
    expect(cal.byUid(ids.held)?.summary).toBe("Held: Consultation, Barbara");
    const cancelled = cal.byUid(ids.cancelled);
    expect(cancelled?.status).toBe("CANCELLED");
    expect(cancelled?.description).toContain("Cancelled: patient ill");
  });

  it("writes an attendee's name as a parameter value, quotes, carets and line breaks included", async () => {
    // Each of these broke the ATTENDEE line or came back altered when the
    // name was escaped as TEXT (\" is no escape in a parameter value).
    const name = 'Ann "Nan" O\\Brien; CEO, ^_^: on call\nnights';
    const startMs = nineAm(BERLIN, nextClockChange(NEW_YORK), 5);
    const { booking } = await clientFor(BookingService, server.url, key).createBooking({
      serviceId,
      resourceId: berlin,
      startTime: timestampFromMs(startMs),
      endTime: timestampFromMs(startMs + 30 * MINUTE),
      attendee: { name: "Ann", email: "ann@example.com" },
    });
    await storeAsBefore(
      "UPDATE bookings SET attendee = jsonb_set(attendee, '{name}', to_jsonb($2::text)) WHERE id = $1",
      [booking?.id, name],
    );
    const { urlPath } = await feeds.createCalendarFeed({ resourceId: berlin });
    const cal = await readFeed(urlPath);
    const event = cal.byUid(booking?.id as string);
    expect(event?.attendees).toEqual(["mailto:ann@example.com"]);
    expect(event?.attendeeNames).toEqual([name]);
    // RFC 6868: ^' for ", ^n for a line break, ^^ for ^, inside one quoted value.
    expect(cal.text).toContain(
      `ATTENDEE;CN="Ann ^'Nan^' O\\Brien; CEO, ^^_^^: on call^nnights";ROLE=REQ-PARTICIPANT`,
    );
  });

  it("escapes resource and service names: a line break in one adds no lines to the feed", async () => {
    const evil =
      "Evil\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:x\r\nSUMMARY:INJECTED; a, b \\ c\u0007\u001b";
    // What a parser reads back: each line break as one \n, controls gone.
    const shown = "Evil\nEND:VEVENT\nBEGIN:VEVENT\nUID:x\nSUMMARY:INJECTED; a, b \\ c";
    const resources = clientFor(ResourceService, server.url, key);
    const { resource } = await resources.createResource({ name: "Quiet", timeZone: BERLIN });
    const id = resource?.id as string;
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Calm",
      resourceIds: [id],
      policy: { durations: [minutes(30)], slotInterval: minutes(30) },
    });
    const startMs = nineAm(BERLIN, nextClockChange(NEW_YORK), 6);
    const { booking } = await clientFor(BookingService, server.url, key).createBooking({
      serviceId: service?.id as string,
      resourceId: id,
      startTime: timestampFromMs(startMs),
      endTime: timestampFromMs(startMs + 30 * MINUTE),
      attendee: { name: "Kay" },
    });
    const byResource = await feeds.createCalendarFeed({ resourceId: id });
    // Renamed after the feed exists, as anyone who could rename a resource
    // could before names were checked.
    await storeAsBefore("UPDATE resources SET name = $2 WHERE id = $1", [id, evil]);
    await storeAsBefore("UPDATE services SET name = $2 WHERE id = $1", [service?.id, evil]);
    const byService = await feeds.createCalendarFeed({ serviceId: service?.id as string });
    for (const { urlPath } of [byResource, byService]) {
      const cal = await readFeed(urlPath);
      expect(cal.events.map((e) => e.uid)).toEqual([booking?.id]);
      expect(cal.name).toBe(shown);
      expect(cal.title).toBe(shown);
      expect(cal.text).toContain(
        "\r\nNAME:Evil\\nEND:VEVENT\\nBEGIN:VEVENT\\nUID:x\\nSUMMARY:INJECTED\\; a\\, b \\\\ c\r\n",
      );
      expect(cal.text).not.toMatch(/^(SUMMARY:INJECTED|UID:x)/m);
      expect(cal.text).not.toContain("\u0007");
      expect(cal.text).not.toContain("\u001b");
    }
    const free = await feeds.createCalendarFeed({ resourceId: id, freeBusy: true });
    const cal = await readFeed(free.urlPath);
    expect(cal.events.map((e) => e.uid)).toEqual([booking?.id]);
    expect(cal.name).toBe(shown);
  });

  it("leaves holds out unless asked", async () => {
    const { urlPath } = await feeds.createCalendarFeed({ resourceId: ny });
    const cal = await readFeed(urlPath);
    expect(cal.byUid(ids.held)).toBeUndefined();
    expect(cal.byUid(ids.afterChange)?.status).toBe("CONFIRMED");
    expect(cal.byUid(ids.cancelled)?.status).toBe("CANCELLED");
  });

  it("shows only busy times in a free/busy feed, with no attendee or service data", async () => {
    const { urlPath } = await feeds.createCalendarFeed({
      resourceId: ny,
      freeBusy: true,
      includeHolds: true,
    });
    const cal = await readFeed(urlPath);
    expect(cal.events.map((e) => e.uid).sort()).toEqual(
      [ids.beforeChange, ids.afterChange, ids.held].sort(),
    );
    for (const e of cal.events) {
      expect(e.summary).toBe("Busy");
      expect(e.attendees).toEqual([]);
    }
    expect(cal.byUid(ids.afterChange)).toMatchObject({ startMs: at.afterChange, zone: NEW_YORK });
    for (const secret of [
      "Grace",
      "grace@example.com",
      "555 0100",
      "Consultation",
      "patient ill",
    ]) {
      expect(cal.text).not.toContain(secret);
    }
  });

  it("shows a service's bookings, each in its own resource's zone", async () => {
    const { urlPath } = await feeds.createCalendarFeed({ serviceId });
    const cal = await readFeed(urlPath);
    expect(cal.name).toBe("Consultation");
    expect(cal.zones.sort()).toEqual([NEW_YORK, BERLIN].sort());
    expect(cal.byUid(ids.inBerlin)).toMatchObject({
      zone: BERLIN,
      hour: 9,
      startMs: at.inBerlin,
    });
    expect(cal.byUid(ids.afterChange)).toMatchObject({ zone: NEW_YORK, startMs: at.afterChange });
  });

  it(`shows the first ${MAX_FEED_EVENTS} bookings of a busier resource, each whole, in valid folded lines`, async () => {
    // Long names with characters of two, three and four UTF-8 octets: every
    // event runs over several folded lines.
    const name = "Zoë Ångström-Łukasiewicz 王小明 🙂 ".repeat(8).slice(0, 200);
    const resources = clientFor(ResourceService, server.url, key);
    const id = (await resources.createResource({ name: "Dr. Cy", timeZone: BERLIN })).resource
      ?.id as string;
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Check-up",
      resourceIds: [id],
      policy: { durations: [minutes(30)], slotInterval: minutes(30) },
    });
    const firstMs = nineAm(BERLIN, Date.now(), 2);
    const { booking } = await clientFor(BookingService, server.url, key).createBooking({
      serviceId: service?.id as string,
      resourceId: id,
      startTime: timestampFromMs(firstMs),
      endTime: timestampFromMs(firstMs + 30 * MINUTE),
      attendee: { name, email: "zoe@example.com" },
    });
    // The rest as copies of that one, an hour apart: one more than a feed shows.
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    try {
      await db.query(
        `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start,
                               block_end, status, expire_time, attendee, metadata, policy_version,
                               cancel_reason, exclusive, create_time, update_time)
         SELECT tenant_id, service_id, resource_id, start_time + g * interval '1 hour',
                end_time + g * interval '1 hour', block_start + g * interval '1 hour',
                block_end + g * interval '1 hour', status, expire_time, attendee, metadata,
                policy_version, cancel_reason, exclusive, create_time, update_time
         FROM bookings, generate_series(1, $2::int) g
         WHERE id = $1`,
        [booking?.id, MAX_FEED_EVENTS],
      );
    } finally {
      await db.end();
    }
    const { urlPath } = await feeds.createCalendarFeed({ resourceId: id });
    const raw = await (await fetch(`${server.url}${urlPath}`)).text();
    // Every content line ends with CRLF and holds at most 75 octets.
    expect(raw.endsWith("END:VCALENDAR\r\n")).toBe(true);
    const lines = raw.slice(0, -2).split("\r\n");
    expect(lines.filter((l) => Buffer.byteLength(l) > 75)).toEqual([]);
    expect(lines.filter((l) => l.includes("\n") || l.includes("\r"))).toEqual([]);
    const cal = await readFeed(urlPath);
    expect(cal.events).toHaveLength(MAX_FEED_EVENTS);
    expect(cal.text).toContain(`X-WR-CALDESC:The first ${MAX_FEED_EVENTS} bookings`);
    expect(cal.zones).toEqual([BERLIN]);
    // The earliest, in order, none of them cut or mangled.
    expect(cal.events[0]?.uid).toBe(booking?.id);
    expect(new Set(cal.events.map((e) => e.uid)).size).toBe(MAX_FEED_EVENTS);
    cal.events.forEach((e, i) => {
      expect(e.startMs).toBe(firstMs + i * 60 * MINUTE);
      expect(e.endMs).toBe(e.startMs + 30 * MINUTE);
      expect(e.zone).toBe(BERLIN);
      expect(e.summary).toBe(`Check-up, ${name.trim()}`);
      expect(e.attendeeNames).toEqual([name]);
      expect(e.attendees).toEqual(["mailto:zoe@example.com"]);
      expect(e.description).toContain(`Attendee: ${name}, zoe@example.com`);
    });
  });

  it("stops answering once revoked, and never lists a feed's URL", async () => {
    const { urlPath, feed } = await feeds.createCalendarFeed({ resourceId: ny });
    expect((await fetch(`${server.url}${urlPath}`)).status).toBe(200);
    const listed = await feeds.listCalendarFeeds({});
    expect(listed.feeds.map((f) => f.id)).toContain(feed?.id);
    expect(JSON.stringify(listed.feeds.map((f) => f.prefix))).not.toContain(urlPath.slice(10, 40));

    const { feed: revoked } = await feeds.revokeCalendarFeed({ calendarFeedId: feed?.id });
    expect(revoked?.revokeTime).toBeDefined();
    const gone = await fetch(`${server.url}${urlPath}`);
    expect(gone.status).toBe(404);
    expect((await feeds.listCalendarFeeds({})).feeds.map((f) => f.id)).not.toContain(feed?.id);
    expect(
      (await feeds.listCalendarFeeds({ includeRevoked: true })).feeds.map((f) => f.id),
    ).toContain(feed?.id);
    await rejected(
      feeds.revokeCalendarFeed({ calendarFeedId: "cal_nope" }),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
  });

  it("answers 404 to a secret it never issued and a 405 JSON error to anything but GET", async () => {
    const forged = `/v1/feeds/hfcal_${"A".repeat(43)}.ics`;
    expect((await fetch(`${server.url}${forged}`)).status).toBe(404);
    expect((await fetch(`${server.url}/v1/feeds/whatever`)).status).toBe(404);
    // A wrong method gets a JSON error like any refusal: a code, a stable reason, what to do.
    const post = await fetch(`${server.url}${forged}`, { method: "POST" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect(post.headers.get("content-type")).toBe("application/json");
    expect(await post.json()).toMatchObject({
      code: "invalid_argument",
      message: "POST cannot read a calendar feed: use GET",
      details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "MALFORMED_REQUEST" } }],
    });
    expect((await fetch(`${server.url}/v1/feeds/whatever`, { method: "DELETE" })).status).toBe(405);
  });

  it("refuses a feed of nothing, of both, or of what is not there", async () => {
    await rejected(feeds.createCalendarFeed({}), Code.InvalidArgument, "VALIDATION_ERROR");
    await rejected(
      feeds.createCalendarFeed({ resourceId: ny, serviceId }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    await rejected(
      feeds.createCalendarFeed({ resourceId: "rsc_nope" }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    await rejected(
      feeds.createCalendarFeed({ serviceId: "svc_nope" }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
  });

  it("needs bookings.read, and shows nothing of another tenant", async () => {
    const keys = clientFor(KeyService, server.url, key);
    const { apiKey } = await keys.createApiKey({ scopes: ["catalog.read"] });
    await rejected(
      clientFor(CalendarFeedService, server.url, apiKey).createCalendarFeed({ resourceId: ny }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    const other = await newTenant(server.url);
    await rejected(
      clientFor(CalendarFeedService, server.url, other.key).createCalendarFeed({ resourceId: ny }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
  });
});

describe("calendar feeds and the keys that made them", () => {
  let key: string;
  let resourceId: string;
  let keys: ReturnType<typeof clientFor<typeof KeyService>>;
  let db: pg.Client;
  const status = async (urlPath: string) => (await fetch(`${server.url}${urlPath}`)).status;
  const feedsOf = (apiKey: string) => clientFor(CalendarFeedService, server.url, apiKey);
  /** A new key of the tenant with these scopes: its secret and id. */
  const newKey = async (scopes: string[]) => {
    const { apiKey, key: made } = await keys.createApiKey({ scopes });
    return { secret: apiKey, id: made?.id as string };
  };

  beforeAll(async () => {
    ({ key } = await newTenant(server.url));
    keys = clientFor(KeyService, server.url, key);
    const { resource } = await clientFor(ResourceService, server.url, key).createResource({
      name: "Room 1",
      timeZone: BERLIN,
    });
    resourceId = resource?.id as string;
    db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
  });
  afterAll(() => db.end());

  it("stops answering once the key that made it is revoked", async () => {
    const reader = await newKey(["bookings.read"]);
    const { urlPath, feed } = await feedsOf(reader.secret).createCalendarFeed({ resourceId });
    expect(feed?.creatorKeyId).toBe(reader.id);
    expect(await status(urlPath)).toBe(200);
    const other = await feedsOf(key).createCalendarFeed({ resourceId });

    await keys.revokeApiKey({ apiKeyId: reader.id });
    expect(await status(urlPath)).toBe(404);
    // The feed itself is not revoked, and other keys' feeds answer on.
    const listed = await feedsOf(key).listCalendarFeeds({});
    expect(listed.feeds.find((f) => f.id === feed?.id)?.revokeTime).toBeUndefined();
    expect(await status(other.urlPath)).toBe(200);
  });

  it("keeps the operator key's feeds answering: that key cannot be revoked", async () => {
    const admin = clientFor(ResourceService, server.url, ADMIN_KEY);
    const { resource } = await admin.createResource({ name: "Ops", timeZone: BERLIN });
    const { urlPath, feed } = await feedsOf(ADMIN_KEY).createCalendarFeed({
      resourceId: resource?.id as string,
    });
    expect(feed?.creatorKeyId).toBe("env:HOLDFAST_ADMIN_KEY");
    expect(await status(urlPath)).toBe(200);
    // A key of its tenant without keys.manage neither sees nor revokes it.
    const operatorTenant = clientFor(KeyService, server.url, ADMIN_KEY);
    const scopes = TENANT_SCOPES.filter((s) => s !== "keys.manage");
    const { apiKey } = await operatorTenant.createApiKey({ scopes });
    await rejected(
      feedsOf(apiKey).revokeCalendarFeed({ calendarFeedId: feed?.id }),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    expect(await status(urlPath)).toBe(200);
    await feedsOf(ADMIN_KEY).revokeCalendarFeed({ calendarFeedId: feed?.id });
    expect(await status(urlPath)).toBe(404);
  });

  it("lets a key without keys.manage revoke only the feeds it made: any other is NOT_FOUND, as an unknown id is", async () => {
    const a = await newKey(["bookings.read"]);
    const b = await newKey(["bookings.read"]);
    const manager = await newKey(["bookings.read", "keys.manage"]);
    const made = await feedsOf(a.secret).createCalendarFeed({ resourceId });
    const id = made.feed?.id as string;
    // The whole answer, the id it names aside: B learns nothing of A's feed.
    const answer = async (calendarFeedId: string) => {
      const reply = await postJson(
        server.url,
        "holdfast.v1.CalendarFeedService/RevokeCalendarFeed",
        { calendarFeedId },
        b.secret,
      );
      const details = (reply.body.details ?? []) as { type: string; debug?: unknown }[];
      const body = { ...reply.body, details: details.map((d) => [d.type, d.debug]) };
      return [reply.status, JSON.stringify(body).replaceAll(calendarFeedId, "<id>")];
    };
    const unknownId = `cal_${"0".repeat(id.length - 4)}`;
    expect(await answer(id)).toEqual(await answer(unknownId));
    await rejected(
      feedsOf(b.secret).revokeCalendarFeed({ calendarFeedId: id }),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    // Nor a feed of a key holding more scopes, or of the operator key.
    const full = await feedsOf(key).createCalendarFeed({ resourceId });
    await rejected(
      feedsOf(b.secret).revokeCalendarFeed({ calendarFeedId: full.feed?.id }),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    // Both feeds still answer and are not revoked.
    expect(await status(made.urlPath)).toBe(200);
    expect(await status(full.urlPath)).toBe(200);
    expect((await feedsOf(a.secret).listCalendarFeeds({})).feeds.map((f) => f.id)).toEqual([id]);

    // A revokes its own; B's refusal is the same for a revoked feed.
    const { feed } = await feedsOf(a.secret).revokeCalendarFeed({ calendarFeedId: id });
    expect(feed?.revokeTime).toBeDefined();
    expect(await status(made.urlPath)).toBe(404);
    expect(await answer(id)).toEqual(await answer(unknownId));

    // A keys.manage key revokes any feed of its tenant, as it lists every one.
    const bs = await feedsOf(b.secret).createCalendarFeed({ resourceId });
    for (const other of [bs, full]) {
      const { feed: revoked } = await feedsOf(manager.secret).revokeCalendarFeed({
        calendarFeedId: other.feed?.id,
      });
      expect(revoked?.revokeTime).toBeDefined();
      expect(await status(other.urlPath)).toBe(404);
    }
  });

  it("keeps feeds made before creators were recorded: they answer, and only a keys.manage key revokes them", async () => {
    const reader = await newKey(["bookings.read"]);
    const manager = await newKey(["bookings.read", "keys.manage"]);
    const { urlPath, feed } = await feedsOf(key).createCalendarFeed({ resourceId });
    // As the migration leaves a feed made before it.
    await db.query("UPDATE calendar_feeds SET creator_key_id = NULL WHERE id = $1", [feed?.id]);
    const listed = await feedsOf(key).listCalendarFeeds({});
    expect(listed.feeds.find((f) => f.id === feed?.id)?.creatorKeyId).toBe("");
    expect(await status(urlPath)).toBe(200);
    await rejected(
      feedsOf(reader.secret).revokeCalendarFeed({ calendarFeedId: feed?.id }),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    expect(await status(urlPath)).toBe(200);
    await feedsOf(manager.secret).revokeCalendarFeed({ calendarFeedId: feed?.id });
    expect(await status(urlPath)).toBe(404);
  });

  it("lists to a key the feeds it made; a keys.manage key lists every feed, those with no creator too", async () => {
    const t = await newTenant(server.url);
    const tenantKeys = clientFor(KeyService, server.url, t.key);
    const keyWith = async (scopes: string[]) => (await tenantKeys.createApiKey({ scopes })).apiKey;
    const { resource } = await clientFor(ResourceService, server.url, t.key).createResource({
      name: "Room 2",
      timeZone: BERLIN,
    });
    const made = async (apiKey: string) =>
      (
        await feedsOf(apiKey).createCalendarFeed({
          resourceId: resource?.id as string,
          description: "private",
        })
      ).feed?.id as string;
    const reader = await keyWith(["bookings.read"]);
    const writer = await keyWith(["bookings.read", "bookings.write", "catalog.read"]);
    const manager = await keyWith(["bookings.read", "keys.manage"]);
    const readers = await made(reader);
    const revokedOwn = await made(reader);
    await feedsOf(reader).revokeCalendarFeed({ calendarFeedId: revokedOwn });
    const writers = await made(writer);
    const full = await made(t.key);
    const managers = await made(manager);
    const noCreator = await made(t.key);
    await db.query("UPDATE calendar_feeds SET creator_key_id = NULL WHERE id = $1", [noCreator]);
    const listed = async (apiKey: string, includeRevoked = false) => {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await feedsOf(apiKey).listCalendarFeeds({
          pageSize: 1,
          pageToken,
          includeRevoked,
        });
        ids.push(...page.feeds.map((f) => f.id));
        pageToken = page.nextPageToken;
      } while (pageToken !== "");
      return ids.sort();
    };
    const sorted = (...ids: string[]) => ids.sort();

    // Reading and writing bookings does not make another key's feeds its business.
    expect(await listed(reader)).toEqual([readers]);
    expect(await listed(reader, true)).toEqual(sorted(readers, revokedOwn));
    expect(await listed(writer)).toEqual([writers]);
    // A key that manages the tenant's keys sees every feed, as it sees every key.
    expect(await listed(manager)).toEqual(sorted(readers, writers, full, managers, noCreator));
    expect(await listed(t.key, true)).toEqual(
      sorted(readers, revokedOwn, writers, full, managers, noCreator),
    );
    // A page token of one key's list does not continue another key's.
    const { nextPageToken } = await feedsOf(manager).listCalendarFeeds({ pageSize: 1 });
    await rejected(
      feedsOf(reader).listCalendarFeeds({ pageSize: 1, pageToken: nextPageToken }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
  });

  it(`allows a tenant ${MAX_CALENDAR_FEEDS_PER_TENANT} feeds not revoked, counted exactly under concurrent creates`, async () => {
    const t = await newTenant(server.url);
    const { resource } = await clientFor(ResourceService, server.url, t.key).createResource({
      name: "Busy room",
      timeZone: BERLIN,
    });
    const create = () => feedsOf(t.key).createCalendarFeed({ resourceId: resource?.id });
    // All but three places taken, and a revoked feed that does not count.
    await db.query(
      `INSERT INTO calendar_feeds (tenant_id, secret_hash, prefix, resource_id, free_busy, include_holds)
       SELECT $1, sha256(convert_to('fill' || $1 || i, 'UTF8')), 'hfcal_fill', $2, false, false
       FROM generate_series(1, $3) i`,
      [t.tenantId, resource?.id, MAX_CALENDAR_FEEDS_PER_TENANT - 3],
    );
    const revoked = await create();
    await feedsOf(t.key).revokeCalendarFeed({ calendarFeedId: revoked.feed?.id });

    const results = await Promise.allSettled(Array.from({ length: 8 }, create));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(3);
    const err = await rejected(create(), Code.ResourceExhausted, "LIMIT_REACHED");
    expect(err.rawMessage).toContain(`(${MAX_CALENDAR_FEEDS_PER_TENANT})`);
    for (const r of results) {
      if (r.status === "rejected")
        expect((r.reason as ConnectError).code).toBe(Code.ResourceExhausted);
    }

    // Revoking one makes room for one; other tenants are not counted.
    const { feeds } = await feedsOf(t.key).listCalendarFeeds({ pageSize: 1 });
    await feedsOf(t.key).revokeCalendarFeed({ calendarFeedId: feeds[0]?.id });
    await create();
    await rejected(create(), Code.ResourceExhausted, "LIMIT_REACHED");
    await feedsOf(key).createCalendarFeed({ resourceId });
  });
});

describe("a calendar feed's errors", () => {
  /**
   * A server of its own, whose database waits at most 200 ms for a lock,
   * so that a feed can be made to fail for real: a table it reads locked
   * (UNAVAILABLE), or missing (INTERNAL).
   */
  let own: TestServer;
  let feed: string;
  let tenant: { tenantId: string; key: string };
  beforeAll(async () => {
    own = await startTestServer({ HOLDFAST_DB_LOCK_TIMEOUT_MS: "200" });
    tenant = await newTenant(own.url);
    const { resource } = await clientFor(ResourceService, own.url, tenant.key).createResource({
      name: "Room",
      timeZone: "UTC",
    });
    feed = (
      await clientFor(CalendarFeedService, own.url, tenant.key).createCalendarFeed({
        resourceId: resource?.id as string,
      })
    ).urlPath;
  });

  /** Runs `work` on a connection of its own to the server's database. */
  async function onDatabase(work: (db: pg.Client) => Promise<void>): Promise<void> {
    const db = new pg.Client({ connectionString: own.databaseUrl });
    await db.connect();
    try {
      await work(db);
    } finally {
      await db.end();
    }
  }

  /** The JSON error body of a feed's answer, checked to be one. */
  async function jsonError(res: Response) {
    expect(res.headers.get("content-type")).toBe("application/json");
    return (await res.json()) as {
      code: string;
      message: string;
      details: { type: string; debug: { reason: string; metadata?: Record<string, string> } }[];
    };
  }

  it("answers a failure of the database as the RPCs do: 503 UNAVAILABLE while it is locked, 500 INTERNAL while it is broken", async () => {
    expect((await fetch(`${own.url}${feed}`)).status).toBe(200);

    // The table the feed's lookup reads, locked by another session: the
    // lookup gives up after the lock timeout.
    await onDatabase(async (db) => {
      await db.query("BEGIN");
      await db.query("LOCK TABLE calendar_feeds IN ACCESS EXCLUSIVE MODE");
      const res = await fetch(`${own.url}${feed}`);
      expect(res.status).toBe(503);
      expect(await jsonError(res)).toMatchObject({
        code: "unavailable",
        details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "UNAVAILABLE" } }],
      });
      await db.query("ROLLBACK");
    });
    expect((await fetch(`${own.url}${feed}`)).status).toBe(200);

    // The table gone: an error nothing maps, which never reaches the caller.
    await onDatabase(async (db) => {
      await db.query("ALTER TABLE calendar_feeds RENAME TO calendar_feeds_away");
      try {
        const res = await fetch(`${own.url}${feed}`);
        expect(res.status).toBe(500);
        const body = await jsonError(res);
        expect(body).toMatchObject({
          code: "internal",
          message: "internal error",
          details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "INTERNAL" } }],
        });
        expect(JSON.stringify(body)).not.toContain("calendar_feeds");
      } finally {
        await db.query("ALTER TABLE calendar_feeds_away RENAME TO calendar_feeds");
      }
    });
    expect((await fetch(`${own.url}${feed}`)).status).toBe(200);
  });

  it("refuses a fetch over the rate limit with 429 RATE_LIMITED as JSON, keeping Retry-After and the RateLimit fields", async () => {
    await clientFor(TenantService, own.url, ADMIN_KEY).setTenantRateLimit({
      tenantId: tenant.tenantId,
      rateLimit: { requestsPerSecond: 1, burst: 1 },
    });
    // The new limit applies within a second: fetched until one is refused.
    let res = await fetch(`${own.url}${feed}`);
    await vi.waitFor(
      async () => {
        if (res.status === 200) res = await fetch(`${own.url}${feed}`);
        expect(res.status).toBe(429);
      },
      { timeout: 10_000, interval: 20 },
    );
    expect(res.headers.get("retry-after")).toBe("1");
    expect(res.headers.get("ratelimit")).toMatch(/"tenant";r=0;t=\d+/);
    const body = await jsonError(res);
    expect(body).toMatchObject({
      code: "resource_exhausted",
      details: [
        { type: "google.rpc.ErrorInfo", debug: { reason: "RATE_LIMITED" } },
        { type: "google.rpc.RetryInfo" },
      ],
    });
    expect(body.message).toMatch(/^over the tenant's rate limit: retry in \d+ ms$/);
    expect(body.details[0]?.debug.metadata).toMatchObject({ policy: "tenant" });
  });
});

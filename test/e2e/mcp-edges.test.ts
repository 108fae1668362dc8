import { describe, expect, it } from "vitest";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { minutes } from "../support/booking.js";
import { clientFor, newTenant } from "../support/clients.js";
import { ALL_TOOLS, callTool, clinic, mcpOverHttp } from "../support/mcp.js";
import { scrape } from "../support/metrics.js";
import { startTestServer } from "../support/server.js";

/**
 * The MCP server at the edges: a service whose resources keep different
 * clocks, replays a key cannot check, page tokens with other arguments,
 * instructions per key, arguments that are not an object, and the limits
 * and hints of hold_slot. Driven by the MCP SDK's client over HTTP.
 */

const server = await startTestServer();
const DAY = 86_400_000;

/** A local date in `timeZone` `days` from now. */
function dateIn(timeZone: string, days: number): string {
  return new Date(Date.now() + days * DAY).toLocaleDateString("en-CA", { timeZone });
}

/** RPCs the server has answered, by method name. */
async function calls(): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  for (const [sample, n] of await scrape(server.url)) {
    const method = /^holdfast_rpc_requests_total\{.*\bmethod="(\w+)"/.exec(sample)?.[1];
    if (method) counts[method] = (counts[method] ?? 0) + n;
  }
  return counts;
}

/** The ListSlots calls `work` makes. */
async function listSlotsCalls(work: () => Promise<unknown>): Promise<number> {
  const before = (await calls()).ListSlots ?? 0;
  await work();
  return ((await calls()).ListSlots ?? 0) - before;
}

/**
 * A tenant with a 30-minute service delivered by a resource in New York
 * (listed first) and one in Tokyo, each open 09:00-17:00 on its own clock.
 */
async function twoZoneClinic({
  newYorkResources = 1,
  newYorkHours = ["09:00", "17:00"],
  gridMinutes = 30,
}: {
  newYorkResources?: number;
  newYorkHours?: [string, string];
  gridMinutes?: number;
} = {}) {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const make = async (name: string, timeZone: string, [startTime, endTime] = ["09:00", "17:00"]) =>
    (
      await resources.createResource({
        name,
        timeZone,
        capacity: 1,
        weeklySchedule: {
          windows: [1, 2, 3, 4, 5, 6, 7].map((weekday) => ({ weekday, startTime, endTime })),
        },
      })
    ).resource?.id as string;
  const ny = await make("Dr Lee (New York)", "America/New_York", newYorkHours);
  const tokyo = await make("Dr Sato (Tokyo)", "Asia/Tokyo");
  const moreInNewYork = await Promise.all(
    Array.from({ length: newYorkResources - 1 }, (_, i) =>
      make(`Dr ${i} (New York)`, "America/New_York", newYorkHours),
    ),
  );
  const { service } = await clientFor(CatalogService, server.url, key).createService({
    name: "Consultation",
    resourceIds: [ny, tokyo, ...moreInNewYork],
    policy: { durations: [minutes(gridMinutes)], slotInterval: minutes(gridMinutes) },
  });
  const keys = clientFor(KeyService, server.url, key);
  return {
    key,
    ny,
    tokyo,
    serviceId: service?.id as string,
    async keyWith(scopes: string[]) {
      return (await keys.createApiKey({ scopes, description: "mcp edges" })).apiKey;
    },
  };
}

/** New York's UTC offset on a date, "-05:00" or "-04:00". */
function nyOffset(date: string): string {
  const noon = new Date(`${date}T12:00:00Z`);
  const hour = Number(
    noon.toLocaleString("en-US", { timeZone: "America/New_York", hour: "2-digit", hour12: false }),
  );
  return `-0${12 - hour}:00`;
}

/** The half-hours from 09:00 to 16:30. */
const DAY_GRID = Array.from(
  { length: 16 },
  (_, i) => `${String(9 + Math.floor(i / 2)).padStart(2, "0")}:${i % 2 ? "30" : "00"}`,
);

describe("a service whose resources are in different time zones", () => {
  it("find_slots by date gives each resource's slots on that date on its own clock, page after page", async () => {
    const c = await twoZoneClinic();
    const day = dateIn("America/New_York", 3);
    for (const key of [c.key, await c.keyWith(["bookings.read", "bookings.write"])]) {
      const agent = await mcpOverHttp(server.url, key);
      const whole = await callTool(agent, "find_slots", {
        service_id: c.serviceId,
        date: day,
        limit: 50,
      });
      expect(whole.isError, whole.text).toBe(false);
      const local = (resourceId: string) =>
        (whole.data.slots as { resource_id: string; local_start_time: string }[])
          .filter((s) => s.resource_id === resourceId)
          .map((s) => s.local_start_time.slice(0, 16));
      expect(local(c.tokyo)).toEqual(DAY_GRID.map((t) => `${day}T${t}`));
      expect(local(c.ny)).toEqual(DAY_GRID.map((t) => `${day}T${t}`));

      // The same day in pages of 5: the same 32 slots, none of another date.
      const paged: string[] = [];
      let answer = await callTool(agent, "find_slots", {
        service_id: c.serviceId,
        date: day,
        limit: 5,
      });
      for (let i = 0; i < 20; i++) {
        expect(answer.isError, answer.text).toBe(false);
        paged.push(...answer.data.slots.map((s: { slot_id: string }) => s.slot_id));
        if (!answer.data.page_token) break;
        answer = await callTool(agent, "find_slots", {
          page_token: answer.data.page_token,
          limit: 5,
        });
      }
      expect(paged).toEqual(whole.data.slots.map((s: { slot_id: string }) => s.slot_id));
    }
  });

  it("find_slots by date finds the date's slots even where the day before of another zone comes first", async () => {
    // Tokyo's day begins at 10:00 the day before in New York: New York's 14
    // slots of that evening come first in the search, and are left out.
    const c = await twoZoneClinic();
    const day = dateIn("America/New_York", 3);
    const agent = await mcpOverHttp(server.url, await c.keyWith(["bookings.read"]));
    let first: Awaited<ReturnType<typeof callTool>> | undefined;
    const made = await listSlotsCalls(async () => {
      first = await callTool(agent, "find_slots", { service_id: c.serviceId, date: day, limit: 1 });
    });
    expect(first?.isError, first?.text).toBe(false);
    expect(first?.data.slots.map((s: { local_start_time: string }) => s.local_start_time)).toEqual([
      `${day}T09:00:00+09:00`,
    ]);
    expect(first?.data.search_complete).toBe(false);
    expect(made).toBeLessThanOrEqual(9); // the zones, then at most 8 pages

    // One at a time, every slot of the date once, earliest first, to the end.
    const seen: string[] = [];
    let answer = first;
    for (let i = 0; i < 40 && answer; i++) {
      expect(answer.isError, answer.text).toBe(false);
      seen.push(
        ...answer.data.slots.map(
          (s: { local_start_time: string; time_zone: string }) =>
            `${s.local_start_time} ${s.time_zone}`,
        ),
      );
      if (!answer.data.page_token) break;
      answer = await callTool(agent, "find_slots", {
        page_token: answer.data.page_token,
        limit: 1,
      });
    }
    expect(answer?.data.search_complete).toBe(true);
    expect(seen).toEqual([
      ...DAY_GRID.map((t) => `${day}T${t}:00+09:00 Asia/Tokyo`),
      ...DAY_GRID.map((t) => `${day}T${t}:00${nyOffset(day)} America/New_York`),
    ]);
  });

  it("find_slots by date says when it stopped at its bound, and searches on from its page_token", async () => {
    // 25 New York resources open all day on a one-minute grid: 13,500 of
    // their slots the evening before come first, more than 8 pages hold.
    const c = await twoZoneClinic({
      newYorkResources: 25,
      newYorkHours: ["00:00", "24:00"],
      gridMinutes: 1,
    });
    const day = dateIn("America/New_York", 3);
    const agent = await mcpOverHttp(server.url, await c.keyWith(["bookings.read"]));
    let stopped: Awaited<ReturnType<typeof callTool>> | undefined;
    const made = await listSlotsCalls(async () => {
      stopped = await callTool(agent, "find_slots", {
        service_id: c.serviceId,
        date: day,
        limit: 1,
      });
    });
    expect(made).toBe(9); // the zones, then 8 pages: the bound
    expect(stopped?.isError, stopped?.text).toBe(false);
    expect(stopped?.data.slots).toEqual([]);
    expect(stopped?.data.search_complete).toBe(false);
    expect(stopped?.text).toContain("the search is not finished");
    expect(stopped?.text).toContain("Do not tell the caller nothing is free");
    expect(stopped?.text).not.toContain("No free time");
    const on = await callTool(agent, "find_slots", {
      page_token: stopped?.data.page_token,
      limit: 1,
    });
    expect(on.isError, on.text).toBe(false);
    expect(on.data.slots[0].local_start_time).toBe(`${day}T09:00:00+09:00`);
  });

  it("refuses a wall-clock time without resource_id, naming the zones; reads it in the resource's zone with one", async () => {
    const c = await twoZoneClinic();
    const day = dateIn("Asia/Tokyo", 3);
    for (const key of [c.key, await c.keyWith(["bookings.read", "bookings.write"])]) {
      const agent = await mcpOverHttp(server.url, key);
      const vague = await callTool(agent, "find_slots", {
        service_id: c.serviceId,
        start_time: `${day}T10:00`,
      });
      expect(vague.isError).toBe(true);
      expect(vague.data.error.field_violations).toEqual([
        {
          field: "start_time",
          description: expect.stringMatching(
            /different time zones \(America\/New_York, Asia\/Tokyo\): give resource_id/,
          ),
        },
      ]);
      const hold = await callTool(agent, "hold_slot", {
        service_id: c.serviceId,
        start_time: `${day}T10:00`,
      });
      expect(hold.data.error.field_violations[0].field).toBe("start_time");
      expect(hold.data.error.message).toContain("different time zones");

      const tokyo = await callTool(agent, "find_slots", {
        service_id: c.serviceId,
        resource_id: c.tokyo,
        start_time: `${day}T10:00`,
        limit: 1,
      });
      expect(tokyo.isError, tokyo.text).toBe(false);
      expect(tokyo.data.slots[0].local_start_time.slice(0, 16)).toBe(`${day}T10:00`);
      expect(tokyo.data.slots[0].time_zone).toBe("Asia/Tokyo");
    }
  });
});

describe("a replayed write that the key cannot check", () => {
  it.each([
    ["a key derived from the call", {}],
    ["the agent's own idempotency_key", { idempotency_key: "ada-at-three" }],
  ])("says the status is the earlier call's and may have changed, not that the time is held (%s)", async (_, own) => {
    const c = await clinic(server.url);
    const writer = await mcpOverHttp(server.url, await c.keyWith(["bookings.write"]));
    const day = new Date(Date.now() + 3 * DAY).toISOString().slice(0, 10);
    const args = {
      service_id: c.serviceId,
      start_time: `${day}T15:00:00Z`,
      duration_minutes: 30,
      attendee_name: "Ada",
      ...own,
    };
    const held = await callTool(writer, "hold_slot", args);
    expect(held.isError, held.text).toBe(false);
    const cancelled = await callTool(writer, "cancel_booking", {
      booking_id: held.data.booking.booking_id,
    });
    expect(cancelled.data.booking.status).toBe("cancelled");

    const again = await callTool(writer, "hold_slot", args);
    expect(again.isError, again.text).toBe(false);
    expect(again.data.replayed).toBe(true);
    expect(again.data.status_unchecked).toBe(true);
    expect(again.text).not.toMatch(/^Booking \S+ is HELD/);
    expect(again.text).toContain("may have changed since");
    expect(again.text).toContain("do not tell the caller the time is held");
  });
});

describe("find_slots with a page_token", () => {
  it("refuses other search arguments that differ from the token's search", async () => {
    const c = await clinic(server.url);
    const other = await twoZoneClinic();
    const agent = await mcpOverHttp(server.url, c.key);
    const day = dateIn("America/New_York", 2);
    const first = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      date: day,
      limit: 2,
    });
    const token = first.data.page_token;
    expect(token).toEqual(expect.any(String));
    const cases: [Record<string, unknown>, string][] = [
      [{ service_id: other.serviceId }, "service_id"],
      [{ date: dateIn("America/New_York", 5) }, "date"],
      [{ start_time: `${day}T12:00` }, "start_time"],
      [{ resource_id: "res_other" }, "resource_id"],
      [{ duration_minutes: 60 }, "duration_minutes"],
    ];
    for (const [args, field] of cases) {
      const r = await callTool(agent, "find_slots", { page_token: token, ...args });
      expect(r.isError, JSON.stringify(args)).toBe(true);
      expect(r.data.error.field_violations).toEqual([
        { field, description: expect.stringContaining("differs from the search the page_token") },
      ]);
    }
    // The same arguments again, with the token, are the next page.
    const next = await callTool(agent, "find_slots", {
      page_token: token,
      service_id: c.serviceId,
      date: day,
      limit: 2,
    });
    expect(next.isError, next.text).toBe(false);
    expect(next.data.slots[0].local_start_time.slice(0, 16)).toBe(`${day}T10:00`);
  });
});

describe("a forged find_slots page_token", () => {
  it("is refused as INVALID_PAGE_TOKEN, whichever field is wrong, never INTERNAL or an empty answer", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const first = await callTool(agent, "find_slots", { service_id: c.serviceId, limit: 1 });
    const token = first.data.page_token as string;
    const real = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
    const forge = (fields: Record<string, unknown>) =>
      Buffer.from(JSON.stringify({ ...real, ...fields })).toString("base64url");
    const forged = [
      "garbage",
      Buffer.from("null").toString("base64url"),
      forge({ from: 1e300, to: 1e301 }),
      forge({ from: 1.5 }),
      forge({ to: real.from }),
      forge({ duration_ms: "x" }),
      forge({ duration_ms: -5 }),
      forge({ date: 5 }),
      forge({ date: "2030-02-30" }),
      forge({ resource_id: 5 }),
      forge({ service_id: "" }),
      forge({ api_token: 7 }),
      forge({ after: { start: "x", resourceId: c.resourceId } }),
      forge({ extra: true }),
    ];
    for (const page_token of forged) {
      const r = await callTool(agent, "find_slots", { page_token });
      expect(r.data.error, Buffer.from(page_token, "base64url").toString()).toMatchObject({
        reason: "INVALID_PAGE_TOKEN",
        field_violations: [{ field: "page_token", description: expect.any(String) }],
      });
    }
    // The token as find_slots wrote it reads on.
    const next = await callTool(agent, "find_slots", { page_token: forge({}) });
    expect(next.isError, next.text).toBe(false);
    expect(next.data.slots[0].start_time > first.data.slots[0].start_time).toBe(true);
  });
});

describe("the server's instructions", () => {
  it("name only tools the key has", async () => {
    const c = await clinic(server.url);
    const scopeSets = [
      ["events.read"],
      ["bookings.write"],
      ["bookings.read"],
      ["catalog.read"],
      ["bookings.read", "bookings.write"],
      ["bookings.read", "bookings.write", "catalog.read"],
    ];
    for (const scopes of scopeSets) {
      const agent = await mcpOverHttp(server.url, await c.keyWith(scopes));
      const has = (await agent.listTools()).tools.map((t) => t.name);
      const text = agent.getInstructions() ?? "";
      const named = ALL_TOOLS.filter((t) => new RegExp(`\\b${t}\\b`).test(text));
      expect(named, `${scopes.join(",")}: ${text}`).toEqual(named.filter((t) => has.includes(t)));
      if (has.length === 0) expect(text).toContain("no tools");
    }
  });
});

describe("hold_slot's limits and hints", () => {
  it("refuses service_id, resource_id or duration_minutes beside a slot_id, which names its own", async () => {
    const c = await clinic(server.url);
    const other = await twoZoneClinic();
    const agent = await mcpOverHttp(server.url, c.key);
    const day = dateIn("America/New_York", 3);
    const [slot] = (await callTool(agent, "find_slots", { service_id: c.serviceId, date: day }))
      .data.slots;
    for (const [field, value] of [
      ["service_id", other.serviceId],
      ["resource_id", other.ny],
      ["duration_minutes", 60],
    ] as const) {
      const r = await callTool(agent, "hold_slot", {
        slot_id: slot.slot_id,
        [field]: value,
        attendee_name: "Zoe",
      });
      expect(r.data.error?.field_violations, r.text).toEqual([
        { field, description: expect.stringContaining("give slot_id alone") },
      ]);
    }
    const held = await callTool(agent, "hold_slot", {
      slot_id: slot.slot_id,
      attendee_name: "Zoe",
    });
    expect(held.isError, held.text).toBe(false);
    const moved = await callTool(agent, "reschedule_booking", {
      booking_id: held.data.booking.booking_id,
      slot_id: slot.slot_id,
      duration_minutes: 60,
    });
    expect(moved.data.error?.field_violations, moved.text).toEqual([
      { field: "duration_minutes", description: expect.stringContaining("give slot_id alone") },
    ]);
  });

  it("states the metadata limits in its input schema", async () => {
    const c = await clinic(server.url);
    const { tools } = await (await mcpOverHttp(server.url, c.key)).listTools();
    for (const name of ["hold_slot", "list_bookings"]) {
      const props = tools.find((t) => t.name === name)?.inputSchema.properties as Record<
        string,
        Record<string, unknown>
      >;
      expect(props.metadata, name).toMatchObject({
        type: "object",
        maxProperties: 20,
        propertyNames: { minLength: 1, maxLength: 64 },
        additionalProperties: { type: "string", maxLength: 500 },
      });
    }
  });

  it("tells a time already begun from one inside the notice period", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const yesterday = new Date(Date.now() - DAY).toISOString().slice(0, 10);
    const past = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${yesterday}T15:00:00Z`,
    });
    expect(past.data.error.reason).toBe("TOO_SOON");
    expect(past.data.error.hint).toContain("already begun");
    expect(past.data.error.hint).not.toContain("notice period");

    // A service with ten days' notice: a past time is still "already
    // begun", one three days ahead is inside the notice period.
    const catalog = clientFor(CatalogService, server.url, c.key);
    const { service } = await catalog.createService({
      name: "Surgery",
      resourceIds: [c.resourceId],
      policy: {
        durations: [minutes(30)],
        slotInterval: minutes(30),
        minNotice: minutes(10 * 24 * 60),
      },
    });
    const noticed = { service_id: service?.id as string };
    const pastToo = await callTool(agent, "hold_slot", {
      ...noticed,
      start_time: `${yesterday}T15:00:00Z`,
    });
    expect(pastToo.data.error.reason).toBe("TOO_SOON");
    expect(pastToo.data.error.hint).toContain("already begun");
    const close = await callTool(agent, "hold_slot", {
      ...noticed,
      start_time: `${dateIn("America/New_York", 3)}T10:00`,
    });
    expect(close.data.error.reason).toBe("TOO_SOON");
    expect(close.data.error.hint).toContain("notice period");
  });
});

describe("a key with catalog.read but not bookings.read", () => {
  it("learns the zones of a service's resources in a few ListResources pages, not a call per resource", async () => {
    const { key } = await newTenant(server.url);
    const resources = clientFor(ResourceService, server.url, key);
    const make = async (name: string, timeZone: string) =>
      (await resources.createResource({ name, timeZone })).resource?.id as string;
    // More of them than one page of ListResources holds, among others of the tenant.
    const rooms = await Promise.all(
      Array.from({ length: 130 }, (_, i) => make(`Room ${i}`, "Europe/Berlin")),
    );
    await Promise.all(Array.from({ length: 30 }, (_, i) => make(`Elsewhere ${i}`, "Asia/Tokyo")));
    // A resource of the service that was deleted offers no slots: its zone does not count.
    const gone = await make("Closed room", "Asia/Tokyo");
    const catalog = clientFor(CatalogService, server.url, key);
    const { service } = await catalog.createService({
      name: "Room hire",
      resourceIds: [...rooms, gone],
      policy: { durations: [minutes(30)], slotInterval: minutes(30) },
    });
    await resources.deleteResource({ resourceId: gone });
    const { apiKey } = await clientFor(KeyService, server.url, key).createApiKey({
      scopes: ["bookings.write", "catalog.read"],
    });
    const agent = await mcpOverHttp(server.url, apiKey);
    const day = dateIn("Europe/Berlin", 3);

    const before = await calls();
    const held = await callTool(agent, "hold_slot", {
      service_id: service?.id,
      start_time: `${day}T10:00`,
      attendee_name: "Ada",
    });
    const after = await calls();
    const made = (method: string) => (after[method] ?? 0) - (before[method] ?? 0);
    expect(made("GetResource")).toBe(0);
    expect(made("ListResources")).toBe(2); // 130 resources, 100 a page
    expect(held.isError, held.text).toBe(false);
    expect(held.data.booking.local_start_time).toMatch(new RegExp(`^${day}T10:00:00\\+0[12]:00$`));

    // A live resource in another zone makes a service-wide wall-clock time ambiguous.
    const tokyo = await make("Tokyo room", "Asia/Tokyo");
    await catalog.updateService({
      service: { id: service?.id as string, resourceIds: [...rooms, tokyo] },
      updateMask: { paths: ["resource_ids"] },
    });
    const vague = await callTool(agent, "hold_slot", {
      service_id: service?.id,
      start_time: `${day}T11:00`,
    });
    expect(vague.data.error.field_violations).toEqual([
      {
        field: "start_time",
        description: expect.stringContaining("(Asia/Tokyo, Europe/Berlin)"),
      },
    ]);
  });
});

describe("reschedule_booking by start_time with a key that cannot read bookings", () => {
  it("asks for what it cannot learn (the length, the zone), never for a service_id", async () => {
    const c = await clinic(server.url);
    const day = dateIn("America/New_York", 4);
    for (const [scopes, hour] of [
      [["bookings.write"], 10],
      [["bookings.write", "catalog.read"], 13],
    ] as const) {
      // Each key's booking at its own hours, h and h + 1 (+ 2).
      const at = (h: number) => `${day}T${h}:00:00${nyOffset(day)}`;
      const agent = await mcpOverHttp(server.url, await c.keyWith([...scopes]));
      const held = await callTool(agent, "hold_slot", {
        service_id: c.serviceId,
        start_time: at(hour),
        duration_minutes: 30,
        attendee_name: scopes.join(" "),
      });
      expect(held.isError, held.text).toBe(false);
      const booking_id = held.data.booking.booking_id;

      const noLength = await callTool(agent, "reschedule_booking", {
        booking_id,
        start_time: at(hour + 1),
      });
      expect(noLength.data.error?.field_violations, noLength.text).toEqual([
        {
          field: "duration_minutes",
          description: expect.stringContaining("needs bookings.read) to learn its current length"),
        },
      ]);
      const noZone = await callTool(agent, "reschedule_booking", {
        booking_id,
        start_time: `${day}T${hour + 1}:00`,
        duration_minutes: 30,
      });
      expect(noZone.data.error?.field_violations, noZone.text).toEqual([
        {
          field: "start_time",
          description: expect.stringContaining("needs bookings.read) to learn its time zone"),
        },
      ]);

      const moved = await callTool(agent, "reschedule_booking", {
        booking_id,
        start_time: at(hour + 1),
        duration_minutes: 30,
      });
      expect(moved.isError, moved.text).toBe(false);
      expect(moved.data.booking.local_start_time).toBe(at(hour + 1));
      if ((scopes as readonly string[]).includes("catalog.read")) {
        // With resource_id, the wall-clock time is read in that resource's zone.
        const local = await callTool(agent, "reschedule_booking", {
          booking_id,
          start_time: `${day}T${hour + 2}:00`,
          resource_id: c.resourceId,
          duration_minutes: 30,
        });
        expect(local.isError, local.text).toBe(false);
        expect(local.data.booking.local_start_time).toBe(at(hour + 2));
      }
    }
  });
});

describe("list_bookings with a wall-clock time on a retired service", () => {
  it("reads it in the zone of the service's resources, inactive or not, or refuses it; never in UTC", async () => {
    const c = await clinic(server.url, { timeZone: "Asia/Tokyo" });
    const day = dateIn("Asia/Tokyo", 5);
    const admin = await mcpOverHttp(server.url, c.key);
    const held = await callTool(admin, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T10:00:00+09:00`,
      attendee_name: "Kenji",
    });
    expect(held.isError, held.text).toBe(false);
    const reader = await mcpOverHttp(server.url, await c.keyWith(["bookings.read"]));
    const both = await mcpOverHttp(server.url, await c.keyWith(["bookings.read", "catalog.read"]));
    // 09:00 to 11:00 in Tokyo; read as UTC, the range would miss the booking.
    const range = {
      service_id: c.serviceId,
      start_time_from: `${day}T09:00`,
      start_time_to: `${day}T11:00`,
    };
    for (const agent of [reader, both]) {
      const listed = await callTool(agent, "list_bookings", range);
      expect(listed.data.bookings, listed.text).toHaveLength(1);
    }

    // Its only resource is deleted, then the service retired; their bookings stay.
    const catalog = clientFor(CatalogService, server.url, c.key);
    for (const retire of [
      () =>
        clientFor(ResourceService, server.url, c.key).deleteResource({ resourceId: c.resourceId }),
      () =>
        catalog.updateService({
          service: { id: c.serviceId, active: false },
          updateMask: { paths: ["active"] },
        }),
    ]) {
      await retire();
      const listed = await callTool(both, "list_bookings", range);
      expect(listed.data.bookings, listed.text).toHaveLength(1);
      const refused = await callTool(reader, "list_bookings", range);
      expect(refused.data.error?.field_violations, refused.text).toEqual([
        {
          field: "start_time_from",
          description: expect.stringMatching(
            /no time zone can be learnt.*catalog\.read.*UTC offset/,
          ),
        },
      ]);
    }
    const searched = await callTool(both, "find_slots", { service_id: c.serviceId, date: day });
    expect(searched.data.error?.field_violations, searched.text).toEqual([
      { field: "date", description: expect.stringContaining("no time zone can be learnt") },
    ]);
  });
});

import { connect } from "node:http2";
import { describe, expect, it } from "vitest";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { clientFor } from "../support/clients.js";
import { ALL_TOOLS, callTool, clinic, mcpOverHttp } from "../support/mcp.js";
import { startTestServer } from "../support/server.js";

/**
 * The MCP server at /mcp, driven by the MCP SDK's own client over
 * Streamable HTTP: what each key sees, the whole flow of a voice agent, retry
 * safety, and failures as tool results.
 */

const server = await startTestServer();
const DAY = 86_400_000;

/** A local date in New York `days` from now. */
function nyDate(days: number): string {
  return new Date(Date.now() + days * DAY).toLocaleDateString("en-CA", {
    timeZone: "America/New_York",
  });
}

describe("tools/list", () => {
  it("shows each key only the tools its scopes allow", async () => {
    const c = await clinic(server.url);
    const names = async (key: string) =>
      (await (await mcpOverHttp(server.url, key)).listTools()).tools.map((t) => t.name).sort();
    expect(await names(c.key)).toEqual(ALL_TOOLS);
    expect(await names(await c.keyWith(["bookings.read"]))).toEqual([
      "find_slots",
      "get_booking",
      "list_bookings",
    ]);
    expect(await names(await c.keyWith(["catalog.read"]))).toEqual([
      "list_resources",
      "list_services",
    ]);
    expect(await names(await c.keyWith(["bookings.write"]))).toEqual([
      "cancel_booking",
      "confirm_booking",
      "extend_hold",
      "hold_slot",
      "reschedule_booking",
    ]);
    expect(await names(await c.keyWith(["events.read"]))).toEqual([]);
  });

  it("describes every tool and every argument", async () => {
    const c = await clinic(server.url);
    const { tools } = await (await mcpOverHttp(server.url, c.key)).listTools();
    for (const tool of tools) {
      expect(tool.description?.length, tool.name).toBeGreaterThan(80);
      const props = (tool.inputSchema.properties ?? {}) as Record<string, { description?: string }>;
      for (const [arg, schema] of Object.entries(props)) {
        expect(schema.description?.length, `${tool.name}.${arg}`).toBeGreaterThan(10);
      }
    }
    const args = (name: string) =>
      tools.find((t) => t.name === name)?.inputSchema.properties as Record<
        string,
        { description: string }
      >;
    // A reschedule keeps the booking's length unless told otherwise.
    expect(args("reschedule_booking").duration_minutes?.description).toContain(
      "Default: the booking's current length.",
    );
    expect(args("hold_slot").duration_minutes?.description).toContain(
      "Default: the service's first.",
    );
  });
});

describe("the voice-agent flow", () => {
  it("finds, holds, loses a race with alternatives, confirms, reschedules and cancels", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const rival = await mcpOverHttp(
      server.url,
      await c.keyWith(["bookings.read", "bookings.write"]),
    );

    const services = await callTool(agent, "list_services", {});
    expect(services.isError).toBe(false);
    expect(services.data.services).toEqual([
      expect.objectContaining({
        service_id: c.serviceId,
        name: "Consultation",
        duration_minutes: [30],
      }),
    ]);

    const day = nyDate(2);
    const found = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      date: day,
      limit: 3,
    });
    expect(found.isError).toBe(false);
    expect(found.data.slots).toHaveLength(3);
    const [first, _second] = found.data.slots;
    expect(first.local_start_time).toBe(`${day}T09:00:00${first.local_start_time.slice(19)}`);
    expect(first.time_zone).toBe("America/New_York");
    expect(first.start_time).toMatch(/Z$/);
    expect(Date.parse(first.start_time)).toBe(Date.parse(first.local_start_time));
    expect(found.data.page_token).toEqual(expect.any(String));

    // More slots of the same search, with the page token alone.
    const more = await callTool(agent, "find_slots", {
      page_token: found.data.page_token,
      limit: 3,
    });
    expect(more.isError).toBe(false);
    expect(more.data.slots[0].local_start_time).toBe(
      `${day}T10:30:00${first.local_start_time.slice(19)}`,
    );

    // The rival takes the first slot just before our agent.
    const theirs = await callTool(rival, "hold_slot", {
      slot_id: first.slot_id,
      attendee_name: "Sam",
    });
    expect(theirs.isError).toBe(false);

    const lost = await callTool(agent, "hold_slot", {
      slot_id: first.slot_id,
      attendee_name: "Ada",
    });
    expect(lost.isError).toBe(true);
    expect(lost.data.error).toMatchObject({
      reason: "SLOT_UNAVAILABLE",
      hint: expect.stringContaining("alternatives"),
    });
    expect(lost.data.error.alternatives.length).toBeGreaterThan(0);
    expect(lost.data.error.alternatives[0]).toMatchObject({
      slot_id: expect.any(String),
      local_start_time: expect.stringContaining(day),
      time_zone: "America/New_York",
    });
    expect(lost.text).toContain("Free instead:");
    expect(JSON.stringify(lost.data)).not.toContain("Sam");

    const alt = lost.data.error.alternatives[0];
    const held = await callTool(agent, "hold_slot", {
      slot_id: alt.slot_id,
      attendee_name: "Ada",
      attendee_phone: "+15550100",
    });
    expect(held.isError).toBe(false);
    const booking = held.data.booking;
    expect(booking).toMatchObject({
      status: "held",
      start_time: alt.start_time,
      local_start_time: alt.local_start_time,
    });
    expect(booking.hold_seconds_left).toBeGreaterThan(0);
    expect(held.text).toMatch(/the hold lapses in \d+ s/);

    const extended = await callTool(agent, "extend_hold", {
      booking_id: booking.booking_id,
      minutes: 10,
    });
    expect(extended.isError).toBe(false);
    expect(extended.data.booking.hold_seconds_left).toBeGreaterThan(500);

    const confirmed = await callTool(agent, "confirm_booking", { booking_id: booking.booking_id });
    expect(confirmed.data.booking).toMatchObject({
      status: "confirmed",
      booking_id: booking.booking_id,
    });
    expect(confirmed.data.booking.hold_seconds_left).toBeUndefined();

    // The caller asks for 2 PM local instead, said as wall-clock time.
    const moved = await callTool(agent, "reschedule_booking", {
      booking_id: booking.booking_id,
      start_time: `${day}T14:00`,
    });
    expect(moved.isError).toBe(false);
    expect(moved.data.booking.local_start_time).toBe(
      `${day}T14:00:00${first.local_start_time.slice(19)}`,
    );
    expect(moved.data.booking.status).toBe("confirmed");

    // Moving onto the rival's hold fails and offers other times.
    const clash = await callTool(agent, "reschedule_booking", {
      booking_id: booking.booking_id,
      slot_id: first.slot_id,
    });
    expect(clash.data.error.reason).toBe("SLOT_UNAVAILABLE");
    expect(clash.data.error.alternatives.length).toBeGreaterThan(0);

    const got = await callTool(agent, "get_booking", { booking_id: booking.booking_id });
    expect(got.data.booking.local_start_time).toBe(moved.data.booking.local_start_time);

    const cancelled = await callTool(agent, "cancel_booking", {
      booking_id: booking.booking_id,
      reason: "caller changed plans",
    });
    expect(cancelled.data.booking).toMatchObject({
      status: "cancelled",
      cancel_reason: "caller changed plans",
    });

    const listed = await callTool(agent, "list_bookings", { statuses: ["held", "confirmed"] });
    expect(
      listed.data.bookings.map((b: { attendee?: { name: string } }) => b.attendee?.name),
    ).toEqual(["Sam"]);
  });

  it("holds by local wall-clock time or UTC, and offers the nearest free times outside working hours", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(3);
    const local = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T11:00`,
    });
    expect(local.isError).toBe(false);
    expect(local.data.booking.local_start_time.slice(0, 16)).toBe(`${day}T11:00`);
    const utcStart = new Date(Date.parse(local.data.booking.start_time) + 3_600_000).toISOString();
    const utc = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: utcStart,
    });
    expect(utc.data.booking.local_start_time.slice(0, 16)).toBe(`${day}T12:00`);

    const night = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T20:00`,
    });
    expect(night.isError).toBe(true);
    expect(night.data.error.reason).toBe("OUTSIDE_WORKING_HOURS");
    expect(
      night.data.error.alternatives.map((s: { local_start_time: string }) =>
        s.local_start_time.slice(11, 16),
      ),
    ).toEqual(["16:30", "16:00", "15:30"]);
  });
});

describe("labels of the agent's own", () => {
  it("stores hold_slot's metadata on the booking, and list_bookings finds the booking by it", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(4);
    const mine = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T10:00`,
      metadata: { caller_phone: "+12025550147", ticket: "A-17" },
    });
    expect(mine.isError).toBe(false);
    expect(mine.data.booking.metadata).toEqual({ caller_phone: "+12025550147", ticket: "A-17" });
    const other = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T11:00`,
      metadata: { caller_phone: "+12025550199" },
    });
    expect(other.isError).toBe(false);
    const found = await callTool(agent, "list_bookings", {
      metadata: { caller_phone: "+12025550147" },
    });
    expect(found.data.bookings.map((b: { booking_id: string }) => b.booking_id)).toEqual([
      mine.data.booking.booking_id,
    ]);
    const tooMany = await callTool(agent, "list_bookings", {
      metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, "v"])),
    });
    expect(tooMany.isError).toBe(true);
    expect(tooMany.data.error.reason).toBe("VALIDATION_ERROR");
  });
});

describe("a key without catalog.read (the Quickstart's agent key)", () => {
  const AGENT_SCOPES = ["bookings.read", "bookings.write", "events.read"];

  it("reads dates and wall-clock times in the resource's zone, learnt from ListSlots", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, await c.keyWith(AGENT_SCOPES));
    const day = nyDate(6);
    const byDate = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      date: day,
      limit: 1,
    });
    expect(byDate.isError, byDate.text).toBe(false);
    expect(byDate.data.slots[0].local_start_time.slice(0, 16)).toBe(`${day}T09:00`);
    const byWall = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      start_time: `${day}T11:00`,
      limit: 1,
    });
    expect(byWall.isError, byWall.text).toBe(false);
    expect(byWall.data.slots[0].local_start_time.slice(0, 16)).toBe(`${day}T11:00`);
    const held = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      resource_id: c.resourceId,
      start_time: `${day}T12:00`,
    });
    expect(held.isError, held.text).toBe(false);
    expect(held.data.booking.local_start_time.slice(0, 16)).toBe(`${day}T12:00`);
    expect(held.data.booking.local_end_time.slice(0, 16)).toBe(`${day}T12:30`);
    const listed = await callTool(agent, "list_bookings", {
      service_id: c.serviceId,
      start_time_from: `${day}T00:00`,
    });
    expect(listed.isError, listed.text).toBe(false);
    expect(listed.data.bookings).toHaveLength(1);
  });

  it("names the argument given, and says what else would do, when no zone can be learnt", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, await c.keyWith(AGENT_SCOPES));
    const to = await callTool(agent, "list_bookings", { start_time_to: "2030-03-04T00:00" });
    expect(to.data.error.field_violations).toEqual([
      { field: "start_time_to", description: expect.stringContaining("service_id") },
    ]);
    expect(to.data.error.message).toContain("UTC offset");
    const byResource = await callTool(agent, "list_bookings", {
      resource_id: c.resourceId,
      start_time_from: "2030-03-04T00:00",
    });
    expect(byResource.data.error.field_violations[0]).toEqual({
      field: "start_time_from",
      description: expect.stringContaining("give service_id too"),
    });
  });

  it("is not told to call list_services, which it does not have", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, await c.keyWith(AGENT_SCOPES));
    expect(agent.getInstructions()).not.toContain("list_services ->");
    expect(agent.getInstructions()).toContain("the service_id you were given");
    const full = await mcpOverHttp(server.url, c.key);
    expect(full.getInstructions()).toContain("list_services -> find_slots");
    const { tools } = await agent.listTools();
    for (const tool of tools) {
      for (const [arg, schema] of Object.entries(tool.inputSchema.properties ?? {})) {
        const text = (schema as { description?: string }).description ?? "";
        if (text.includes("list_services")) {
          expect(text, `${tool.name}.${arg}`).toContain("or the one you were given");
        }
      }
    }
  });
});

describe("a wall-clock time that clocks going forward skip", () => {
  it("does not exist: hold_slot and find_slots say where the clocks jump", async () => {
    const c = await clinic(server.url, { timeZone: "Europe/London" });
    const agent = await mcpOverHttp(server.url, c.key);
    const jump = "the clocks jump from 2027-03-28T01:00 to 2027-03-28T02:00";
    const hold = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: "2027-03-28T01:30",
    });
    expect(hold.isError).toBe(true);
    expect(hold.data.error.reason).toBe("VALIDATION_ERROR");
    expect(hold.data.error.field_violations).toEqual([
      {
        field: "start_time",
        description: expect.stringContaining(`does not exist in Europe/London: ${jump}`),
      },
    ]);
    expect(hold.data.error.message).toContain("2027-03-28T00:59 and 2027-03-28T02:00");
    const find = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      start_time: "2027-03-28T01:30",
    });
    expect(find.data.error.field_violations[0]).toEqual({
      field: "start_time",
      description: expect.stringContaining(jump),
    });
    // A time the change repeats keeps its earlier instant.
    const repeated = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      start_time: "2027-10-31T01:30",
      end_time: "2027-10-31T01:31",
    });
    expect(repeated.isError, repeated.text).toBe(false);
  });
});

describe("retry safety", () => {
  it("a retried hold without an idempotency_key returns the same hold, never a second one", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(4);
    const args = { service_id: c.serviceId, start_time: `${day}T09:00`, attendee_name: "Ada" };
    const first = await callTool(agent, "hold_slot", args);
    const again = await Promise.all([1, 2, 3].map(() => callTool(agent, "hold_slot", args)));
    expect(first.isError).toBe(false);
    for (const r of again) {
      expect(r.isError).toBe(false);
      expect(r.data.booking.booking_id).toBe(first.data.booking.booking_id);
      expect(r.data.replayed).toBe(true);
    }
    const listed = await callTool(agent, "list_bookings", {});
    expect(listed.data.bookings).toHaveLength(1);

    // Once that hold is cancelled, the same request is a new request.
    await callTool(agent, "cancel_booking", { booking_id: first.data.booking.booking_id });
    const anew = await callTool(agent, "hold_slot", args);
    expect(anew.isError).toBe(false);
    expect(anew.data.booking.booking_id).not.toBe(first.data.booking.booking_id);
    expect(anew.data.replayed).toBeUndefined();
    // ...and a retry of that one finds it again.
    const retried = await callTool(agent, "hold_slot", args);
    expect(retried.data.booking.booking_id).toBe(anew.data.booking.booking_id);
  });

  it("holds for different callers differ by attendee or idempotency_key, as hold_slot says", async () => {
    const c = await clinic(server.url, { capacity: 2 });
    const agent = await mcpOverHttp(server.url, c.key);
    const { tools } = await agent.listTools();
    const description = tools.find((t) => t.name === "hold_slot")?.description;
    expect(description).toContain("holds for different callers must differ");
    const day = nyDate(4);
    const args = { service_id: c.serviceId, start_time: `${day}T10:00` };
    const one = await callTool(agent, "hold_slot", args);
    const same = await callTool(await mcpOverHttp(server.url, c.key), "hold_slot", args);
    expect(same.data.booking.booking_id).toBe(one.data.booking.booking_id);
    expect(same.text).toContain("attendee details or a new idempotency_key");
    const other = await callTool(agent, "hold_slot", { ...args, attendee_name: "Bo" });
    const keyed = await callTool(agent, "hold_slot", { ...args, idempotency_key: "second-caller" });
    expect(other.data.booking.booking_id).not.toBe(one.data.booking.booking_id);
    // A new key is a new hold too: a third one, where the resource takes two.
    expect(keyed.data.error.reason).toBe("SLOT_UNAVAILABLE");
  });

  it("a retried hold that was refused is tried anew, so a freed time can be held", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(4);
    const blocker = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T10:00`,
      attendee_name: "X",
    });
    const args = { service_id: c.serviceId, start_time: `${day}T10:00`, attendee_name: "Ada" };
    expect((await callTool(agent, "hold_slot", args)).data.error.reason).toBe("SLOT_UNAVAILABLE");
    await callTool(agent, "cancel_booking", { booking_id: blocker.data.booking.booking_id });
    const now = await callTool(agent, "hold_slot", args);
    expect(now.isError).toBe(false);
  });

  it("a retried hold after an extension or a confirmation returns that booking as it is now, never a second one", async () => {
    const c = await clinic(server.url, { capacity: 2 });
    const agent = await mcpOverHttp(server.url, c.key);
    const args = {
      service_id: c.serviceId,
      start_time: `${nyDate(4)}T11:00`,
      attendee_name: "Ada",
    };
    const first = await callTool(agent, "hold_slot", args);
    const id = first.data.booking.booking_id;
    const ext = await callTool(agent, "extend_hold", { booking_id: id, minutes: 20 });
    expect(ext.isError).toBe(false);
    const extended = await callTool(agent, "get_booking", { booking_id: id });
    const again = await callTool(agent, "hold_slot", args);
    expect(again.isError).toBe(false);
    expect(again.data.booking.booking_id).toBe(id);
    expect(again.data.replayed).toBe(true);
    // Stated as it is now: the extended expiry, not the first answer's.
    expect(again.data.booking.hold_expires_at).toBe(extended.data.booking.hold_expires_at);
    expect(again.data.booking.hold_expires_at).not.toBe(first.data.booking.hold_expires_at);

    await callTool(agent, "confirm_booking", { booking_id: id });
    const afterConfirm = await callTool(agent, "hold_slot", args);
    expect(afterConfirm.data.booking.booking_id).toBe(id);
    expect(afterConfirm.data.booking.status).toBe(
      (await callTool(agent, "get_booking", { booking_id: id })).data.booking.status,
    );
    expect((await callTool(agent, "list_bookings", {})).data.bookings).toHaveLength(1);
  });

  it("a hold refused many times over is still retry-safe once it goes through", async () => {
    const c = await clinic(server.url, { capacity: 2 });
    const agent = await mcpOverHttp(server.url, c.key);
    const start = `${nyDate(4)}T12:00`;
    const blockers = await Promise.all(
      ["X", "Y"].map(async (attendee_name) =>
        callTool(agent, "hold_slot", { service_id: c.serviceId, start_time: start, attendee_name }),
      ),
    );
    const args = { service_id: c.serviceId, start_time: start, attendee_name: "Ada" };
    for (let i = 0; i < 12; i++) {
      expect((await callTool(agent, "hold_slot", args)).data.error.reason).toBe("SLOT_UNAVAILABLE");
    }
    for (const b of blockers) {
      await callTool(agent, "cancel_booking", { booking_id: b.data.booking.booking_id });
    }
    const held = await callTool(agent, "hold_slot", args);
    expect(held.isError).toBe(false);
    const retried = await callTool(agent, "hold_slot", args);
    expect(retried.data.booking.booking_id).toBe(held.data.booking.booking_id);
    expect(retried.data.replayed).toBe(true);
  });

  it("a replay under an explicit idempotency_key states the booking's status now", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const args = {
      service_id: c.serviceId,
      start_time: `${nyDate(4)}T13:00`,
      attendee_name: "Ada",
      idempotency_key: "call-7",
    };
    const one = await callTool(agent, "hold_slot", args);
    const id = one.data.booking.booking_id;
    await callTool(agent, "cancel_booking", { booking_id: id });
    const cancelled = (await callTool(agent, "get_booking", { booking_id: id })).data.booking;
    const two = await callTool(agent, "hold_slot", args);
    expect(two.data.booking.booking_id).toBe(id);
    expect(two.data.replayed).toBe(true);
    expect(two.data.booking.status).toBe(cancelled.status);
    expect(two.data.booking.status).not.toBe(one.data.booking.status);
  });

  it("honours an explicit idempotency_key", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(5);
    const found = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      date: day,
      limit: 2,
    });
    const [a, b] = found.data.slots;
    const one = await callTool(agent, "hold_slot", {
      slot_id: a.slot_id,
      idempotency_key: "call-42",
    });
    const two = await callTool(agent, "hold_slot", {
      slot_id: a.slot_id,
      idempotency_key: "call-42",
    });
    expect(two.data.booking.booking_id).toBe(one.data.booking.booking_id);
    const reused = await callTool(agent, "hold_slot", {
      slot_id: b.slot_id,
      idempotency_key: "call-42",
    });
    expect(reused.data.error.reason).toBe("IDEMPOTENCY_KEY_REUSED");
  });
});

describe("failures", () => {
  it("refuses a wrong key before any MCP message, with 401", async () => {
    await expect(mcpOverHttp(server.url, "hf_not_a_real_key")).rejects.toThrow();
    const res = await fetch(`${server.url}/mcp`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
      },
      body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/list" }),
    });
    expect(res.status).toBe(401);
    expect(res.headers.get("www-authenticate")).toMatch(/^Bearer/);
    expect(((await res.json()) as { error: { message: string } }).error.message).toMatch(
      /^UNAUTHENTICATED/,
    );
  });

  it("refuses a key over its rate limit with 429 and Retry-After, never 500", async () => {
    const c = await clinic(server.url);
    const { apiKey } = await clientFor(KeyService, server.url, c.key).createApiKey({
      scopes: ["bookings.read"],
      description: "one call a second",
      rateLimit: { requestsPerSecond: 1, burst: 1 },
    });
    // Twelve at once: the key is asked who it is (GetCaller) before any MCP
    // message, and the in-process retries admit at most a few of them.
    const answers = await Promise.all(
      Array.from({ length: 12 }, async (_, id) => {
        const res = await fetch(`${server.url}/mcp`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${apiKey}`,
            "content-type": "application/json",
            accept: "application/json, text/event-stream",
          },
          body: JSON.stringify({ jsonrpc: "2.0", id, method: "tools/list" }),
        });
        return { res, body: (await res.json()) as { error?: { message: string } } };
      }),
    );
    const statuses = answers.map((a) => a.res.status);
    expect(
      statuses.every((s) => s === 200 || s === 429),
      String(statuses),
    ).toBe(true);
    const refused = answers.filter((a) => a.res.status === 429);
    expect(refused.length).toBeGreaterThan(0);
    for (const { res, body } of refused) {
      expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
      expect(res.headers.get("ratelimit")).toMatch(/"key";r=0;t=\d+/);
      expect(body.error?.message).toMatch(/^RATE_LIMITED: /);
    }
  });

  it("answers a tool outside the key's scopes with MISSING_SCOPE", async () => {
    const c = await clinic(server.url);
    const reader = await mcpOverHttp(server.url, await c.keyWith(["bookings.read"]));
    const r = await callTool(reader, "hold_slot", { slot_id: "x" });
    expect(r.isError).toBe(true);
    expect(r.data.error).toMatchObject({
      reason: "MISSING_SCOPE",
      message: expect.stringContaining("bookings.write"),
    });
  });

  it("names the bad argument", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const cases: [string, Record<string, unknown>, string][] = [
      ["hold_slot", { slot_id: 5 }, "slot_id"],
      ["hold_slot", {}, "slot_id"],
      ["hold_slot", { service_id: c.serviceId }, "slot_id"],
      ["hold_slot", { service_id: c.serviceId, start_time: "next tuesday at 3" }, "start_time"],
      ["hold_slot", { service_id: c.serviceId, start_time: "2030-02-30T10:00" }, "start_time"],
      ["hold_slot", { slot_id: "abc", nme: "Ada" }, "nme"],
      ["find_slots", { service_id: c.serviceId, date: "tomorrow" }, "date"],
      ["find_slots", { service_id: c.serviceId, limit: 0 }, "limit"],
      ["find_slots", {}, "service_id"],
      ["list_bookings", { statuses: ["booked"] }, "statuses.0"],
      ["extend_hold", { booking_id: "" }, "booking_id"],
    ];
    for (const [tool, args, field] of cases) {
      const r = await callTool(agent, tool, args);
      expect(r.isError, `${tool} ${JSON.stringify(args)}`).toBe(true);
      expect(r.data.error.reason).toMatch(/VALIDATION_ERROR|MALFORMED_REQUEST/);
      expect(
        r.data.error.field_violations.map((v: { field: string }) => v.field),
        `${tool} ${JSON.stringify(args)}`,
      ).toContain(field);
    }
    // In words, as every other message (not zod's "Too big: expected number to be <=50").
    const tooMany = await callTool(agent, "find_slots", { service_id: c.serviceId, limit: 51 });
    expect(tooMany.data.error.field_violations).toEqual([
      { field: "limit", description: "must be at most 50" },
    ]);
    const bogus = await callTool(agent, "hold_slot", { slot_id: "not-a-slot" });
    expect(bogus.data.error).toMatchObject({ reason: "INVALID_SLOT_ID", hint: expect.any(String) });
    const missing = await callTool(agent, "get_booking", {
      booking_id: "00000000-0000-0000-0000-000000000000",
    });
    expect(missing.data.error.reason).toMatch(/BOOKING_NOT_FOUND|VALIDATION_ERROR/);
    const unknown = await callTool(agent, "book_everything", {});
    expect(unknown.data.error.reason).toBe("UNKNOWN_TOOL");
  });

  it("says what would do instead, in the caller's local time", async () => {
    const c = await clinic(server.url);
    const agent = await mcpOverHttp(server.url, c.key);
    const day = nyDate(7);

    const wall = await callTool(agent, "list_bookings", { start_time_from: `${day}T00:00` });
    expect(wall.data.error.field_violations[0]).toEqual({
      field: "start_time_from",
      description: expect.stringMatching(/give service_id or resource_id.*UTC offset/),
    });

    const empty = await callTool(agent, "find_slots", {
      service_id: c.serviceId,
      start_time: `${day}T17:00`,
      end_time: `${day}T20:00`,
    });
    expect(empty.data.slots).toEqual([]);
    expect(empty.text).toContain(
      `No free time between ${day} 17:00 and ${day} 20:00 America/New_York`,
    );
    // UTC beside it, as every message gives an instant: no fraction at a whole second.
    expect(empty.text).toMatch(
      new RegExp(
        `20:00 America/New_York \\(${day}T2\\d:00:00Z to \\d{4}-\\d\\d-\\d\\dT0\\d:00:00Z\\)`,
      ),
    );

    for (const date of ["next monday", "12/02/2026"]) {
      const bad = await callTool(agent, "find_slots", { service_id: c.serviceId, date });
      expect(bad.data.error.field_violations, date).toEqual([
        { field: "date", description: expect.stringContaining('such as "2030-03-04"') },
      ]);
    }
    const long = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: "the first tuesday after the second monday of next month at 3 pm please",
    });
    expect(long.data.error.field_violations[0].description).toContain("is not a time: give");

    const misspelt = await callTool(agent, "hold_slot", { slotId: "x", attendee: "Ada" });
    expect(misspelt.data.error.field_violations).toEqual(
      expect.arrayContaining([
        {
          field: "slotId",
          description: 'is not an argument of hold_slot; did you mean "slot_id"?',
        },
        {
          field: "attendee",
          description: expect.stringContaining("its arguments are slot_id, service_id"),
        },
      ]),
    );

    const held = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T10:00`,
    });
    const b = held.data.booking;
    expect(b.local_hold_expires_at).toMatch(
      /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[-+]\d{2}:\d{2}$/,
    );
    expect(Date.parse(b.local_hold_expires_at)).toBe(Date.parse(b.hold_expires_at));
    expect(held.text).toMatch(/the hold lapses in \d+ s \(at [\d-]+ [\d:]+ America\/New_York, /);
    const taken = await callTool(agent, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T10:00`,
      attendee_name: "Bo",
    });
    expect(taken.data.error.reason).toBe("SLOT_UNAVAILABLE");
    expect(taken.data.error.conflicts[0]).toMatchObject({
      start_time: b.start_time,
      local_start_time: b.local_start_time,
      local_end_time: b.local_end_time,
      time_zone: "America/New_York",
    });
  });

  it("answers GET with 405: the server is stateless", async () => {
    const res = await fetch(`${server.url}/mcp`, { headers: { accept: "text/event-stream" } });
    expect(res.status).toBe(405);
  });
});

describe("over HTTP/2 without TLS (h2c)", () => {
  /** One JSON-RPC POST to /mcp over an h2c connection: status, content type and body. */
  function postOverH2c(key: string, message: unknown) {
    return new Promise<{ status: number; type: string; body: string }>((resolve, reject) => {
      const session = connect(server.url);
      session.on("error", reject);
      const req = session.request({
        ":method": "POST",
        ":path": "/mcp",
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        authorization: `Bearer ${key}`,
      });
      let status = 0;
      let type = "";
      const chunks: Buffer[] = [];
      req.on("response", (headers) => {
        status = Number(headers[":status"]);
        type = String(headers["content-type"] ?? "");
      });
      req.on("data", (d: Buffer) => chunks.push(d));
      req.on("end", () => {
        session.close();
        resolve({ status, type, body: Buffer.concat(chunks).toString() });
      });
      req.on("error", reject);
      req.end(JSON.stringify(message));
    });
  }

  it("answers initialize and tools/call on the same port as every other protocol", async () => {
    const c = await clinic(server.url);
    const init = await postOverH2c(c.key, {
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: {
        protocolVersion: "2025-06-18",
        capabilities: {},
        clientInfo: { name: "h2c-test", version: "1.0.0" },
      },
    });
    expect(init.status).toBe(200);
    expect(init.type).toMatch(/^application\/json/);
    expect(JSON.parse(init.body).result.serverInfo.name).toBeTruthy();

    const listed = await postOverH2c(c.key, {
      jsonrpc: "2.0",
      id: 2,
      method: "tools/call",
      params: { name: "list_resources", arguments: {} },
    });
    expect(listed.status).toBe(200);
    const result = JSON.parse(listed.body).result;
    expect(result.isError).toBeFalsy();
    expect(JSON.stringify(result.content)).toContain(c.resourceId);
  });
});

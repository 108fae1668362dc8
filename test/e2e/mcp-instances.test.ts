import { describe, expect, it } from "vitest";
import { callTool, clinic, mcpOverHttp, mcpOverStdio } from "../support/mcp.js";
import { startTestServer } from "../support/server.js";

/**
 * MCP beyond one process: `holdfast mcp` as its own process over stdio, as
 * a desktop client starts it, and /mcp on two instances of one database.
 */

const first = await startTestServer();
const second = await startTestServer({}, first.databaseUrl);
const DAY = 86_400_000;

function nyDate(days: number): string {
  return new Date(Date.now() + days * DAY).toLocaleDateString("en-CA", {
    timeZone: "America/New_York",
  });
}

describe("holdfast mcp (stdio)", () => {
  it("lists the key's tools and runs the flow against the server at HOLDFAST_URL", async () => {
    const c = await clinic(first.url);
    const client = await mcpOverStdio(first.url, c.key);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toContain("hold_slot");
    const reader = await mcpOverStdio(first.url, await c.keyWith(["bookings.read"]));
    expect((await reader.listTools()).tools.map((t) => t.name).sort()).toEqual([
      "find_slots",
      "get_booking",
      "list_bookings",
    ]);

    const day = nyDate(2);
    const found = await callTool(client, "find_slots", {
      service_id: c.serviceId,
      date: day,
      limit: 2,
    });
    const [slot] = found.data.slots;
    const held = await callTool(client, "hold_slot", {
      slot_id: slot.slot_id,
      attendee_name: "Ada",
    });
    expect(held.data.booking).toMatchObject({
      status: "held",
      local_start_time: slot.local_start_time,
    });
    const retried = await callTool(client, "hold_slot", {
      slot_id: slot.slot_id,
      attendee_name: "Ada",
    });
    expect(retried.data.booking.booking_id).toBe(held.data.booking.booking_id);

    // Someone else, straight through /mcp, loses the race and is offered times.
    const web = await mcpOverHttp(first.url, c.key);
    const lost = await callTool(web, "hold_slot", { slot_id: slot.slot_id, attendee_name: "Bo" });
    expect(lost.data.error.reason).toBe("SLOT_UNAVAILABLE");
    expect(lost.data.error.alternatives.length).toBeGreaterThan(0);

    const confirmed = await callTool(client, "confirm_booking", {
      booking_id: held.data.booking.booking_id,
    });
    expect(confirmed.data.booking.status).toBe("confirmed");
    const bad = await callTool(reader, "find_slots", {
      service_id: c.serviceId,
      start_time: "soon",
    });
    expect(bad.data.error.field_violations[0].field).toBe("start_time");
  });

  it("refuses to start with a wrong key, saying why on stderr", async () => {
    const stderr: string[] = [];
    await expect(mcpOverStdio(first.url, "hf_wrong", stderr)).rejects.toThrow();
    expect(stderr.join("")).toContain("UNAUTHENTICATED");
  });
});

describe("/mcp on two instances of one database", () => {
  it("any instance answers any request of the flow; one winner per slot", async () => {
    const c = await clinic(first.url);
    const a = await mcpOverHttp(first.url, c.key);
    const b = await mcpOverHttp(second.url, c.key);
    const day = nyDate(3);
    const found = await callTool(b, "find_slots", { service_id: c.serviceId, date: day, limit: 1 });
    const slot = found.data.slots[0];
    const [x, y] = await Promise.all([
      callTool(a, "hold_slot", { slot_id: slot.slot_id, attendee_name: "A" }),
      callTool(b, "hold_slot", { slot_id: slot.slot_id, attendee_name: "B" }),
    ]);
    expect([x.isError, y.isError].sort()).toEqual([false, true]);
    const loser = x.isError ? x : y;
    const winner = x.isError ? y : x;
    expect(loser.data.error.reason).toBe("SLOT_UNAVAILABLE");
    // The retry of the winner's hold, sent to the other instance, finds the same hold.
    const winnerArgs = { slot_id: slot.slot_id, attendee_name: winner === x ? "A" : "B" };
    const retried = await callTool(winner === x ? b : a, "hold_slot", winnerArgs);
    expect(retried.data.booking.booking_id).toBe(winner.data.booking.booking_id);
    // Confirm on one instance, reschedule and cancel on the other.
    const id = winner.data.booking.booking_id;
    expect((await callTool(b, "confirm_booking", { booking_id: id })).data.booking.status).toBe(
      "confirmed",
    );
    const alt = loser.data.error.alternatives[0];
    const moved = await callTool(a, "reschedule_booking", { booking_id: id, slot_id: alt.slot_id });
    expect(moved.data.booking.start_time).toBe(alt.start_time);
    expect((await callTool(b, "cancel_booking", { booking_id: id })).data.booking.status).toBe(
      "cancelled",
    );
  });
});

describe("a call refused more than 32 times over", () => {
  it("is walked from its start by another process, which asks for an idempotency_key rather than risk a second hold", async () => {
    const c = await clinic(first.url);
    const web = await mcpOverHttp(first.url, c.key);
    const day = nyDate(5);
    const blocker = await callTool(web, "hold_slot", {
      service_id: c.serviceId,
      start_time: `${day}T09:00`,
      attendee_name: "X",
    });
    expect(blocker.isError, blocker.text).toBe(false);
    const args = { service_id: c.serviceId, start_time: `${day}T09:00`, attendee_name: "Ada" };
    // Each refusal is stored under its link of the chain; this instance
    // remembers where the chain goes on, so it keeps trying anew.
    for (let i = 0; i < 33; i++) {
      expect((await callTool(web, "hold_slot", args)).data.error.reason).toBe("SLOT_UNAVAILABLE");
    }
    // Another process knows none of that: it walks from the first link,
    // finds 32 stored refusals, and stops there.
    const stdio = await mcpOverStdio(first.url, c.key);
    const walked = await callTool(stdio, "hold_slot", args);
    expect(walked.data.error.reason).toBe("IDEMPOTENCY_KEY_REQUIRED");
    // With a key of its own the call is made: once the time is free, it holds.
    await callTool(web, "cancel_booking", { booking_id: blocker.data.booking.booking_id });
    const keyed = await callTool(stdio, "hold_slot", { ...args, idempotency_key: "ada-9am" });
    expect(keyed.isError, keyed.text).toBe(false);
    expect(keyed.data.booking.status).toBe("held");
  });
});

import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { expect } from "vitest";
import type { TestServer } from "./server.js";

/** What clients/typescript/examples/agent-flow.ts and clients/python/examples/agent_flow.py print. */
export type AgentFlow = {
  slotId: string;
  held: string;
  again: string;
  conflict: { reason: string; alternatives: string[] };
  invalid: { reason: string; fields: string[] };
  confirmed: string;
  cancelled: string;
  events: string[];
};

/**
 * The agent flow went as it must, whatever the client: the retried hold
 * is the same booking, the second caller learns the reason and free times
 * nearby, bad input names its field, the stream resumes after a cursor,
 * and the server holds exactly one booking, cancelled.
 */
export async function expectAgentFlow(
  flow: AgentFlow,
  server: TestServer,
  tenantId: string,
  status: (name: "CONFIRMED" | "CANCELLED") => string,
) {
  expect(flow.held).toMatch(/^bkg_/);
  expect(flow.again).toBe(flow.held);
  expect(flow.conflict.reason).toBe("SLOT_UNAVAILABLE");
  expect(flow.conflict.alternatives.length).toBeGreaterThan(0);
  expect(flow.conflict.alternatives).not.toContain(flow.slotId);
  expect(flow.invalid.reason).toBe("VALIDATION_ERROR");
  expect(flow.invalid.fields).toContain("time_zone");
  expect(flow.confirmed).toBe(status("CONFIRMED"));
  expect(flow.cancelled).toBe(status("CANCELLED"));
  expect(flow.events).toEqual(["booking.held", "booking.confirmed", "booking.cancelled"]);

  const { rows } = await server.pool.query("SELECT id, status FROM bookings WHERE tenant_id = $1", [
    tenantId,
  ]);
  expect(rows).toEqual([{ id: flow.held, status: "cancelled" }]);
  // Every mutation carried a key: the hold (once, then replayed), the refused hold, confirm, cancel.
  const keys = await server.pool.query(
    "SELECT method FROM idempotency_keys WHERE tenant_id = $1 ORDER BY create_time",
    [tenantId],
  );
  expect(keys.rows.map((k) => k.method)).toEqual([
    "holdfast.v1.BookingService/CreateHold",
    "holdfast.v1.BookingService/CreateHold",
    "holdfast.v1.BookingService/ConfirmBooking",
    "holdfast.v1.BookingService/CancelBooking",
  ]);
}

/** "holdfast.v1.BookingService", ... for every service in proto/holdfast/v1. */
export async function protoServices(): Promise<string[]> {
  const dir = "proto/holdfast/v1";
  const names: string[] = [];
  for (const file of await readdir(dir)) {
    const text = await readFile(join(dir, file), "utf8");
    for (const m of text.matchAll(/^service (\w+)/gm)) names.push(`holdfast.v1.${m[1]}`);
  }
  return names.sort();
}

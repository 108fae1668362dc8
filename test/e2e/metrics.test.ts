import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, rejected } from "../support/clients.js";
import { startTestServer } from "../support/server.js";

/** The samples of a Prometheus text exposition, by metric name with its labels. */
async function scrape(url: string): Promise<Map<string, number>> {
  const res = await fetch(`${url}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  const samples = new Map<string, number>();
  for (const line of (await res.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    samples.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return samples;
}

describe("GET /metrics", { timeout: 60_000 }, async () => {
  const server = await startTestServer();

  it("counts RPCs by service, method, code and protocol, and booking outcomes by operation and reason", async () => {
    const w = await bookingWorld(server.url);
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) };
    const overJson = clientFor(BookingService, server.url, w.key, "connect");
    const before = await scrape(server.url);
    const hold = await w.bookings.createHold(slot);
    await rejected(overJson.createHold(slot), Code.Aborted, "SLOT_UNAVAILABLE");
    await w.bookings.confirmBooking({ bookingId: hold.booking?.id as string });
    const after = await scrape(server.url);
    const grew = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);

    const rpc = (method: string, code: string, protocol: string) =>
      `holdfast_rpc_requests_total{service="holdfast.v1.BookingService",method="${method}",protocol="${protocol}",code="${code}"}`;
    expect(grew(rpc("CreateHold", "OK", "grpc"))).toBe(1);
    expect(grew(rpc("CreateHold", "Aborted", "connect"))).toBe(1);
    expect(grew(rpc("ConfirmBooking", "OK", "grpc"))).toBe(1);
    expect(
      grew(
        'holdfast_rpc_duration_seconds_count{service="holdfast.v1.BookingService",method="CreateHold",protocol="grpc"}',
      ),
    ).toBe(1);
    expect(grew('holdfast_booking_operations_total{operation="hold"}')).toBe(1);
    expect(grew('holdfast_booking_operations_total{operation="confirm"}')).toBe(1);
    expect(
      grew('holdfast_booking_rejections_total{method="CreateHold",reason="SLOT_UNAVAILABLE"}'),
    ).toBe(1);
    // The scrape's own call is not an RPC: nothing is left in flight.
    expect(
      after.get(
        'holdfast_rpc_in_flight{service="holdfast.v1.BookingService",method="CreateHold",protocol="grpc"}',
      ),
    ).toBe(0);
  });

  it("reports the pool, the event backlog, the sweeper and Node's process metrics, with no tenant label", async () => {
    const after = await scrape(server.url);
    expect(after.get('holdfast_db_pool_connections{state="total"}')).toBeGreaterThan(0);
    expect(after.has('holdfast_db_pool_connections{state="waiting"}')).toBe(true);
    expect(after.get("holdfast_outbox_head_seq")).toBeGreaterThan(0);
    for (const name of [
      "holdfast_webhook_dispatch_lag_events",
      "holdfast_webhook_dispatch_lag_seconds",
      "holdfast_webhook_deliveries_pending",
      "holdfast_webhook_deliveries_leased",
      "holdfast_sweeper_lag_seconds",
      "process_cpu_user_seconds_total",
      "nodejs_eventloop_lag_seconds",
    ]) {
      expect(after.get(name), name).toBeGreaterThanOrEqual(0);
    }
    expect([...after.keys()].filter((k) => k.includes("tenant"))).toEqual([]);
  });

  it("is absent with HOLDFAST_METRICS=false", async () => {
    const off = await startTestServer({ HOLDFAST_METRICS: "false" });
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });
});

import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { createHoldfastClient } from "../../src/client/index.js";
import { at, bookingWorld } from "../support/booking.js";
import { lossyProxy } from "../support/proxy.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

async function bookingsOf(tenantId: string): Promise<number> {
  const { rows } = await server.pool.query(
    "SELECT count(*)::int AS n FROM bookings WHERE tenant_id = $1",
    [tenantId],
  );
  return rows[0].n;
}

describe("the typed client", () => {
  it.each([
    "grpc",
    "connect",
  ] as const)("gives every mutation an Idempotency-Key (%s)", async (protocol) => {
    const w = await bookingWorld(server.url);
    const hf = createHoldfastClient({ baseUrl: server.url, apiKey: w.key, protocol });
    const { booking } = await hf.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
    });
    await hf.bookings.confirmBooking({ bookingId: booking?.id as string });
    await hf.bookings.getBooking({ bookingId: booking?.id as string });
    await hf.resources.createResource({ name: "Extra", timeZone: "UTC" });
    const { rows } = await server.pool.query(
      "SELECT method FROM idempotency_keys WHERE tenant_id = $1 ORDER BY create_time",
      [w.tenantId],
    );
    expect(rows.map((r) => r.method)).toEqual([
      "holdfast.v1.BookingService/CreateHold",
      "holdfast.v1.BookingService/ConfirmBooking",
      "holdfast.v1.ResourceService/CreateResource",
    ]);
  });

  it.each([
    "grpc",
    "connect",
  ] as const)("retries a call whose answer was lost with the same key: one booking, the stored answer (%s)", async (protocol) => {
    const w = await bookingWorld(server.url);
    const proxy = await lossyProxy(server.url, 2);
    try {
      const hf = createHoldfastClient({
        baseUrl: proxy.url,
        apiKey: w.key,
        protocol,
        initialBackoffMs: 50,
      });
      let replayed = false;
      const { booking } = await hf.bookings.createHold(
        { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 10) },
        {
          onHeader: (h) => {
            replayed = h.get("idempotent-replayed") === "true";
          },
        },
      );
      expect(proxy.connections()).toBeGreaterThanOrEqual(3);
      expect(replayed).toBe(true);
      expect(booking?.status).toBe(BookingStatus.HELD);
      expect(await bookingsOf(w.tenantId)).toBe(1);
      const { rows } = await server.pool.query("SELECT id FROM bookings WHERE tenant_id = $1", [
        w.tenantId,
      ]);
      expect(rows[0].id).toBe(booking?.id);
    } finally {
      await proxy.close();
    }
  });

  it("gives up after maxAttempts, and never retries business rejections", async () => {
    const w = await bookingWorld(server.url);
    const proxy = await lossyProxy(server.url, 100, 50);
    try {
      const hf = createHoldfastClient({
        baseUrl: proxy.url,
        apiKey: w.key,
        maxAttempts: 3,
        initialBackoffMs: 10,
      });
      const err = await hf.bookings
        .createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) })
        .catch((e: unknown) => ConnectError.from(e));
      // The connection broke every time: the last failure is passed on.
      expect([Code.Canceled, Code.Unavailable]).toContain((err as ConnectError).code);
      expect(proxy.connections()).toBe(3);
    } finally {
      await proxy.close();
    }
    const hf = createHoldfastClient({ baseUrl: server.url, apiKey: w.key });
    const before = Date.now();
    const conflict = await hf.bookings
      .createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) })
      .then(() =>
        hf.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) }),
      )
      .catch((e: unknown) => ConnectError.from(e));
    expect((conflict as ConnectError).code).toBe(Code.Aborted);
    expect(Date.now() - before).toBeLessThan(2_000);
  });
});

import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { createHoldfastClient } from "../../clients/typescript/src/index.js";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { protoServices } from "../support/agent-flow.js";
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

/**
 * A Connect server that answers every call with one error, with the
 * ErrorInfo detail every Holdfast error carries, counting the calls.
 */
async function answeringServer(status: number, code: string, answered?: () => void) {
  let requests = 0;
  const info = create(ErrorInfoSchema, { reason: code.toUpperCase(), domain: "holdfast" });
  const body = JSON.stringify({
    code,
    message: `answered ${code}`,
    details: [
      {
        type: ErrorInfoSchema.typeName,
        value: Buffer.from(toBinary(ErrorInfoSchema, info)).toString("base64"),
      },
    ],
  });
  const server = createServer((req, res) => {
    requests++;
    req.resume();
    res.writeHead(status, { "content-type": "application/json" });
    res.end(body, answered);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    requests: () => requests,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

describe("the typed client", () => {
  it("offers every service the proto declares", async () => {
    const w = await bookingWorld(server.url);
    const hf = createHoldfastClient({ baseUrl: server.url, apiKey: w.key });
    expect(Object.keys(hf)).toHaveLength((await protoServices()).length);
    const { urlPath } = await hf.calendarFeeds.createCalendarFeed({ resourceId: w.resourceId });
    const feed = await fetch(new URL(urlPath, server.url));
    expect(feed.status).toBe(200);
    expect(await feed.text()).toMatch(/^BEGIN:VCALENDAR/);
  });

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
      // The connection broke every time: the last failure is passed on. How a
      // cut shows depends on when it lands (stream reset, refused, or "socket
      // hang up"), but it never carries the server's ErrorInfo.
      expect([Code.Canceled, Code.Unavailable, Code.Aborted]).toContain((err as ConnectError).code);
      expect((err as ConnectError).findDetails(ErrorInfoSchema)).toHaveLength(0);
      expect(proxy.connections()).toBe(3);
    } finally {
      await proxy.close();
    }
    // A business rejection is answered once: the server sees one request.
    const refusing = await answeringServer(409, "aborted");
    try {
      const hf = createHoldfastClient({
        baseUrl: refusing.url,
        apiKey: "hf_test",
        protocol: "connect",
        maxAttempts: 5,
        initialBackoffMs: 10,
      });
      const conflict = await hf.bookings
        .createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) })
        .catch((e: unknown) => ConnectError.from(e));
      expect((conflict as ConnectError).code).toBe(Code.Aborted);
      expect(refusing.requests()).toBe(1);
    } finally {
      await refusing.close();
    }
  });

  it("stops waiting to retry when the caller gives up", async () => {
    // A server that is always unavailable, at once; the caller aborts just
    // after the first answer, while the client waits to retry.
    let controller = new AbortController();
    const down = await answeringServer(503, "unavailable", () => {
      const caller = controller;
      setTimeout(() => caller.abort(), 20);
    });
    try {
      const hf = createHoldfastClient({
        baseUrl: down.url,
        apiKey: "hf_test",
        protocol: "connect",
        maxAttempts: 5,
        initialBackoffMs: 60_000,
      });
      const hold = { serviceId: "svc_1", resourceId: "rsc_1", ...at(1, 12) };
      // The retry's wait is at least a second (half the longest backoff):
      // a call still pending after 900 ms did not hear the caller.
      const outcome = (call: Promise<unknown>) =>
        Promise.race([
          call.then(
            () => "answered",
            (e: unknown) => ConnectError.from(e).code,
          ),
          new Promise((resolve) => setTimeout(() => resolve("still waiting"), 900)),
        ]);
      expect(await outcome(hf.bookings.createHold(hold, { signal: controller.signal }))).toBe(
        Code.Canceled,
      );
      controller = new AbortController();
      expect(await outcome(hf.bookings.createHold(hold, { timeoutMs: 300 }))).toBe(
        Code.DeadlineExceeded,
      );
      expect(down.requests()).toBe(2);
    } finally {
      await down.close();
    }
  });
});

// How much one answer may hold, and for how long, against a real server:
// ListEvents' largest page, and an answer its client stops reading.
import * as http2 from "node:http2";
import { beforeAll, describe, expect, it } from "vitest";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { bookingWorld } from "../support/booking.js";
import { clientFor, postJson } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let world: Awaited<ReturnType<typeof bookingWorld>>;

beforeAll(async () => {
  // A client that leaves an answer unread is cut off after twice this.
  server = await startTestServer({ HOLDFAST_STREAM_MAX_LAG_MS: "200" });
  world = await bookingWorld(server.url);
  // 150 events with the largest metadata a booking may carry (16 KB).
  await server.pool.query(
    `INSERT INTO outbox (tenant_id, type, booking_id, resource_id, service_id, payload)
     SELECT $1, 'booking.held', 'bkg_' || g, $2, $3, jsonb_build_object('booking', jsonb_build_object('id', 'bkg_' || g,
              'metadata', jsonb_build_object('padding', repeat('x', 16000))))
     FROM generate_series(1, 150) AS g`,
    [world.tenantId, world.resourceId, world.serviceId],
  );
});

const LIST_EVENTS = "holdfast.v1.EventService/ListEvents";

describe("ListEvents' page", () => {
  it("is at most 100 events: a larger page_size is lowered to it", async () => {
    const events = clientFor(EventService, server.url, world.key);
    const first = await events.listEvents({ pageSize: 1000 });
    expect(first.events).toHaveLength(100);
    const rest = await events.listEvents({ after: first.nextCursor, pageSize: 1000 });
    // The world's own events (its catalog's) come before the 150 inserted.
    expect(first.events.length + rest.events.length).toBeGreaterThanOrEqual(150);
    expect(rest.events.length).toBeLessThan(100);
  });
});

describe("an answer its client does not read", () => {
  it("over HTTP/2 is reset, and the server goes on serving", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      const stalled = session.request({
        ":method": "POST",
        ":path": `/${LIST_EVENTS}`,
        "content-type": "application/json",
        authorization: `Bearer ${world.key}`,
      });
      stalled.on("error", () => {});
      stalled.end(JSON.stringify({ pageSize: 100 }));
      const status = await new Promise((resolve) =>
        stalled.once("response", (h) => resolve(h[":status"])),
      );
      expect(status).toBe(200);
      // Never read: the stream's window fills and the server's write waits.
      stalled.pause();
      const code = await new Promise<number | undefined>((resolve) => {
        setTimeout(() => resolve(undefined), 15_000);
        stalled.once("close", () => resolve(stalled.rstCode));
      });
      expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    } finally {
      session.destroy();
    }
    const again = await postJson(server.url, LIST_EVENTS, { pageSize: 100 }, world.key);
    expect(again.status).toBe(200);
  });
});

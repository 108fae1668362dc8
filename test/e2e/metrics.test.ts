import { readFileSync } from "node:fs";
import * as http2 from "node:http2";
import { type AddressInfo, createServer } from "node:net";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it, vi } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { EventService, WatchEventsRequestSchema } from "../../gen/holdfast/v1/event_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { loadConfig, StartError } from "../../src/config.js";
import { log } from "../../src/log.js";
import { startHoldfast } from "../../src/server.js";
import { at, bookingWorld, seconds, sleep } from "../support/booking.js";
import {
  clientFor,
  envelope,
  rawConnect,
  rawGrpc,
  rawGrpcWeb,
  rejected,
} from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import { webhookReceiver } from "../support/receiver.js";
import { ADMIN_KEY, startTestServer } from "../support/server.js";

/** Scrapes until `done` holds of the samples (or 15 s pass), and returns the last scrape. */
async function scrapeUntil(
  url: string,
  done: (s: Map<string, number>) => boolean,
): Promise<Map<string, number>> {
  let s = await scrape(url);
  for (let i = 0; i < 300 && !done(s); i++) {
    await sleep(50);
    s = await scrape(url);
  }
  return s;
}

/**
 * A gRPC WatchEvents call whose client grants the server no flow-control
 * window: the server can send it nothing until `open()`. Counts the bytes it got.
 */
function stalledWatch(url: string, key: string) {
  const session = http2.connect(url, { settings: { initialWindowSize: 0 } });
  const stream = session.request({
    ":method": "POST",
    ":path": "/holdfast.v1.EventService/WatchEvents",
    "content-type": "application/grpc",
    te: "trailers",
    authorization: `Bearer ${key}`,
  });
  let bytes = 0;
  stream.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  stream.on("error", () => {});
  stream.end(
    envelope(
      toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema, { fromBeginning: true })),
    ),
  );
  return {
    received: () => bytes,
    open: () => session.settings({ initialWindowSize: 65_535 }),
    close: () => {
      stream.close(http2.constants.NGHTTP2_CANCEL);
      session.close();
    },
  };
}

describe("GET /metrics", { timeout: 60_000 }, async () => {
  const server = await startTestServer({
    HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
    HOLDFAST_WEBHOOK_RETRY_SCHEDULE: "200ms",
    HOLDFAST_WEBHOOK_TIMEOUT_MS: "1000",
  });

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
    // The write's SQL call is timed once per call, by how it ended.
    const write = (name: string, result: string) =>
      grew(`holdfast_booking_write_duration_seconds_count{write="${name}",result="${result}"}`);
    expect(write("create_booking", "written")).toBe(1);
    expect(write("create_booking", "refused")).toBe(1);
    expect(write("change_booking", "written")).toBe(1);
    // The scrape's own call is not an RPC: nothing is left in flight.
    expect(
      after.get(
        'holdfast_rpc_in_flight{service="holdfast.v1.BookingService",method="CreateHold",protocol="grpc"}',
      ),
    ).toBe(0);
  });

  it("times a replayed write apart, and counts holds the sweeper expires", async () => {
    const w = await bookingWorld(server.url);
    const before = await scrape(server.url);
    const key = { headers: { "Idempotency-Key": "metrics-replay" } };
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(2, 9), ttl: seconds(1) };
    await w.bookings.createHold(slot, key);
    await w.bookings.createHold(slot, key);
    const expired = (s: Map<string, number>) =>
      (s.get("holdfast_holds_expired_total") ?? 0) -
      (before.get("holdfast_holds_expired_total") ?? 0);
    const after = await scrapeUntil(server.url, (s) => expired(s) >= 1);
    const grew = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(
      grew(
        'holdfast_booking_write_duration_seconds_count{write="create_booking",result="written"}',
      ),
    ).toBe(1);
    expect(
      grew(
        'holdfast_booking_write_duration_seconds_count{write="create_booking",result="replayed"}',
      ),
    ).toBe(1);
    expect(expired(after)).toBe(1);
  });

  it("counts webhook attempts by result, times them by response, and shows deliveries pending and leased", async () => {
    const w = await bookingWorld(server.url);
    const webhooks = clientFor(WebhookService, server.url, w.key);
    const ok = await webhookReceiver({ secrets: () => [] });
    const failing = await webhookReceiver({ secrets: () => [], respond: () => 500 });
    // Hangs the first attempt (it times out), answers the second.
    const slow = await webhookReceiver({
      secrets: () => [],
      respond: (n) => (n === 1 ? "hang" : 200),
    });
    try {
      for (const r of [ok, failing, slow]) {
        await webhooks.createWebhook({ url: r.url(), eventTypes: ["booking.held"] });
      }
      const before = await scrape(server.url);
      const grew = (s: Map<string, number>, name: string) =>
        (s.get(name) ?? 0) - (before.get(name) ?? 0);
      const attempts = (result: string) => `holdfast_webhook_attempts_total{result="${result}"}`;
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9),
      });

      // While the slow endpoint hangs, its delivery is pending and leased.
      const hanging = await scrapeUntil(
        server.url,
        (s) =>
          slow.received.length === 1 && (s.get("holdfast_webhook_deliveries_leased") ?? 0) >= 1,
      );
      expect(slow.received.length).toBe(1);
      expect(hanging.get("holdfast_webhook_deliveries_leased")).toBeGreaterThanOrEqual(1);
      expect(hanging.get("holdfast_webhook_deliveries_pending")).toBeGreaterThanOrEqual(1);
      expect(hanging.get("holdfast_webhook_delivery_lag_seconds")).toBeGreaterThan(0);

      const after = await scrapeUntil(
        server.url,
        (s) => grew(s, attempts("delivered")) >= 2 && grew(s, attempts("given_up")) >= 1,
      );
      expect(grew(after, attempts("delivered"))).toBe(2);
      expect(grew(after, attempts("retrying"))).toBe(2);
      expect(grew(after, attempts("given_up"))).toBe(1);
      const responses = (r: string) =>
        grew(after, `holdfast_webhook_attempt_duration_seconds_count{response="${r}"}`);
      expect([responses("2xx"), responses("5xx"), responses("timeout")]).toEqual([2, 2, 1]);
      expect(ok.received.length).toBe(1);
      expect(failing.received.length).toBe(2);
      expect(after.get("holdfast_webhook_deliveries_pending")).toBe(0);
      expect(after.get("holdfast_webhook_deliveries_leased")).toBe(0);
      expect(after.get("holdfast_webhook_delivery_lag_seconds")).toBe(0);
    } finally {
      for (const r of [ok, failing, slow]) await r.stop();
    }
  });

  it("counts live WatchEvents streams and how far the one furthest behind is", async () => {
    const w = await bookingWorld(server.url);
    // More events than the server buffers for a stream that takes nothing.
    await server.pool.query(
      `INSERT INTO outbox (tenant_id, type, payload)
       SELECT $1, 'webhook.disabled', jsonb_build_object('webhookId', 'wh_metrics', 'detail', repeat('x', 1000))
       FROM generate_series(1, 200)`,
      [w.tenantId],
    );
    const before = await scrape(server.url);
    expect(before.get("holdfast_event_streams")).toBe(0);
    expect(before.get("holdfast_event_stream_lag_events")).toBe(0);
    expect(before.get("holdfast_event_stream_lag_seconds")).toBe(0);

    const watch = stalledWatch(server.url, w.key);
    try {
      const stalled = await scrapeUntil(
        server.url,
        (s) => (s.get("holdfast_event_stream_lag_events") ?? 0) > 0,
      );
      expect(stalled.get("holdfast_event_streams")).toBe(1);
      expect(stalled.get("holdfast_event_stream_lag_events")).toBeGreaterThan(0);
      expect(stalled.get("holdfast_event_stream_lag_events")).toBeLessThanOrEqual(200);
      expect(stalled.get("holdfast_event_stream_lag_seconds")).toBeGreaterThan(0);
      expect(watch.received()).toBe(0);

      watch.open();
      const caughtUp = await scrapeUntil(
        server.url,
        (s) => s.get("holdfast_event_stream_lag_events") === 0,
      );
      // Every event arrived: 200 messages of more than 1000 bytes.
      expect(watch.received()).toBeGreaterThan(200 * 1000);
      expect(caughtUp.get("holdfast_event_streams")).toBe(1);
      expect(caughtUp.get("holdfast_event_stream_lag_events")).toBe(0);
      expect(caughtUp.get("holdfast_event_stream_lag_seconds")).toBe(0);
    } finally {
      watch.close();
    }
    const closed = await scrapeUntil(server.url, (s) => s.get("holdfast_event_streams") === 0);
    expect(closed.get("holdfast_event_streams")).toBe(0);
  });

  it("counts the calls the edge refuses before the framework runs, in every protocol", async () => {
    const w = await bookingWorld(server.url);
    const auth = { authorization: `Bearer ${w.key}` };
    const before = await scrape(server.url);
    const procedure = "holdfast.v1.BookingService/CreateHold";
    const refusals = [
      await rawGrpc(server.url, procedure, Buffer.from([0, 0, 0, 0, 3, 0xff, 0xff, 0xff]), auth),
      await rawGrpcWeb(server.url, procedure, Buffer.from([0, 0, 0]), auth),
      await rawConnect(server.url, procedure, '{"serviceID": "x"}', {
        ...auth,
        "content-type": "application/json",
      }),
      await rawConnect(server.url, procedure, "{}", { ...auth, "content-type": "text/plain" }),
    ];
    expect(refusals.map((r) => r.reason)).toEqual([
      "MALFORMED_REQUEST",
      "MALFORMED_REQUEST",
      "MALFORMED_REQUEST",
      "UNSUPPORTED_CONTENT_TYPE",
    ]);
    const after = await scrape(server.url);
    const grew = (protocol: string) => {
      const name = `holdfast_rpc_requests_total{service="holdfast.v1.BookingService",method="CreateHold",protocol="${protocol}",code="InvalidArgument"}`;
      return (after.get(name) ?? 0) - (before.get(name) ?? 0);
    };
    expect([grew("grpc"), grew("grpc-web"), grew("connect")]).toEqual([1, 1, 2]);
    expect(
      after.get(
        'holdfast_rpc_in_flight{service="holdfast.v1.BookingService",method="CreateHold",protocol="grpc"}',
      ),
    ).toBe(0);
  });

  it("counts a stream its caller closes or resets part way as Canceled, never as a server fault", async () => {
    const w = await bookingWorld(server.url);
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 10) });
    const before = await scrape(server.url);
    const protocols = ["connect", "grpc", "grpc-web"] as const;
    for (const protocol of protocols) {
      const events = clientFor(EventService, server.url, w.key, protocol);
      const stop = new AbortController();
      const stream = events.watchEvents({ fromBeginning: true }, { signal: stop.signal });
      for await (const _ of stream) {
        // One event read, then the caller goes away.
        stop.abort();
        break;
      }
    }
    // A caller that resets its stream with an error code, as Node clients
    // do when they exit or destroy a stream with an error (INTERNAL_ERROR),
    // which connect-node reads as Internal: the reset is still the caller's.
    const errors = vi.spyOn(log, "error");
    const resets = [http2.constants.NGHTTP2_INTERNAL_ERROR, http2.constants.NGHTTP2_PROTOCOL_ERROR];
    try {
      for (const code of resets) {
        const session = http2.connect(server.url);
        session.on("error", () => {});
        const stream = session.request({
          ":method": "POST",
          ":path": "/holdfast.v1.EventService/WatchEvents",
          "content-type": "application/grpc+proto",
          te: "trailers",
          authorization: `Bearer ${w.key}`,
        });
        stream.on("error", () => {});
        const firstEvent = new Promise((resolve) => stream.once("data", resolve));
        stream.end(
          envelope(
            toBinary(
              WatchEventsRequestSchema,
              create(WatchEventsRequestSchema, { fromBeginning: true }),
            ),
          ),
        );
        await firstEvent;
        stream.close(code);
        session.close();
      }
      const watch = (protocol: string, code: string) =>
        `holdfast_rpc_requests_total{service="holdfast.v1.EventService",method="WatchEvents",protocol="${protocol}",code="${code}"}`;
      const canceled = { connect: 1, grpc: 1 + resets.length, "grpc-web": 1 };
      const counted = (s: Map<string, number>, p: (typeof protocols)[number]) =>
        (s.get(watch(p, "Canceled")) ?? 0) - (before.get(watch(p, "Canceled")) ?? 0);
      const after = await scrapeUntil(server.url, (s) =>
        protocols.every((p) => counted(s, p) >= canceled[p]),
      );
      for (const protocol of protocols) {
        expect(after.get(watch(protocol, "Internal")) ?? 0, protocol).toBe(0);
        expect(counted(after, protocol), protocol).toBe(canceled[protocol]);
      }
      // Nor is it logged as a fault of the server.
      expect(errors.mock.calls.map(([msg]) => msg)).toEqual([]);
    } finally {
      errors.mockRestore();
    }
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
      "holdfast_webhook_delivery_lag_seconds",
      "holdfast_sweeper_lag_seconds",
      "holdfast_event_streams",
      "holdfast_event_stream_lag_events",
      "holdfast_event_stream_lag_seconds",
      "holdfast_metrics_db_read_failures_total",
      "process_cpu_user_seconds_total",
      "nodejs_eventloop_lag_seconds",
    ]) {
      expect(after.get(name), name).toBeGreaterThanOrEqual(0);
    }
    expect([...after.keys()].filter((k) => k.includes("tenant"))).toEqual([]);
  });

  it("documents every holdfast_* metric it serves in the README, and serves every one documented", async () => {
    const text = await (await fetch(`${server.url}/metrics`)).text();
    const served = new Set([...text.matchAll(/^# TYPE (holdfast_\w+) /gm)].map((m) => m[1]));
    const readme = readFileSync("README.md", "utf8");
    const table = readme.slice(readme.indexOf("### Metrics"), readme.indexOf("### Logs"));
    const documented = new Set([...table.matchAll(/^\| `(holdfast_\w+)` \|/gm)].map((m) => m[1]));
    expect(served.size).toBeGreaterThan(10);
    expect([...served].sort()).toEqual([...documented].sort());
  });

  it("answers within its bound when the database does not, counting the failed read", async () => {
    const before = await scrape(server.url);
    // A session holding the outbox locked: the scrape's query waits for it until its timeout.
    const blocker = await server.pool.connect();
    try {
      await blocker.query("BEGIN");
      await blocker.query("LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE");
      const during = await scrape(server.url);
      expect(
        (during.get("holdfast_metrics_db_read_failures_total") ?? 0) -
          (before.get("holdfast_metrics_db_read_failures_total") ?? 0),
      ).toBe(1);
      // The rest of the scrape is there.
      expect(during.get('holdfast_db_pool_connections{state="total"}')).toBeGreaterThan(0);
      expect(during.get("holdfast_outbox_head_seq")).toBe(before.get("holdfast_outbox_head_seq"));
    } finally {
      await blocker.query("ROLLBACK");
      blocker.release();
    }
  });

  it("is absent with HOLDFAST_METRICS=false", async () => {
    const off = await startTestServer({ HOLDFAST_METRICS: "false" });
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });
});

describe("HOLDFAST_METRICS_PORT", { timeout: 60_000 }, async () => {
  // The sweeper passes once at start, then not for a minute: a lapsed hold stays unmarked.
  const server = await startTestServer({
    HOLDFAST_METRICS_PORT: "0",
    HOLDFAST_SWEEP_INTERVAL_MS: "60000",
  });
  const ops = `http://127.0.0.1:${server.metricsPort}`;

  it("serves /metrics, /healthz and /readyz on its own port, and /metrics no longer on the main one", async () => {
    expect(server.metricsPort).toBeGreaterThan(0);
    expect(server.metricsPort).not.toBe(server.port);
    const samples = await scrape(ops);
    expect(samples.get('holdfast_db_pool_connections{state="total"}')).toBeGreaterThan(0);
    expect((await fetch(`${ops}/healthz`)).status).toBe(200);
    const ready = await fetch(`${ops}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ status: "ready" });
    expect((await fetch(`${ops}/holdfast.v1.BookingService/CreateHold`)).status).toBe(404);
    expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it("shows the sweeper's lag while a lapsed hold waits to be marked expired", async () => {
    const w = await bookingWorld(server.url);
    await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
      ttl: seconds(1),
    });
    const lagging = await scrapeUntil(ops, (s) => (s.get("holdfast_sweeper_lag_seconds") ?? 0) > 0);
    expect(lagging.get("holdfast_sweeper_lag_seconds")).toBeGreaterThan(0);
    expect(lagging.get("holdfast_holds_expired_total")).toBe(0);
  });
});

describe("HOLDFAST_METRICS_PORT taken", () => {
  it("stops the start, naming the variable, and frees the main port", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const main = createServer();
    await new Promise<void>((resolve) => main.listen(0, "127.0.0.1", resolve));
    const mainPort = (main.address() as AddressInfo).port;
    await new Promise<void>((resolve) => main.close(() => resolve()));
    try {
      const config = loadConfig({
        PORT: String(mainPort),
        HOLDFAST_ADMIN_KEY: ADMIN_KEY,
        HOLDFAST_LOG_LEVEL: "error",
        HOLDFAST_METRICS_PORT: String((taken.address() as AddressInfo).port),
      });
      const start = startHoldfast(config, await freshDatabase());
      await expect(start).rejects.toThrow(StartError);
      await expect(start).rejects.toThrow("choose another HOLDFAST_METRICS_PORT");
      // The main port was bound first and is free again.
      const again = createServer();
      await new Promise<void>((resolve, reject) => {
        again.once("error", reject);
        again.listen(mainPort, "127.0.0.1", resolve);
      });
      await new Promise<void>((resolve) => again.close(() => resolve()));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});

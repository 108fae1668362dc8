import { randomBytes } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, describe, expect, it, vi } from "vitest";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, postJson } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { otlpReceiver, type ReceivedSpan } from "../support/otlp.js";
import { spawnServer } from "../support/process.js";
import { webhookReceiver } from "../support/receiver.js";
import { ADMIN_KEY } from "../support/server.js";

/**
 * Tracing through a running server process (what `npm start` runs): with
 * OTEL_EXPORTER_OTLP_ENDPOINT at a local OTLP receiver, a CreateHold over
 * gRPC and one over Connect JSON, each with a caller's traceparent, give
 * span trees that continue the caller's trace down to the Postgres
 * queries, and the webhook each hold causes, sent later by the dispatcher,
 * joins the same trace. With no OTEL variables nothing is traced.
 */

const SERVER = 2;
const CLIENT = 3;

/** A caller's W3C traceparent, sampled. */
function callerTrace() {
  const traceId = randomBytes(16).toString("hex");
  const spanId = randomBytes(8).toString("hex");
  return { traceId, spanId, traceparent: `00-${traceId}-${spanId}-01` };
}

const env = async () => ({
  DATABASE_URL: await freshDatabase(),
  PORT: "0",
  HOLDFAST_ADMIN_KEY: ADMIN_KEY,
  HOLDFAST_LOG_LEVEL: "info",
  HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
});

/** The JSON lines a server wrote. */
const logLines = (stderr: string) =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);

/** A world with a webhook for booking.held, and a receiver for it. */
async function heldHooks(url: string) {
  const w = await bookingWorld(url);
  let secret = "";
  const receiver = await webhookReceiver({ secrets: () => [secret] });
  const created = await clientFor(WebhookService, url, w.key).createWebhook({
    url: receiver.url(),
    eventTypes: ["booking.held"],
  });
  secret = created.secret;
  return { w, receiver };
}

const holdJson = (w: { serviceId: string; resourceId: string }, startMs: number) => ({
  serviceId: w.serviceId,
  resourceId: w.resourceId,
  startTime: new Date(startMs).toISOString(),
  endTime: new Date(startMs + 30 * 60_000).toISOString(),
  attendee: { name: "Ada" },
});

describe("tracing on: OTLP export", { timeout: 180_000 }, async () => {
  const otlp = await otlpReceiver();
  const server = await spawnServer({
    ...(await env()),
    OTEL_EXPORTER_OTLP_ENDPOINT: otlp.url,
    OTEL_SERVICE_NAME: "holdfast-under-test",
    OTEL_BSP_SCHEDULE_DELAY: "100",
  });
  afterAll(async () => {
    await server.stop();
    await otlp.close();
  });

  it("continues the caller's trace over gRPC and Connect JSON, down to Postgres and on to the webhook", async () => {
    const { w, receiver } = await heldHooks(server.url);
    const overGrpc = callerTrace();
    const slot1 = at(1, 9);
    const { booking } = await w.bookings.createHold(
      {
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        startTime: slot1.startTime,
        endTime: slot1.endTime,
      },
      { headers: { traceparent: overGrpc.traceparent } },
    );
    const overJson = callerTrace();
    const held = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      holdJson(w, at(1, 11).startMs),
      w.key,
      { traceparent: overJson.traceparent },
    );
    expect(held.status).toBe(200);
    const bookingIds = [booking?.id as string, (held.body.booking as { id: string }).id];

    // The receiver gets each hold's webhook, with a traceparent in the hold's trace.
    const hooks = await receiver.waitFor((r) => r.length >= 2);
    await receiver.stop();
    const hookOf = (id: string) => {
      const hook = hooks.find((h) => h.body.includes(id));
      expect(hook, `a webhook for ${id}`).toBeDefined();
      const [version, traceId, spanId, flags] = String(hook?.headers.traceparent).split("-");
      expect(version).toBe("00");
      expect(flags).toBe("01");
      return { traceId, spanId };
    };

    // A delivery's span ends last: after its POST, and the queries recording it.
    const spans = await otlp.waitFor(
      (s) => s.filter((x) => x.name === "webhook delivery").length >= 2,
    );
    expect(otlp.requests.every((r) => r.path === "/v1/traces")).toBe(true);
    expect(otlp.requests[0]?.contentType).toBe("application/x-protobuf");

    const cases = [
      { caller: overGrpc, system: "grpc", bookingId: bookingIds[0] as string },
      { caller: overJson, system: "connect_rpc", bookingId: bookingIds[1] as string },
    ];
    for (const { caller, system, bookingId } of cases) {
      const trace = spans.filter((s) => s.traceId === caller.traceId);
      const rpc = trace.find((s) => s.kind === SERVER) as ReceivedSpan;
      expect(rpc, `the ${system} call's span`).toBeDefined();
      expect(rpc).toMatchObject({
        name: "holdfast.v1.BookingService/CreateHold",
        parentSpanId: caller.spanId,
        scope: "holdfast",
      });
      expect(rpc.attributes).toMatchObject({
        "rpc.system": system,
        "rpc.service": "holdfast.v1.BookingService",
        "rpc.method": "CreateHold",
        "rpc.response.status_code": "OK",
        "holdfast.tenant.id": w.tenantId,
      });
      if (system === "grpc") expect(rpc.attributes["rpc.grpc.status_code"]).toBe(0);
      expect(rpc.resource["service.name"]).toBe("holdfast-under-test");

      // Postgres queries are its children, the booking write among them.
      const queries = trace.filter(
        (s) => s.scope === "@opentelemetry/instrumentation-pg" && s.parentSpanId === rpc.spanId,
      );
      expect(queries.some((q) => q.name.startsWith("pg.query:create_booking_traced"))).toBe(true);
      // No values: attendees' contact data never reaches a span.
      expect(JSON.stringify(queries)).not.toContain("Ada");

      // The webhook, sent later by the dispatcher, is in the same trace: a
      // delivery span under the call that wrote the event, and the POST
      // under it, whose span id the receiver got.
      const hook = hookOf(bookingId);
      expect(hook.traceId).toBe(caller.traceId);
      const delivery = trace.find((s) => s.name === "webhook delivery") as ReceivedSpan;
      expect(delivery).toMatchObject({ parentSpanId: rpc.spanId });
      expect(delivery.attributes["holdfast.event.type"]).toBe("booking.held");
      const post = trace.find((s) => s.name === "POST" && s.kind === CLIENT) as ReceivedSpan;
      expect(post).toMatchObject({ parentSpanId: delivery.spanId, spanId: hook.spanId });
      expect(post.attributes).toMatchObject({
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
      });
      // Nothing else joined the trace: background work (the dispatcher
      // that the write woke, its leases) is in no call's trace. Every span
      // hangs from the call; the only ones below the call's own children are
      // a connection the pool opened for it (pg-pool.connect, pg.connect).
      const inTrace = new Set([caller.spanId, ...trace.map((s) => s.spanId)]);
      expect(trace.filter((s) => !inTrace.has(s.parentSpanId)).map((s) => s.name)).toEqual([]);
      const parents = new Set([caller.spanId, rpc.spanId, delivery.spanId]);
      expect(
        trace
          .filter((s) => !parents.has(s.parentSpanId))
          .map((s) => s.name)
          .filter((name) => !/^pg(-pool)?\.connect\b/.test(name)),
      ).toEqual([]);
      expect(
        trace
          .filter((s) => s.parentSpanId === delivery.spanId && s.name.startsWith("pg.query"))
          .map((s) => s.name.split(" ")[0]),
        "the attempt recorded",
      ).toEqual(["pg.query:record_delivered"]);
    }

    // Polling (the sweeper, webhook leases, the dispatcher) makes no traces of its own.
    const traces = new Set(spans.map((s) => s.traceId));
    expect(traces.size).toBe(
      new Set(spans.filter((s) => s.kind === SERVER).map((s) => s.traceId)).size,
    );

    // The request log names each call's trace and span.
    const holds = logLines(server.stderr()).filter(
      (l) => l.msg === "rpc" && l.procedure === "holdfast.v1.BookingService/CreateHold",
    );
    expect(holds.map((l) => l.trace_id)).toEqual([overGrpc.traceId, overJson.traceId]);
    for (const l of holds) {
      const rpc = spans.find((s) => s.traceId === l.trace_id && s.kind === SERVER);
      expect(l.span_id).toBe(rpc?.spanId);
    }
  });

  it("starts a trace of its own for a call without traceparent, and marks a refusal", async () => {
    const w = await bookingWorld(server.url);
    const refused = await postJson(
      server.url,
      "holdfast.v1.BookingService/GetBooking",
      { bookingId: "bkg_nope" },
      w.key,
    );
    expect(refused.status).toBe(404);
    const spans = await otlp.waitFor((s) =>
      s.some((x) => x.attributes["rpc.method"] === "GetBooking"),
    );
    const rpc = spans.find((x) => x.attributes["rpc.method"] === "GetBooking") as ReceivedSpan;
    expect(rpc.parentSpanId).toBe("");
    expect(rpc.attributes).toMatchObject({
      "rpc.system": "connect_rpc",
      "rpc.response.status_code": "NOT_FOUND",
      "rpc.connect_rpc.error_code": "not_found",
      "holdfast.reason": "BOOKING_NOT_FOUND",
    });
    // The caller's mistake, not the server's: the span's status stays unset.
    expect(rpc.statusCode).toBe(0);
  });
});

describe("tracing off: no OTEL variables", { timeout: 180_000 }, async () => {
  const server = await spawnServer(await env());
  afterAll(() => server.stop());

  it("starts no SDK: no trace ids in logs, no traceparent on webhooks", async () => {
    const { w, receiver } = await heldHooks(server.url);
    const caller = callerTrace();
    const held = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      holdJson(w, at(1, 9).startMs),
      w.key,
      { traceparent: caller.traceparent },
    );
    expect(held.status).toBe(200);
    const hooks = await receiver.waitFor((r) => r.length >= 1);
    await receiver.stop();
    expect(hooks[0]?.headers.traceparent).toBeUndefined();
    const lines = logLines(server.stderr());
    const hold = lines.find((l) => l.procedure === "holdfast.v1.BookingService/CreateHold");
    expect(hold).toBeDefined();
    expect(lines.some((l) => "trace_id" in l || "span_id" in l)).toBe(false);
    expect(server.stderr()).not.toContain("tracing:");
  });
});

describe("a collector that refuses the export", { timeout: 60_000 }, async () => {
  // It answers 401 with a long body, as a collector may echo what it was sent.
  const echo = "unauthorized: ".padEnd(20_000, "x");
  const collector = createServer((req, res) => {
    req.resume();
    req.on("end", () => res.writeHead(401, { "content-type": "text/plain" }).end(echo));
  });
  await new Promise<void>((resolve) => collector.listen(0, "127.0.0.1", resolve));
  const server = await spawnServer({
    ...(await env()),
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${(collector.address() as AddressInfo).port}`,
    OTEL_BSP_SCHEDULE_DELAY: "100",
  });
  afterAll(async () => {
    await server.stop();
    collector.close();
  });

  it("is logged outside any call's trace, its answer clipped", async () => {
    const caller = callerTrace();
    const w = await bookingWorld(server.url);
    await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      holdJson(w, at(2, 9).startMs),
      w.key,
      { traceparent: caller.traceparent },
    );
    let failures: Record<string, unknown>[] = [];
    await vi.waitFor(
      () => {
        failures = logLines(server.stderr()).filter((l) => String(l.msg).startsWith("tracing:"));
        expect(failures.length).toBeGreaterThan(0);
      },
      { timeout: 20_000, interval: 100 },
    );
    for (const l of failures) {
      expect(l.trace_id).toBeUndefined();
      expect(JSON.stringify(l).length).toBeLessThan(4_000);
    }
  });
});

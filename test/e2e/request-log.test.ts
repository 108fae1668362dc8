import * as http2 from "node:http2";
import { createConnection } from "node:net";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, describe, expect, it } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { clientFor, postJson, rejected } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import { spawnServer } from "../support/process.js";
import { webhookReceiver } from "../support/receiver.js";
import { ADMIN_KEY } from "../support/server.js";

describe("request logs", { timeout: 120_000 }, async () => {
  const server = await spawnServer({
    DATABASE_URL: await freshDatabase(),
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    HOLDFAST_LOG_LEVEL: "debug",
    HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
  });
  afterAll(() => server.stop());

  it("write one JSON line per RPC and none of the secrets of an agent's whole flow", async () => {
    const secrets: string[] = [ADMIN_KEY];
    const w = await bookingWorld(server.url);
    secrets.push(w.key);
    const agentKey = (
      await clientFor(KeyService, server.url, w.key).createApiKey({
        scopes: ["bookings.read", "bookings.write", "catalog.read"],
        description: "booking agent",
      })
    ).apiKey;
    secrets.push(agentKey);
    let webhookSecret = "";
    const receiver = await webhookReceiver({ secrets: () => [webhookSecret] });
    const created = await clientFor(WebhookService, server.url, w.key).createWebhook({
      url: receiver.url(),
      eventTypes: ["booking.held", "booking.confirmed", "booking.cancelled"],
    });
    webhookSecret = created.secret;
    secrets.push(webhookSecret);

    const attendee = {
      name: "Grace Hopper",
      email: "grace.hopper.4711@example.com",
      phone: "+1 202 555 0147",
    };
    secrets.push(attendee.email, attendee.phone);
    const agent = clientFor(BookingService, server.url, agentKey, "connect");
    const slot = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) };
    const { booking } = await agent.createHold({ ...slot, attendee });
    await rejected(agent.createHold({ ...slot, attendee }), Code.Aborted, "SLOT_UNAVAILABLE");
    await agent.confirmBooking({ bookingId: booking?.id as string });
    await agent.cancelBooking({ bookingId: booking?.id as string, reason: "plans changed" });
    // A made-up key, over plain JSON with a request id of the caller's.
    const wrongKey = "hf_made_up_key_that_must_not_be_logged_42";
    secrets.push(wrongKey);
    const refused = await postJson(
      server.url,
      "holdfast.v1.BookingService/GetBooking",
      { bookingId: booking?.id },
      wrongKey,
      { "x-request-id": "req-from-caller-1" },
    );
    expect(refused.status).toBe(401);
    // Refused at the edge, before the framework runs: logged all the same.
    const malformed = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      { serviceID: "svc_x" },
      agentKey,
      { "x-request-id": "req-from-caller-2" },
    );
    expect(malformed.status).toBe(400);
    expect((await receiver.waitFor((r) => r.length >= 3)).length).toBeGreaterThanOrEqual(3);
    await receiver.stop();
    await server.stop();

    const lines = server
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const rpcs = lines.filter((l) => l.msg === "rpc");
    const holds = rpcs.filter(
      (l) =>
        l.procedure === "holdfast.v1.BookingService/CreateHold" &&
        l.requestId !== "req-from-caller-2",
    );
    expect(holds.map((l) => [l.code, l.reason, l.protocol, l.tenant])).toEqual([
      ["OK", undefined, "connect", w.tenantId],
      ["Aborted", "SLOT_UNAVAILABLE", "connect", w.tenantId],
    ]);
    for (const l of holds) {
      expect(l.level).toBe("info");
      expect(l.keyId).toEqual(expect.any(String));
      expect(l.requestId).toEqual(expect.any(String));
      expect(l.durationMs).toBeGreaterThan(0);
    }
    const unauthenticated = rpcs.find((l) => l.requestId === "req-from-caller-1");
    expect(unauthenticated).toMatchObject({
      procedure: "holdfast.v1.BookingService/GetBooking",
      code: "Unauthenticated",
      reason: "UNAUTHENTICATED",
    });

    expect(rpcs.find((l) => l.requestId === "req-from-caller-2")).toMatchObject({
      procedure: "holdfast.v1.BookingService/CreateHold",
      protocol: "connect",
      code: "InvalidArgument",
      reason: "MALFORMED_REQUEST",
    });

    const text = server.stderr();
    for (const secret of secrets) expect(text, "a secret in the logs").not.toContain(secret);
  });
});

describe("callers that break off, or send no Host", { timeout: 60_000 }, async () => {
  const server = await spawnServer({
    DATABASE_URL: await freshDatabase(),
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
  });
  afterAll(() => server.stop());
  const { port } = new URL(server.url);

  /** Sends raw bytes on a new connection; resolves with what came back once it closes. */
  const raw = (bytes: string, breakOff = false) =>
    new Promise<string>((resolve) => {
      const socket = createConnection(Number(port), "127.0.0.1");
      let got = "";
      socket.on("data", (d: Buffer) => {
        got += d.toString();
      });
      socket.on("error", () => {});
      socket.once("close", () => resolve(got));
      socket.write(bytes, () => {
        if (breakOff) setTimeout(() => socket.destroy(), 100);
      });
    });

  it("answers a request with no Host, or an empty one, with MALFORMED_REQUEST and keeps serving", async () => {
    const body = "{}";
    const call = (version: string, host: string) =>
      raw(
        `POST /holdfast.v1.KeyService/GetCaller ${version}\r\n${host}Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      );
    for (const answer of [await call("HTTP/1.0", ""), await call("HTTP/1.1", "Host:\r\n")]) {
      expect(answer).toMatch(/^HTTP\/1\.[01] 400 /);
      expect(answer).toContain("MALFORMED_REQUEST");
    }
    const after = await postJson(server.url, "holdfast.v1.KeyService/GetCaller", {}, ADMIN_KEY);
    expect(after.status).toBe(200);
  });

  it("logs a caller that breaks off mid-request as gone, not as an internal error", async () => {
    // A body cut off over HTTP/1.1, and over HTTP/2.
    await raw(
      "POST /holdfast.v1.KeyService/GetCaller HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
      true,
    );
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const stream = session.request({
      ":method": "POST",
      ":path": "/holdfast.v1.BookingService/CreateHold",
      "content-type": "application/grpc",
      authorization: `Bearer ${ADMIN_KEY}`,
    });
    stream.on("error", () => {});
    stream.write(Buffer.from([0, 0, 0, 0, 50, 1, 2]));
    await sleep(100);
    stream.close(http2.constants.NGHTTP2_CANCEL);
    session.destroy();
    // The server is still there, and said nothing of an error.
    expect(
      (await postJson(server.url, "holdfast.v1.KeyService/GetCaller", {}, ADMIN_KEY)).status,
    ).toBe(200);
    await server.stop();
    expect(server.stderr()).not.toContain("internal error");
  });
});

describe("the server's own failures", { timeout: 60_000 }, async () => {
  const databaseUrl = await freshDatabase();
  const server = await spawnServer({
    DATABASE_URL: databaseUrl,
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    HOLDFAST_DB_LOCK_TIMEOUT_MS: "200",
    HOLDFAST_LOG_LEVEL: "info",
  });
  afterAll(() => server.stop());

  it("are logged with the call's procedure and request id, never its URL, and the call's line has the cause", async () => {
    const w = await bookingWorld(server.url);
    // A Connect GET carries its whole message in the URL: here, an email.
    const email = "ada.lovelace.1815@example.com";
    const get = (requestId: string) =>
      fetch(
        `${server.url}/holdfast.v1.BookingService/ListBookings?encoding=json&message=${encodeURIComponent(
          JSON.stringify({ metadata: { callerEmail: email } }),
        )}`,
        { headers: { authorization: `Bearer ${w.key}`, "x-request-id": requestId } },
      );
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      // Unavailable: the bookings table is locked past the lock timeout.
      await db.query("BEGIN");
      await db.query("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE");
      expect((await get("req-locked-out")).status).toBe(503);
      await db.query("ROLLBACK");
      // Internal: the table is gone.
      await db.query("ALTER TABLE bookings RENAME TO bookings_away");
      expect((await get("req-broken")).status).toBe(500);
    } finally {
      await db.query("ROLLBACK").catch(() => {});
      await db.query("ALTER TABLE IF EXISTS bookings_away RENAME TO bookings");
      await db.end();
    }
    // A refusal is counted as one; neither failure was a refusal.
    await rejected(
      clientFor(BookingService, server.url, w.key).getBooking({ bookingId: "bkg_none" }),
      Code.NotFound,
      "BOOKING_NOT_FOUND",
    );
    const counted = [...(await scrape(server.url)).keys()].filter((k) =>
      k.startsWith("holdfast_booking_rejections_total{"),
    );
    expect(counted).toEqual([
      'holdfast_booking_rejections_total{method="GetBooking",reason="BOOKING_NOT_FOUND"}',
    ]);
    await server.stop();
    const lines = server
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    const procedure = "holdfast.v1.BookingService/ListBookings";
    for (const [requestId, msg, code] of [
      ["req-locked-out", "database unavailable", "Unavailable"],
      ["req-broken", "internal error", "Internal"],
    ]) {
      const fault = lines.find((l) => l.msg === msg && l.requestId === requestId);
      expect(fault, `${msg} for ${requestId}`).toMatchObject({ procedure });
      const rpc = lines.find((l) => l.msg === "rpc" && l.requestId === requestId);
      expect(rpc).toMatchObject({ procedure, code });
      // The call's own line says what went wrong, not only "internal error".
      expect(JSON.stringify(rpc?.err)).toMatch(code === "Internal" ? /bookings/ : /lock/);
    }
    expect(server.stderr()).not.toContain(email);
    expect(server.stderr()).not.toContain(encodeURIComponent(email));
  });
});

describe("requests outside the RPCs", { timeout: 60_000 }, async () => {
  const server = await spawnServer({
    DATABASE_URL: await freshDatabase(),
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    HOLDFAST_LOG_LEVEL: "info",
  });
  afterAll(() => server.stop());

  it("write one line each: calendar feeds without their secret, Server-Sent Events with their status, paths that name no RPC", async () => {
    const w = await bookingWorld(server.url);
    const { urlPath } = await clientFor(CalendarFeedService, server.url, w.key).createCalendarFeed({
      resourceId: w.resourceId,
    });
    const get = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${server.url}${path}`, { headers }).then(async (r) => {
        await r.body?.cancel();
        return r.status;
      });
    const guessed = `/v1/feeds/hfcal_${"A".repeat(43)}.ics`;
    expect(await get(urlPath, { "x-request-id": "feed-1" })).toBe(200);
    expect(await get(guessed, { "x-request-id": "feed-2" })).toBe(404);
    expect(await get("/v1/events/stream", { "x-request-id": "sse-1" })).toBe(401);
    const unknown = `/holdfast.v1.BookingService/${"Nope".repeat(100)}`;
    const posted = await fetch(`${server.url}${unknown}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "unknown-1" },
      body: "{}",
    });
    expect(posted.status).toBe(404);
    // Not quite a feed's path (HOLDFAST_URL ending in "/", a capital V): the secret is still live.
    expect(await get(`/${urlPath}`, { "x-request-id": "feed-3" })).toBe(404);
    expect(await get(urlPath.replace("/v1/", "/V1/"), { "x-request-id": "feed-4" })).toBe(404);
    await server.stop();
    const lines = server
      .stderr()
      .split("\n")
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === "http");
    const line = (id: string) => lines.find((l) => l.requestId === id);
    expect(line("feed-1")).toMatchObject({ method: "GET", path: "/v1/feeds/…", status: 200 });
    expect(line("feed-2")).toMatchObject({ method: "GET", path: "/v1/feeds/…", status: 404 });
    expect(line("sse-1")).toMatchObject({ method: "GET", path: "/v1/events/stream", status: 401 });
    expect(line("feed-3")?.path).toBe("//v1/feeds/hfcal_….ics");
    expect(line("feed-4")?.path).toBe("/V1/feeds/hfcal_….ics");
    // A path that names no RPC, clipped.
    expect(line("unknown-1")).toMatchObject({ method: "POST", status: 404 });
    expect(line("unknown-1")?.path).toMatch(/^\/holdfast\.v1\.BookingService\/(Nope)+/);
    expect((line("unknown-1")?.path as string).length).toBeLessThanOrEqual(201);
    const secret = urlPath.slice("/v1/feeds/".length, -".ics".length);
    expect(server.stderr()).not.toContain(secret);
  });
});

import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code, type ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it, onTestFinished, vi } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { type Event, EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { pruneEvents } from "../../src/db/outbox.js";
import { CHANNEL, notify } from "../../src/db/signals.js";
import { BEGINNING, isAfter, type Position } from "../../src/domain/events.js";
import {
  type CursorCipher,
  cursorCipher,
  decodeCursor,
  encodeCursor,
} from "../../src/events/cursors.js";
import { log } from "../../src/log.js";
import { at, bookingWorld, seconds, sleep } from "../support/booking.js";
import { clientFor, grpcJsErrorInfo, rejected } from "../support/clients.js";
import { retireAll } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import { type ServerProcess, spawnServer } from "../support/process.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;

/** A tenant's event cursor cipher, as every instance makes it (its `event-cursors` secret). */
async function cursorsOf(
  tenantId: string,
  databaseUrl = server.databaseUrl,
): Promise<CursorCipher> {
  const db = new pg.Client({ connectionString: databaseUrl });
  await db.connect();
  try {
    const { rows } = await db.query<{ secret: Buffer }>(
      "SELECT secret FROM server_secrets WHERE name = 'event-cursors'",
    );
    return cursorCipher((rows[0] as { secret: Buffer }).secret, tenantId);
  } finally {
    await db.end();
  }
}
beforeAll(async () => {
  server = await startTestServer({
    HOLDFAST_SWEEP_INTERVAL_MS: "200",
    HOLDFAST_STREAM_BUFFER: "20",
    // A client that stops reading is cut off after twice this.
    HOLDFAST_STREAM_MAX_LAG_MS: "1000",
  });
});

/** Reads a stream in the background, collecting events until stopped. */
function watch(
  client: ReturnType<typeof clientFor<typeof EventService>>,
  req: Parameters<typeof client.watchEvents>[0],
) {
  const abort = new AbortController();
  const events: Event[] = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const res of client.watchEvents(req, { signal: abort.signal })) {
        if (res.event) events.push(res.event);
      }
    } catch (err) {
      if (!abort.signal.aborted) failure = err;
    }
  })();
  return {
    events,
    failure: () => failure,
    async until(count: number, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (events.length < count && Date.now() < deadline && failure === undefined)
        await sleep(20);
      return events;
    },
    async stop() {
      abort.abort();
      await done;
    },
  };
}

const kinds = (events: Event[]) => events.map((e) => `${e.type}:${e.booking?.id.slice(-6)}`);

describe("WatchEvents", () => {
  it("streams held then confirmed, and held then expired, in order, with full bookings", async () => {
    const w = await bookingWorld(server.url);
    const stream = watch(clientFor(EventService, server.url, w.key), {});
    await sleep(200);
    const a = (
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
        metadata: { call: "a" },
      })
    ).booking;
    await w.bookings.confirmBooking({ bookingId: a?.id as string });
    const b = (
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 10),
        ttl: seconds(1),
      })
    ).booking;
    const events = await stream.until(4);
    await stream.stop();
    expect(kinds(events)).toEqual([
      `booking.held:${a?.id.slice(-6)}`,
      `booking.confirmed:${a?.id.slice(-6)}`,
      `booking.held:${b?.id.slice(-6)}`,
      `booking.expired:${b?.id.slice(-6)}`,
    ]);
    expect(events[0]?.booking?.metadata).toEqual({ call: "a" });
    expect(
      events.every((e) => e.id.startsWith("evt_") && e.cursor.startsWith("ev2_") && e.occurTime),
    ).toBe(true);
    expect(new Set(events.map((e) => e.id)).size).toBe(4);
  });

  it("resumes from any cursor with every later event exactly once, then live ones", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    for (let h = 9; h < 15; h++) {
      const { booking } = await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(2, h),
      });
      await w.bookings.cancelBooking({ bookingId: booking?.id as string });
    }
    // Events show once every older transaction of the server has ended.
    let all = (await events.listEvents({})).events;
    for (let i = 0; i < 200 && all.length < 12; i++) {
      await sleep(50);
      all = (await events.listEvents({})).events;
    }
    expect(all).toHaveLength(12);
    const middle = all[5]?.cursor as string;
    const stream = watch(events, { after: middle });
    const replayed = await stream.until(6);
    expect(replayed.map((e) => e.id)).toEqual(all.slice(6).map((e) => e.id));
    await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(2, 16),
    });
    const withLive = await stream.until(7);
    await stream.stop();
    expect(withLive).toHaveLength(7);
    expect(withLive[6]?.type).toBe("booking.confirmed");
    // Paging the same range gives the same events.
    const paged: string[] = [];
    let after = middle;
    for (;;) {
      const page = await events.listEvents({ after, pageSize: 4 });
      paged.push(...page.events.map((e) => e.id));
      if (page.events.length === 0) break;
      after = page.nextCursor;
    }
    expect(paged).toEqual(withLive.map((e) => e.id));
  });

  it("refuses a cursor ahead of every event, and takes one just issued by another instance", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    const ahead = encodeCursor({ xid: 2n ** 62n, seq: 0n }, await cursorsOf(w.tenantId));
    await rejected(events.listEvents({ after: ahead }), Code.InvalidArgument, "INVALID_CURSOR");
    const streamed = (async () => {
      for await (const _ of events.watchEvents({ after: ahead }, { timeoutMs: 5000 })) {
        // Nothing may come: the stream must be refused.
      }
    })();
    await rejected(streamed, Code.InvalidArgument, "INVALID_CURSOR");
    // A cursor issued by one instance works at once on another.
    const stream = watch(events, {});
    await sleep(300);
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(5, 9) });
    const [held] = await stream.until(1);
    await stream.stop();
    const elsewhere = await startTestServer({}, server.databaseUrl);
    const page = await clientFor(EventService, elsewhere.url, w.key).listEvents({
      after: held?.cursor as string,
    });
    expect(page.events).toEqual([]);
    // An empty page resumes from where its read got: not before the event.
    const cipher = await cursorsOf(w.tenantId);
    const next = decodeCursor(page.nextCursor, cipher) as Position;
    expect(isAfter(decodeCursor(held?.cursor as string, cipher) as Position, next)).toBe(false);
  });

  it("refuses an edited cursor whose sequence number was never issued, on every way in", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(5, 9) });
    let held: Event | undefined;
    for (let i = 0; i < 250 && !held; i++) {
      [held] = (await events.listEvents({})).events;
      if (!held) await sleep(20);
    }
    const cipher = await cursorsOf(w.tenantId);
    const issued = decodeCursor(held?.cursor as string, cipher) as Position;
    // Its transaction is real (before the head); no event has that number.
    const edited = encodeCursor({ xid: issued.xid, seq: issued.seq + 10n ** 12n }, cipher);
    await rejected(events.listEvents({ after: edited }), Code.InvalidArgument, "INVALID_CURSOR");
    const streamed = (async () => {
      for await (const _ of events.watchEvents({ after: edited }, { timeoutMs: 5000 })) {
        // Nothing may come: the stream must be refused.
      }
    })();
    await rejected(streamed, Code.InvalidArgument, "INVALID_CURSOR");
    for (const [query, headers] of [
      [`?after=${edited}`, {}],
      ["", { "Last-Event-ID": edited }],
    ] as const) {
      const res = await fetch(`${server.url}/v1/events/stream${query}`, {
        headers: { authorization: `Bearer ${w.key}`, ...headers },
      });
      const body = (await res.json()) as { details?: { debug?: { reason?: string } }[] };
      expect([res.status, body.details?.[0]?.debug?.reason]).toEqual([400, "INVALID_CURSOR"]);
    }
    // The cursor as issued, and the head's own (sequence 0), are still taken.
    expect((await events.listEvents({ after: held?.cursor as string })).events).toEqual([]);
    const head = encodeCursor({ xid: issued.xid + 1n, seq: 0n }, cipher);
    expect((await events.listEvents({ after: head })).events).toEqual([]);
  });

  it("gives each tenant its own cursors: opaque, and refused by every other tenant", async () => {
    const a = await bookingWorld(server.url);
    const b = await bookingWorld(server.url);
    for (const w of [a, b]) {
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(6, 9),
      });
    }
    const eventsOf = async (w: typeof a) => {
      for (let i = 0; i < 250; i++) {
        const page = await clientFor(EventService, server.url, w.key).listEvents({});
        if (page.events.length > 0) return page;
        await sleep(20);
      }
      throw new Error("no event");
    };
    const [pageA, pageB] = [await eventsOf(a), await eventsOf(b)];
    const cursorA = pageA.events[0]?.cursor as string;
    expect(cursorA).toMatch(/^ev2_[A-Za-z0-9_-]{22}$/);
    // Tenant A's own cursor names its event's position, under A's cipher only.
    const cipherA = await cursorsOf(a.tenantId);
    expect(decodeCursor(cursorA, cipherA)).toBeDefined();
    // B's cursors mean nothing to A, on every way in.
    const events = clientFor(EventService, server.url, a.key);
    for (const cursor of [pageB.events[0]?.cursor as string, pageB.nextCursor]) {
      await rejected(events.listEvents({ after: cursor }), Code.InvalidArgument, "INVALID_CURSOR");
      const res = await fetch(`${server.url}/v1/events/stream?after=${cursor}`, {
        headers: { authorization: `Bearer ${a.key}` },
      });
      const body = (await res.json()) as { details?: { debug?: { reason?: string } }[] };
      expect([res.status, body.details?.[0]?.debug?.reason]).toEqual([400, "INVALID_CURSOR"]);
    }
    // Cursors of the old, readable form are not taken.
    const p = decodeCursor(cursorA, cipherA) as Position;
    const readable = `ev1_${p.xid.toString(36)}_${p.seq.toString(36)}`;
    await rejected(events.listEvents({ after: readable }), Code.InvalidArgument, "INVALID_CURSOR");
  });

  it("delivers two overlapping transactions that commit out of order, each once", async () => {
    const w = await bookingWorld(server.url);
    const stream = watch(clientFor(EventService, server.url, w.key), {});
    await sleep(200);
    const first = new pg.Client({ connectionString: server.databaseUrl });
    const second = new pg.Client({ connectionString: server.databaseUrl });
    await Promise.all([first.connect(), second.connect()]);
    try {
      const insert = (c: pg.Client, id: string) =>
        c.query(
          `INSERT INTO outbox (tenant_id, type, booking_id, resource_id, service_id, payload)
           VALUES ($1, 'booking.held', $2, $3, $4, jsonb_build_object('booking', jsonb_build_object('id', $2::text)))`,
          [w.tenantId, id, w.resourceId, w.serviceId],
        );
      await first.query("BEGIN");
      await insert(first, "bkg_first_started");
      await second.query("BEGIN");
      await insert(second, "bkg_second_started");
      await second.query("COMMIT");
      // The later transaction has committed, but the earlier one may still
      // write before it: nothing is delivered past it yet.
      await sleep(1_500);
      expect(stream.events).toEqual([]);
      expect((await clientFor(EventService, server.url, w.key).listEvents({})).events).toEqual([]);
      await first.query("COMMIT");
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
    const events = await stream.until(2);
    await sleep(300);
    await stream.stop();
    expect(events.map((e) => e.booking?.id)).toEqual(["bkg_first_started", "bkg_second_started"]);
    const listed = (await clientFor(EventService, server.url, w.key).listEvents({})).events;
    expect(listed.map((e) => e.booking?.id)).toEqual(["bkg_first_started", "bkg_second_started"]);
  });

  it("filters by type, resource and service, and shows a tenant only its own events", async () => {
    const w = await bookingWorld(server.url, { resources: 2 });
    const other = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    const [r1, r2] = w.resourceIds as [string, string];
    const byType = watch(events, { filter: { types: ["booking.confirmed"] } });
    const byResource = watch(events, { filter: { resourceIds: [r2] } });
    const theirs = watch(clientFor(EventService, server.url, other.key), {});
    await sleep(200);
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: r1, ...at(3, 9) });
    await w.bookings.createBooking({ serviceId: w.serviceId, resourceId: r2, ...at(3, 9) });
    await w.bookings.createBooking({ serviceId: w.serviceId, resourceId: r1, ...at(3, 10) });
    expect((await byType.until(2)).map((e) => e.booking?.resourceId)).toEqual([r2, r1]);
    expect((await byResource.until(1)).map((e) => e.type)).toEqual(["booking.confirmed"]);
    await sleep(300);
    expect(byType.events).toHaveLength(2);
    expect(byResource.events).toHaveLength(1);
    expect(theirs.events).toEqual([]);
    await Promise.all([byType.stop(), byResource.stop(), theirs.stop()]);
    const listed = await events.listEvents({
      filter: { serviceIds: [w.serviceId], types: ["booking.held"] },
    });
    expect(listed.events.map((e) => e.booking?.resourceId)).toEqual([r1]);
    // A booking moving off a resource is news to that resource's watchers, live and listed.
    const watchingR2 = watch(events, { filter: { resourceIds: [r2] } });
    await sleep(200);
    const { booking: onR2 } = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: r2,
      ...at(3, 11),
    });
    await w.bookings.rescheduleBooking({
      bookingId: onR2?.id as string,
      resourceId: r1,
      ...at(3, 12),
    });
    const live = await watchingR2.until(2);
    expect(live.map((e) => [e.type, e.previousResourceId])).toEqual([
      ["booking.confirmed", ""],
      ["booking.rescheduled", r2],
    ]);
    await watchingR2.stop();
    const movedOff = await events.listEvents({
      filter: { resourceIds: [r2], types: ["booking.rescheduled"] },
    });
    expect(movedOff.events.map((e) => [e.booking?.resourceId, e.previousResourceId])).toEqual([
      [r1, r2],
    ]);

    await rejected(
      events.listEvents({ filter: { types: ["booking.exploded"] } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    await rejected(events.listEvents({ after: "garbage" }), Code.InvalidArgument, "INVALID_CURSOR");
  });

  it("needs events.read", async () => {
    const w = await bookingWorld(server.url);
    const limited = await clientFor(KeyService, server.url, w.key).createApiKey({
      scopes: ["bookings.read"],
    });
    await rejected(
      clientFor(EventService, server.url, limited.apiKey).listEvents({}),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
  });
});

/**
 * 600 events of about 1 KB (or `bytes`) each for `w`'s tenant, written straight to the
 * outbox: far more than a stream's buffer (20) and its connection's windows hold.
 */
function fillOutbox(
  w: { tenantId: string; resourceId: string; serviceId: string },
  bytes = 1000,
  on: TestServer = server,
) {
  return on.pool.query(
    `INSERT INTO outbox (tenant_id, type, booking_id, resource_id, service_id, payload)
     SELECT $1, 'booking.held', 'bkg_' || g, $2, $3, jsonb_build_object('booking', jsonb_build_object('id', 'bkg_' || g,
              'metadata', jsonb_build_object('padding', repeat('x', $4::int))))
     FROM generate_series(1, 600) AS g`,
    [w.tenantId, w.resourceId, w.serviceId, bytes],
  );
}

describe("ListEvents' next_cursor", () => {
  /** Ages a tenant's events past the retention and prunes them, as the maintenance does. */
  async function retire(tenantId: string): Promise<void> {
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    try {
      await db.query(
        "UPDATE outbox SET occur_time = now() - interval '8 days' WHERE tenant_id = $1",
        [tenantId],
      );
      await pruneEvents(db, 7 * 86_400_000, 5_000);
      const { rows } = await db.query(
        `SELECT (SELECT count(*) FROM outbox WHERE tenant_id = $1)::int AS kept,
           (SELECT count(*) FROM outbox_pruned_tenants WHERE tenant_id = $1)::int AS marked`,
        [tenantId],
      );
      expect(rows[0]).toEqual({ kept: 0, marked: 1 });
    } finally {
      await db.end();
    }
  }

  /** Another tenant's event, readable (then `meanwhile` runs) and then deleted by retention. */
  async function retention(meanwhile = async () => {}): Promise<void> {
    const other = await bookingWorld(server.url);
    await other.bookings.createHold({
      serviceId: other.serviceId,
      resourceId: other.resourceId,
      ...at(7, 9),
    });
    await pollUntil(clientFor(EventService, server.url, other.key), "", {});
    await meanwhile();
    await retire(other.tenantId);
  }

  /** Pages from `after` until at least one event comes; the events and the cursor to go on from. */
  async function pollUntil(
    client: ReturnType<typeof clientFor<typeof EventService>>,
    after: string,
    req: Parameters<typeof client.listEvents>[0],
  ): Promise<{ events: Event[]; after: string }> {
    for (let i = 0; i < 250; i++) {
      const page = await client.listEvents({ ...req, after });
      after = page.nextCursor;
      if (page.events.length > 0) return { events: page.events, after };
      await sleep(20);
    }
    throw new Error("no event came");
  }

  /** The first `data:` events of a Server-Sent Events stream, or its refusal's status and reason. */
  async function streamed(key: string, headers: Record<string, string>, query = "", count = 1) {
    const abort = new AbortController();
    const res = await fetch(`${server.url}/v1/events/stream${query}`, {
      headers: { authorization: `Bearer ${key}`, ...headers },
      signal: abort.signal,
    });
    if (!res.ok || !res.body) {
      const body = (await res.json()) as { details?: { debug?: { reason?: string } }[] };
      return { status: res.status, reason: body.details?.[0]?.debug?.reason, ids: [] };
    }
    const ids: string[] = [];
    let text = "";
    const timer = setTimeout(() => abort.abort(), 10_000);
    try {
      for await (const chunk of res.body) {
        text += new TextDecoder().decode(chunk as Uint8Array);
        ids.splice(
          0,
          ids.length,
          ...[...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1] as string).id),
        );
        if (ids.length >= count) break;
      }
    } catch {
      // Timed out: the ids so far tell.
    } finally {
      clearTimeout(timer);
      abort.abort();
    }
    return { status: res.status, reason: undefined, ids };
  }

  it("keeps a new tenant's poller going after retention deleted other tenants' events", async () => {
    await retention();
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    // Before the fix, an empty page named the beginning, which retention had passed.
    let after = (await events.listEvents({})).nextCursor;
    for (let i = 0; i < 3; i++) {
      const page = await events.listEvents({ after });
      expect(page.events).toEqual([]);
      after = page.nextCursor;
    }
    // Streams start from that cursor too.
    const stream = watch(events, { after });
    const sse = streamed(w.key, { "Last-Event-ID": after });
    await sleep(300);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(7, 10),
    });
    const first = await pollUntil(events, after, {});
    expect(kinds(first.events)).toEqual([`booking.held:${booking?.id.slice(-6)}`]);
    // Once: the next poll has nothing again.
    expect((await events.listEvents({ after: first.after })).events).toEqual([]);
    expect((await stream.until(1)).map((e) => e.id)).toEqual([first.events[0]?.id]);
    await stream.stop();
    expect(await sse).toEqual({ status: 200, reason: undefined, ids: [first.events[0]?.id] });
    // Polling on while other tenants write, and retention deletes their
    // events: the cursor has moved past them, not stayed at its own event.
    after = first.after;
    await retention(async () => {
      after = (await events.listEvents({ after })).nextCursor;
    });
    const page = await events.listEvents({ after });
    expect(page.events).toEqual([]);
    expect((await events.listEvents({ after: page.nextCursor })).events).toEqual([]);
  });

  it("takes the beginning as a cursor after retention, on every way in", async () => {
    await retention();
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(7, 11) });
    const beginning = encodeCursor(BEGINNING, await cursorsOf(w.tenantId));
    const { events: listed } = await pollUntil(events, beginning, {});
    expect(listed).toHaveLength(1);
    const id = listed[0]?.id;
    const stream = watch(events, { after: beginning });
    expect((await stream.until(1)).map((e) => e.id)).toEqual([id]);
    await stream.stop();
    expect(await streamed(w.key, { "Last-Event-ID": beginning })).toEqual({
      status: 200,
      reason: undefined,
      ids: [id],
    });
  });

  it("never tells a tenant when another tenant wrote: its cursors move only with its own events", async () => {
    const w = await bookingWorld(server.url);
    const other = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(10, 9),
    });
    const mine = await pollUntil(events, "", {});
    expect(kinds(mine.events)).toEqual([`booking.held:${booking?.id.slice(-6)}`]);
    const quiet = await events.listEvents({ after: mine.after });
    expect(quiet.events).toEqual([]);
    // The other tenant writes, and its events become readable.
    for (let h = 9; h < 12; h++) {
      await other.bookings.createHold({
        serviceId: other.serviceId,
        resourceId: other.resourceId,
        ...at(10, h),
      });
    }
    const theirs = clientFor(EventService, server.url, other.key);
    for (let i = 0; i < 250 && (await theirs.listEvents({})).events.length < 3; i++)
      await sleep(20);
    expect((await theirs.listEvents({})).events).toHaveLength(3);
    // Every cursor this tenant is given reads the same as before.
    for (const after of ["", mine.after, quiet.nextCursor]) {
      const page = await events.listEvents({ after });
      expect(page.nextCursor).toBe(quiet.nextCursor);
      const filtered = await events.listEvents({ after, filter: { types: ["booking.cancelled"] } });
      expect(filtered.nextCursor).toBe(quiet.nextCursor);
    }
  });

  it("moves a filtered poller past events that do not match, and brings the next match once", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    for (let h = 9; h < 12; h++) {
      const { booking } = await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(8, h),
      });
      await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    }
    let all: Event[] = [];
    for (let i = 0; i < 250 && all.length < 6; i++) {
      all = (await events.listEvents({})).events;
      if (all.length < 6) await sleep(20);
    }
    expect(all).toHaveLength(6);
    const filter = { types: ["booking.cancelled"] };
    const page = await events.listEvents({ filter });
    expect(page.events).toEqual([]);
    // At the last event read, none of which matched: the next poll need not
    // read them again.
    expect(page.nextCursor).toBe(all.at(-1)?.cursor);
    const cancelled = all[1]?.booking?.id as string;
    await w.bookings.cancelBooking({ bookingId: cancelled });
    const got = await pollUntil(events, page.nextCursor, { filter });
    expect(kinds(got.events)).toEqual([`booking.cancelled:${cancelled.slice(-6)}`]);
    expect((await events.listEvents({ after: got.after, filter })).events).toEqual([]);
    // The next match comes once too.
    const again = all[3]?.booking?.id as string;
    await w.bookings.cancelBooking({ bookingId: again });
    const next = await pollUntil(events, got.after, { filter });
    expect(kinds(next.events)).toEqual([`booking.cancelled:${again.slice(-6)}`]);
  });

  it("resumes a full page after its last event, and a short one from where its read got", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    for (let h = 9; h < 14; h++) {
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(9, h),
      });
    }
    let all: Event[] = [];
    for (let i = 0; i < 250 && all.length < 5; i++) {
      all = (await events.listEvents({})).events;
      if (all.length < 5) await sleep(20);
    }
    expect(all).toHaveLength(5);
    // Full pages: next_cursor is the last event's own cursor.
    const first = await events.listEvents({ pageSize: 2 });
    expect(first.events.map((e) => e.id)).toEqual(all.slice(0, 2).map((e) => e.id));
    expect(first.nextCursor).toBe(all[1]?.cursor);
    const second = await events.listEvents({ after: first.nextCursor, pageSize: 3 });
    expect(second.events.map((e) => e.id)).toEqual(all.slice(2).map((e) => e.id));
    expect(second.nextCursor).toBe(all[4]?.cursor);
    // A short page: past its last event, and nothing is read twice from there.
    const short = await events.listEvents({ after: first.nextCursor, pageSize: 4 });
    expect(short.events.map((e) => e.id)).toEqual(all.slice(2).map((e) => e.id));
    // The tenant's newest event: a place of its own, not the outbox's head.
    expect(short.nextCursor).toBe(all[4]?.cursor);
    expect((await events.listEvents({ after: short.nextCursor })).events).toEqual([]);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(9, 15),
    });
    const next = await pollUntil(events, short.nextCursor, {});
    expect(kinds(next.events)).toEqual([`booking.held:${booking?.id.slice(-6)}`]);
  });

  it("refuses an `after` of any length that is not a cursor as INVALID_CURSOR, on every way in", async () => {
    const w = await bookingWorld(server.url);
    const events = clientFor(EventService, server.url, w.key);
    for (const after of [`ev2_${"A".repeat(97)}`, "x".repeat(101), "ev2_".repeat(2_000)]) {
      await rejected(events.listEvents({ after }), Code.InvalidArgument, "INVALID_CURSOR");
      const stream = (async () => {
        for await (const _ of events.watchEvents({ after }, { timeoutMs: 5000 })) {
          // Nothing may come: the stream must be refused.
        }
      })();
      await rejected(stream, Code.InvalidArgument, "INVALID_CURSOR");
      for (const [query, headers] of [
        [`?after=${after}`, {}],
        ["", { "Last-Event-ID": after }],
      ] as const) {
        const refused = await streamed(w.key, headers, query);
        expect([refused.status, refused.reason]).toEqual([400, "INVALID_CURSOR"]);
      }
    }
  });
});

describe("a filtered stream's cursor", () => {
  /** The error a stream ended with, once it has ended. */
  async function endOf(stream: ReturnType<typeof watch>): Promise<ConnectError> {
    for (let i = 0; i < 500 && stream.failure() === undefined; i++) await sleep(20);
    return stream.failure() as ConnectError;
  }

  it("moves past the events it skipped, so it resumes after retention deleted them, missing nothing", async () => {
    // A server of the test's own, which it stops; polling often, so the feed
    // reads the skipped events soon after they become readable.
    const own = await startTestServer({ HOLDFAST_EVENT_POLL_MS: "100" });
    const w = await bookingWorld(own.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const filter = { resourceIds: [watched] };
    const events = clientFor(EventService, own.url, w.key);
    const hold = async (resourceId: string, hour: number) =>
      (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(10, hour) })).booking
        ?.id as string;

    // Following live: one matching event, then only events the filter skips.
    const live = watch(events, { filter });
    await sleep(300);
    const matched = await hold(watched, 9);
    const [first] = await live.until(1);
    expect(first?.booking?.id).toBe(matched);
    for (let h = 10; h < 13; h++) await hold(other, h);
    let all: Event[] = [];
    for (let i = 0; i < 250 && all.length < 4; i++) {
      all = (await events.listEvents({})).events;
      if (all.length < 4) await sleep(20);
    }
    expect(all).toHaveLength(4);
    // Catching up from the table: from the matching event, past the skipped ones.
    const catchingUp = watch(events, { after: first?.cursor as string, filter });
    // Both have read the skipped events (the live feed polls every 100 ms).
    await sleep(1_000);
    // Longer than the retention later, every event read so far is deleted.
    await retireAll(own.databaseUrl);

    await own.close();
    const cipher = await cursorsOf(w.tenantId, own.databaseUrl);
    const skippedLast = decodeCursor(all.at(-1)?.cursor as string, cipher) as Position;
    const cursors: string[] = [];
    for (const stream of [live, catchingUp]) {
      const err = await endOf(stream);
      const info = err?.findDetails(ErrorInfoSchema)[0];
      expect([err?.code, info?.reason]).toEqual([Code.Unavailable, "UNAVAILABLE"]);
      const cursor = info?.metadata.cursor as string;
      // At least as far as the stream read: past the skipped events, not
      // left at the matching one (which retention deleted after them).
      expect(isAfter(skippedLast, decodeCursor(cursor, cipher) as Position)).toBe(false);
      cursors.push(cursor);
    }
    expect(live.events.map((e) => e.booking?.id)).toEqual([matched]);
    expect(catchingUp.events).toEqual([]);

    // Another instance: a match commits while no stream is open, then another live.
    const next = await startTestServer({}, own.databaseUrl);
    const nextEvents = clientFor(EventService, next.url, w.key);
    const bookings = clientFor(BookingService, next.url, w.key);
    const holdNext = async (resourceId: string, hour: number) =>
      (await bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(10, hour) })).booking
        ?.id as string;
    const meanwhile = await holdNext(watched, 14);
    const resumed = cursors.map((after) => watch(nextEvents, { after, filter }));
    for (const cursor of cursors) {
      // ListEvents takes the same cursor: not CURSOR_EXPIRED either.
      const page = await nextEvents.listEvents({ after: cursor, filter });
      expect(page.events.every((e) => e.booking?.id === meanwhile)).toBe(true);
    }
    await holdNext(other, 15);
    const later = await holdNext(watched, 16);
    for (const stream of resumed) {
      await stream.until(2);
      await sleep(300);
      await stream.stop();
      expect(stream.failure()).toBeUndefined();
      expect(stream.events.map((e) => e.booking?.id)).toEqual([meanwhile, later]);
    }
  });
});

describe("a consumer that falls behind", () => {
  it("is closed with ResourceExhausted and a cursor that resumes without loss", async () => {
    const w = await bookingWorld(server.url);
    const definition = protoLoader.loadSync("holdfast/v1/event.proto", {
      includeDirs: ["proto"],
      enums: String,
      longs: String,
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      holdfast: { v1: { EventService: grpc.ServiceClientConstructor } };
    };
    const client = new pkg.holdfast.v1.EventService(
      new URL(server.url).host,
      grpc.credentials.createInsecure(),
    );
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${w.key}`);
    const watchEvents = client.watchEvents as (
      req: object,
      md: grpc.Metadata,
    ) => grpc.ClientReadableStream<unknown>;
    const call = watchEvents.call(client, {}, metadata) as grpc.ClientReadableStream<{
      event: { id: string };
    }>;
    const received: { id: string; cursor: string }[] = [];
    call.on("data", (d: { event: { id: string; cursor: string } }) => received.push(d.event));
    const failed = new Promise<grpc.ServiceError>((resolve) => call.on("error", resolve));
    // grpc-js may report the status before it hands over messages it buffered while paused.
    const closed = new Promise<void>((resolve) => call.on("close", () => resolve()));
    onTestFinished(() => {
      call.cancel();
      client.close();
    });
    await sleep(300);
    call.pause();
    await fillOutbox(w);
    // Wake the feed as a writer's commit does, rather than leave it to the
    // next poll (up to a second away), and wait until the stream is behind.
    await notify(server.pool, CHANNEL.outbox);
    await vi.waitFor(
      async () =>
        expect((await scrape(server.url)).get("holdfast_event_stream_lag_events")).toBeGreaterThan(
          0,
        ),
      { timeout: 5_000, interval: 50 },
    );
    // Longer than the lag allowed, and shorter than the twice as long after
    // which a client that does not read is cut off: it gets the answer.
    await sleep(1_500);
    call.resume();
    const err = await Promise.race([failed, sleep(10_000).then(() => undefined)]);
    if (!err) expect.fail("the stream was not closed though it stayed behind past the lag allowed");
    await closed;
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const info = grpcJsErrorInfo(err);
    expect(info?.reason).toBe("CONSUMER_TOO_SLOW");
    // The server names how far it sent; grpc-js drops what it had buffered
    // while paused once the error arrives, so a consumer resumes from the
    // last event it processed, which the server's cursor is never before.
    const cipher = await cursorsOf(w.tenantId);
    const sent = decodeCursor(info?.metadata.cursor as string, cipher);
    const last = received.at(-1);
    expect(sent).toBeDefined();
    expect(received.length).toBeLessThan(600);
    if (last) {
      expect(isAfter(decodeCursor(last.cursor, cipher) as Position, sent as Position)).toBe(false);
    }
    // Resuming from the last processed event yields exactly the rest.
    const events = clientFor(EventService, server.url, w.key);
    const rest: string[] = [];
    let after = last?.cursor ?? "";
    for (;;) {
      const page = await events.listEvents({ after, pageSize: 1000 });
      if (page.events.length === 0) break;
      rest.push(...page.events.map((e) => e.id));
      after = page.nextCursor;
    }
    const all = [...received.map((e) => e.id), ...rest];
    expect(all).toHaveLength(600);
    expect(new Set(all).size).toBe(600);
  });
});

describe("a stream that retention overtakes while it catches up", () => {
  it("ends with CURSOR_EXPIRED instead of skipping the events deleted after its cursor", async () => {
    // A database of its own: the retention marker set here, over events
    // aged by hand seconds after they committed, would be ahead of where
    // other tests' streams start while any older transaction runs on the
    // Postgres server (as in a parallel run), which retention never sees
    // (it deletes events a week old).
    const own = await startTestServer();
    const w = await bookingWorld(own.url);
    // 600 events of 14 KB: a page (100) is far more than the stream's
    // connection holds while its reader pauses.
    await fillOutbox(w, 14_000, own);
    const events = clientFor(EventService, own.url, w.key);
    const stream = events.watchEvents({ fromBeginning: true })[Symbol.asyncIterator]();
    const received: string[] = [];
    const first = await stream.next();
    received.push(first.value?.event?.booking?.id as string);
    // The reader pauses; meanwhile the first 300 events pass the retention
    // and are deleted, past the page the stream is sending.
    await sleep(500);
    const db = new pg.Client({ connectionString: own.databaseUrl });
    await db.connect();
    try {
      await db.query(
        `UPDATE outbox SET occur_time = now() - interval '8 days' WHERE seq IN (
           SELECT seq FROM outbox WHERE tenant_id = $1 ORDER BY xid, seq LIMIT 300)`,
        [w.tenantId],
      );
      await pruneEvents(db, 7 * 86_400_000, 5_000);
    } finally {
      await db.end();
    }
    let failure: unknown;
    try {
      for (;;) {
        const next = await Promise.race([stream.next(), sleep(5_000).then(() => undefined)]);
        if (!next || next.done) break;
        received.push(next.value.event?.booking?.id as string);
      }
    } catch (err) {
      failure = err;
    } finally {
      await stream.return?.();
    }
    // What came is the events in order, with none left out; then the stream
    // says that retention deleted the rest of what it had to send.
    expect(received).toEqual(received.map((_, i) => `bkg_${i + 1}`));
    expect(received.length).toBeLessThan(300);
    const err = failure as ConnectError;
    expect([err?.code, err?.findDetails(ErrorInfoSchema)[0]?.reason]).toEqual([
      Code.FailedPrecondition,
      "CURSOR_EXPIRED",
    ]);
  });
});

describe("a consumer that stops reading", () => {
  const calls: Record<string, (key: string) => http2.OutgoingHttpHeaders> = {
    "gRPC WatchEvents": (key) => ({
      ":method": "POST",
      ":path": "/holdfast.v1.EventService/WatchEvents",
      "content-type": "application/grpc",
      te: "trailers",
      authorization: `Bearer ${key}`,
    }),
    "Server-Sent Events": (key) => ({
      ":method": "GET",
      ":path": "/v1/events/stream",
      authorization: `Bearer ${key}`,
    }),
  };
  it.each(
    Object.keys(calls),
  )("is cut off once a write has waited for it twice the lag allowed (%s)", async (kind) => {
    const w = await bookingWorld(server.url);
    const streams = async () => (await scrape(server.url)).get("holdfast_event_streams") ?? 0;
    const openStreams = (n: number) =>
      vi.waitFor(async () => expect(await streams()).toBe(n), { timeout: 10_000, interval: 100 });
    await openStreams(0);
    // A stream on its own HTTP/2 connection that reads nothing.
    const session = http2.connect(server.url);
    session.on("error", () => {});
    const call = session.request(
      (calls[kind] as (key: string) => http2.OutgoingHttpHeaders)(w.key),
    );
    call.on("error", () => {});
    const closed = new Promise<number | undefined>((resolve) =>
      call.on("close", () => resolve(call.rstCode)),
    );
    call.end(kind.startsWith("gRPC") ? Buffer.alloc(5) : undefined); // gRPC: one empty message
    call.pause();
    await openStreams(1);
    const errors = vi.spyOn(log, "error");
    onTestFinished(() => errors.mockRestore());
    await fillOutbox(w);
    // Its stream ends on the server though it never reads: once the
    // connection's windows are full, a write waits, and after twice the lag
    // allowed (2 s here) the stream is reset, with ENHANCE_YOUR_CALM (which
    // gRPC clients read as ResourceExhausted); the connection stays usable.
    await openStreams(0);
    expect(await closed).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(session.destroyed).toBe(false);
    // Cutting a reader off is not a fault of the server's.
    await sleep(200);
    expect(errors.mock.calls.map(([msg]) => msg)).toEqual([]);
    session.destroy();
  });
});

describe("consumers that leave while a write waits for them", () => {
  it.each([
    ["gRPC", createGrpcTransport],
    ["Connect over HTTP/1.1", createConnectTransport],
  ] as const)("end on the server with their calls (%s)", async (_, transport) => {
    const w = await bookingWorld(server.url);
    const streams = async () => (await scrape(server.url)).get("holdfast_event_streams") ?? 0;
    await vi.waitFor(async () => expect(await streams()).toBe(0), { timeout: 10_000 });
    await fillOutbox(w, 14_000);
    const events = createClient(
      EventService,
      transport({
        baseUrl: server.url,
        httpVersion: transport === createGrpcTransport ? "2" : "1.1",
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${w.key}`);
            return next(req);
          },
        ],
      }),
    );
    // Twenty consumers read the history slowly, so the server's writes wait
    // on them, and cancel part way.
    const callers = Array.from({ length: 20 }, () => new AbortController());
    const reading = callers.map(async (caller) => {
      const stream = events.watchEvents({ fromBeginning: true }, { signal: caller.signal });
      for await (const _ of stream) await sleep(300);
    });
    await sleep(4_000);
    for (const caller of callers) caller.abort();
    await Promise.allSettled(reading);
    // Each stream's generator, feed subscription and page end with its call,
    // not when the server stops.
    await vi.waitFor(async () => expect(await streams()).toBe(0), { timeout: 5_000 });
  });
});

describe("streams per tenant", () => {
  let capped: TestServer;
  beforeAll(async () => {
    capped = await startTestServer({ HOLDFAST_STREAMS_PER_TENANT: "2" });
  });

  it("refuses a tenant's stream past HOLDFAST_STREAMS_PER_TENANT, on every way in, and counts each until it ends", async () => {
    const a = await bookingWorld(capped.url);
    const b = await bookingWorld(capped.url);
    const events = clientFor(EventService, capped.url, a.key);
    const sse = (key: string) =>
      fetch(`${capped.url}/v1/events/stream`, { headers: { authorization: `Bearer ${key}` } });
    // One WatchEvents and one Server-Sent Events stream: the two allowed.
    const first = watch(events, {});
    const second = await sse(a.key);
    expect(second.status).toBe(200);
    await sleep(300);
    const refused = (async () => {
      for await (const _ of events.watchEvents({}, { timeoutMs: 5000 })) {
        // Nothing may come: the stream must be refused.
      }
    })();
    const err = await rejected(refused, Code.ResourceExhausted, "TOO_MANY_STREAMS");
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata.limit).toBe("2");
    const third = await sse(a.key);
    const body = (await third.json()) as { details?: { debug?: { reason?: string } }[] };
    expect([third.status, body.details?.[0]?.debug?.reason]).toEqual([429, "TOO_MANY_STREAMS"]);
    // Another tenant's streams are its own.
    const other = watch(clientFor(EventService, capped.url, b.key), {});
    await sleep(300);
    expect(other.failure()).toBeUndefined();
    // A stream that ends gives its place back.
    await second.body?.cancel();
    await vi.waitFor(
      async () => {
        const again = watch(events, {});
        await sleep(200);
        const failure = again.failure();
        await again.stop();
        expect(failure).toBeUndefined();
      },
      { timeout: 5_000, interval: 200 },
    );
    await first.stop();
    await other.stop();
  });
});

describe("across instances", () => {
  let other: ServerProcess;
  afterAll(async () => {
    await other?.stop();
  });

  it("an event committed through one process reaches a stream held open on another", async () => {
    // With its fallback poll a minute apart, only the notification can bring the event in time.
    other = await spawnServer({
      DATABASE_URL: server.databaseUrl,
      PORT: "0",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
      HOLDFAST_EVENT_POLL_MS: "60000",
    });
    const w = await bookingWorld(server.url);
    const stream = watch(clientFor(EventService, other.url, w.key), {});
    await sleep(300);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(4, 9),
    });
    const [event] = await stream.until(1, 20_000);
    await stream.stop();
    expect(event?.booking?.id).toBe(booking?.id);
  });

  it("a stream with HOLDFAST_ADMIN_KEY, which cannot be revoked, outlives a lost database connection", async () => {
    const w = await bookingWorld(server.url);
    const stream = watch(clientFor(EventService, server.url, ADMIN_KEY), {});
    await sleep(300);
    // Every session of the server's database ends, its LISTEN connection's too:
    // it reconnects and looks every watched key up again.
    const admin = new pg.Client({ connectionString: server.databaseUrl });
    await admin.connect();
    try {
      await admin.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
      );
    } finally {
      await admin.end();
    }
    await sleep(2_000);
    expect(stream.failure()).toBeUndefined();
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(5, 11) });
    await sleep(500);
    expect(stream.failure()).toBeUndefined();
    await stream.stop();
  });

  it(
    "a revoked key's open streams end with UNAUTHENTICATED, on every instance",
    { timeout: 60_000 },
    async () => {
      other ??= await spawnServer({
        DATABASE_URL: server.databaseUrl,
        PORT: "0",
        HOLDFAST_ADMIN_KEY: ADMIN_KEY,
      });
      const w = await bookingWorld(server.url);
      const keys = clientFor(KeyService, server.url, w.key);
      const { apiKey, key } = await keys.createApiKey({ scopes: ["events.read"] });
      // From the beginning of this new tenant's events: the hold below is seen
      // however late a stream opens.
      const here = watch(clientFor(EventService, server.url, apiKey), { fromBeginning: true });
      const there = watch(clientFor(EventService, other.url, apiKey), { fromBeginning: true });
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(5, 9),
      });
      expect(await here.until(1)).toHaveLength(1);
      expect(await there.until(1, 20_000)).toHaveLength(1);
      await keys.revokeApiKey({ apiKeyId: key?.id as string });
      const deadline = Date.now() + 10_000;
      while ((!here.failure() || !there.failure()) && Date.now() < deadline) await sleep(20);
      for (const stream of [here, there]) {
        const err = stream.failure() as ConnectError;
        expect(err?.code).toBe(Code.Unauthenticated);
        expect(err.findDetails(ErrorInfoSchema)[0]?.reason).toBe("UNAUTHENTICATED");
      }
      // Nothing after the revocation reaches either.
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(5, 10),
      });
      await sleep(300);
      expect(here.events).toHaveLength(1);
      expect(there.events).toHaveLength(1);
    },
  );
});

describe("heartbeats", () => {
  /** Reads a stream in the background, keeping every message: events and heartbeats. */
  function messages(
    client: ReturnType<typeof clientFor<typeof EventService>>,
    req: Parameters<typeof client.watchEvents>[0],
  ) {
    const abort = new AbortController();
    const got: { event?: Event; cursor: string }[] = [];
    let failure: unknown;
    const done = (async () => {
      try {
        for await (const { event, cursor } of client.watchEvents(req, { signal: abort.signal }))
          got.push(event ? { event, cursor } : { cursor });
      } catch (err) {
        if (!abort.signal.aborted) failure = err;
      }
    })();
    return {
      got,
      failure: () => failure,
      async stop() {
        abort.abort();
        await done;
      },
    };
  }
  const soon = { timeout: 15_000, interval: 20 };

  it("carry a filtered stream's cursor past the events it skipped, so it resumes after a drop and retention without CURSOR_EXPIRED", async () => {
    const own = await startTestServer({ HOLDFAST_STREAM_HEARTBEAT_MS: "200" });
    const w = await bookingWorld(own.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const filter = { resourceIds: [watched] };
    const events = clientFor(EventService, own.url, w.key);
    const hold = async (resourceId: string, hour: number) =>
      (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(11, hour) })).booking
        ?.id as string;
    const protocols = ["grpc", "connect"] as const;
    const streams = protocols.map((p) =>
      messages(clientFor(EventService, own.url, w.key, p), { filter, heartbeats: true }),
    );
    // A stream from now is told where it starts, before any event.
    await vi.waitFor(() => {
      for (const s of streams) expect(s.got.length).toBeGreaterThan(0);
    }, soon);
    const started = streams.map((s) => s.got[0] as { event?: Event; cursor: string });
    for (const m of started) {
      expect(m.event).toBeUndefined();
      expect(m.cursor).toMatch(/^ev2_/);
    }

    // Only events the filter skips.
    for (let h = 9; h < 12; h++) await hold(other, h);
    let all: Event[] = [];
    await vi.waitFor(async () => {
      all = (await events.listEvents({})).events;
      expect(all).toHaveLength(3);
    }, soon);
    const skippedLast = all.at(-1)?.cursor as string;
    // Once the stream has read past them, a heartbeat carries its cursor there.
    await vi.waitFor(() => {
      for (const s of streams) expect(s.got.at(-1)?.cursor).toBe(skippedLast);
    }, soon);
    for (const s of streams) {
      expect(s.got.every((m) => m.event === undefined)).toBe(true);
      // A heartbeat is sent only when the cursor has moved on.
      const cursors = s.got.map((m) => m.cursor);
      expect(new Set(cursors).size).toBe(cursors.length);
      expect(s.failure()).toBeUndefined();
      // The connection drops: no error carries a cursor.
      await s.stop();
    }

    // Longer than the retention later, the skipped events are deleted.
    await retireAll(own.databaseUrl);
    // Where the streams started is now expired; the heartbeat's cursor is not.
    await rejected(
      events.listEvents({ after: started[0]?.cursor as string, filter }),
      Code.FailedPrecondition,
      "CURSOR_EXPIRED",
    );
    expect((await events.listEvents({ after: skippedLast, filter })).events).toEqual([]);
    const resumed = protocols.map((p) =>
      messages(clientFor(EventService, own.url, w.key, p), {
        after: skippedLast,
        filter,
        heartbeats: true,
      }),
    );
    await hold(other, 12);
    const match = await hold(watched, 13);
    await vi.waitFor(() => {
      for (const r of resumed) {
        expect(r.failure()).toBeUndefined();
        expect(r.got.some((m) => m.event)).toBe(true);
      }
    }, soon);
    for (const r of resumed) {
      await r.stop();
      const sent = r.got.filter((m) => m.event);
      expect(sent.map((m) => m.event?.booking?.id)).toEqual([match]);
      // An event's message carries its cursor in both places.
      expect(sent.map((m) => m.cursor)).toEqual(sent.map((m) => m.event?.cursor));
    }
  });

  it("go only to a consumer that asks: an older client never meets a message without an event", async () => {
    // grpc-js with the proto as it was before heartbeats (no `cursor`
    // field in WatchEventsResponse), loaded at run time.
    const own = await startTestServer({ HOLDFAST_STREAM_HEARTBEAT_MS: "200" });
    const w = await bookingWorld(own.url);
    const before = await mkdtemp(join(tmpdir(), "holdfast-proto-"));
    onTestFinished(() => rm(before, { recursive: true, force: true }));
    await cp("proto", before, { recursive: true });
    const file = join(before, "holdfast/v1/event.proto");
    const text = await readFile(file, "utf8");
    expect(text).toContain("  string cursor = 2;\n}");
    await writeFile(file, text.replace("  string cursor = 2;\n}", "}"));
    const definition = protoLoader.loadSync("holdfast/v1/event.proto", {
      includeDirs: [before],
      longs: String,
    });
    const pkg = grpc.loadPackageDefinition(definition) as unknown as {
      holdfast: { v1: { EventService: grpc.ServiceClientConstructor } };
    };
    const client = new pkg.holdfast.v1.EventService(
      new URL(own.url).host,
      grpc.credentials.createInsecure(),
    );
    onTestFinished(() => client.close());
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${w.key}`);
    const watchEvents = client.watchEvents as (
      req: object,
      md: grpc.Metadata,
    ) => grpc.ClientReadableStream<unknown>;
    const call = watchEvents.call(client, {}, metadata);
    const got: { event?: { booking: { id: string } } }[] = [];
    call.on("data", (m: { event?: { booking: { id: string } } }) => got.push(m));
    call.on("error", () => {});
    onTestFinished(() => call.cancel());
    // Asked for heartbeats, a stream from now would have said where it
    // starts within 200 ms, as an empty message to this client.
    await sleep(1_000);
    expect(got).toEqual([]);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(11, 9),
    });
    await vi.waitFor(() => expect(got.length).toBeGreaterThan(0), soon);
    await sleep(1_000);
    expect(got.map((m) => m.event?.booking.id)).toEqual([booking?.id]);
  });
});

describe("streams per instance", () => {
  it("refuses a stream past HOLDFAST_STREAMS_MAX, whichever tenant asks, until one ends", async () => {
    const capped = await startTestServer({ HOLDFAST_STREAMS_MAX: "2" });
    const [a, b, c] = [
      await bookingWorld(capped.url),
      await bookingWorld(capped.url),
      await bookingWorld(capped.url),
    ];
    const first = watch(clientFor(EventService, capped.url, a.key), {});
    const second = watch(clientFor(EventService, capped.url, b.key), {});
    await sleep(300);
    const refused = (async () => {
      for await (const _ of clientFor(EventService, capped.url, c.key).watchEvents(
        {},
        { timeoutMs: 5000 },
      )) {
        // Nothing may come: the stream must be refused.
      }
    })();
    const err = await rejected(refused, Code.ResourceExhausted, "TOO_MANY_STREAMS");
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({
      limit: "2",
      scope: "instance",
    });
    const sse = await fetch(`${capped.url}/v1/events/stream`, {
      headers: { authorization: `Bearer ${c.key}` },
    });
    expect(sse.status).toBe(429);
    await sse.body?.cancel();
    await first.stop();
    await vi.waitFor(
      async () => {
        const again = watch(clientFor(EventService, capped.url, c.key), {});
        await sleep(200);
        const failure = again.failure();
        await again.stop();
        expect(failure).toBeUndefined();
      },
      { timeout: 5_000, interval: 200 },
    );
    await second.stop();
  });
});

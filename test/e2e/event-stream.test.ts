import { connect } from "node:http2";
import { EventSource } from "eventsource";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { loadConfig } from "../../src/config.js";
import { startHoldfast } from "../../src/server.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { clientFor, postJson } from "../support/clients.js";
import { freshDatabase, retireAll } from "../support/database.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_STREAM_HEARTBEAT_MS: "200" });
});

const soon = { timeout: 15_000, interval: 20 };

/** One Server-Sent Events block: its fields, and its comment lines. */
type Block = { id?: string; event?: string; data?: string; retry?: string; comments: string[] };

/**
 * Reads /v1/events/stream with fetch, as a browser's or a script's HTTP
 * client would, parsing blocks as they arrive until stopped.
 */
async function follow(
  baseUrl: string,
  key: string | undefined,
  query = "",
  headers: Record<string, string> = {},
) {
  const abort = new AbortController();
  const res = await fetch(`${baseUrl}/v1/events/stream${query}`, {
    headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    signal: abort.signal,
  });
  const blocks: Block[] = [];
  let ended = false;
  let failure: unknown;
  const reading = (async () => {
    if (!res.ok || !res.body) return;
    const decoder = new TextDecoder();
    let text = "";
    try {
      for await (const chunk of res.body) {
        text += decoder.decode(chunk as Uint8Array, { stream: true });
        for (let end = text.indexOf("\n\n"); end >= 0; end = text.indexOf("\n\n")) {
          const block: Block = { comments: [] };
          for (const line of text.slice(0, end).split("\n")) {
            if (line.startsWith(":")) block.comments.push(line.slice(1).trim());
            else {
              const at = line.indexOf(":");
              const field = line.slice(0, at) as "id" | "event" | "data" | "retry";
              block[field] = line.slice(at + 1).replace(/^ /, "");
            }
          }
          blocks.push(block);
          text = text.slice(end + 2);
        }
      }
      ended = true;
    } catch (err) {
      if (!abort.signal.aborted) failure = err;
    }
  })();
  const events = () =>
    blocks
      .filter((b) => b.data !== undefined && b.event === undefined)
      .map((b) => ({ ...(JSON.parse(b.data as string) as Record<string, unknown>), sseId: b.id }));
  return {
    res,
    blocks,
    events,
    ended: () => ended,
    failure: () => failure,
    async until(predicate: () => boolean, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate() && Date.now() < deadline && failure === undefined) await sleep(20);
      expect(failure).toBeUndefined();
      expect(predicate()).toBe(true);
    },
    async stop() {
      abort.abort();
      await reading;
    },
    reading,
  };
}

/**
 * The last event ID an EventSource would send on reconnecting: the `id` of
 * the last block that had one, with or without data (a block without data
 * sets it and dispatches no event).
 */
function lastEventId(blocks: Block[]): string | undefined {
  return blocks.findLast((b) => b.id !== undefined)?.id;
}

type Streamed = {
  sseId: string;
  type: string;
  cursor: string;
  booking: { id: string; resourceId: string; localStartTime: string; timeZone: string };
};

describe("GET /v1/events/stream", () => {
  it("streams matching events as Server-Sent Events, and resumes after Last-Event-ID", async () => {
    const w = await bookingWorld(server.url, { resources: 2 });
    const [r0, r1] = w.resourceIds as [string, string];
    const filter = `?types=booking.held,booking.confirmed&resource_ids=${r0}`;
    const first = await follow(server.url, w.key, filter);
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    // The opening comment says the stream has its starting point.
    await first.until(() => first.blocks.some((b) => b.comments.includes("open")));
    expect(first.blocks[0]?.retry).toBe("2000");

    const hold = async (resourceId: string, hour: number) =>
      (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(1, hour) })).booking
        ?.id as string;
    const a = await hold(r0, 9);
    await hold(r1, 9); // another resource: filtered out
    await w.bookings.confirmBooking({ bookingId: a });
    await w.bookings.cancelBooking({ bookingId: a }); // another type: filtered out
    await first.until(() => first.events().length >= 2);
    await sleep(300);
    await first.stop();
    const seen = first.events() as Streamed[];
    expect(seen.map((e) => [e.type, e.booking.id])).toEqual([
      ["booking.held", a],
      ["booking.confirmed", a],
    ]);
    // Each event's SSE id is its cursor; bookings carry their local times.
    for (const e of seen) expect(e.sseId).toBe(e.cursor);
    expect(seen[0]?.booking.localStartTime).toMatch(/T09:00:00\+00:00$/);
    expect(seen[0]?.booking.timeZone).toBe("UTC");

    // While nobody listens, more happens; the reconnect resumes after the last id seen.
    const b = await hold(r0, 11);
    await w.bookings.confirmBooking({ bookingId: b });
    const resumed = await follow(server.url, w.key, filter, {
      "Last-Event-ID": seen[1]?.sseId as string,
    });
    await resumed.until(() => resumed.events().length >= 2);
    await sleep(300);
    await resumed.stop();
    expect((resumed.events() as Streamed[]).map((e) => [e.type, e.booking.id])).toEqual([
      ["booking.held", b],
      ["booking.confirmed", b],
    ]);

    // from_beginning replays everything the filter matches.
    const all = await follow(server.url, w.key, `${filter}&from_beginning=true`);
    await all.until(() => all.events().length >= 4);
    await all.stop();
    expect((all.events() as Streamed[]).map((e) => e.booking.id)).toEqual([a, a, b, b]);
  });

  it("streams over HTTP/2 (h2c) too, as every path of the port does", async () => {
    const w = await bookingWorld(server.url);
    const session = connect(server.url);
    try {
      const stream = session.request({
        ":path": `/v1/events/stream?types=booking.held`,
        authorization: `Bearer ${w.key}`,
      });
      let text = "";
      stream.setEncoding("utf8");
      stream.on("data", (chunk: string) => {
        text += chunk;
      });
      const until = async (needle: string) => {
        for (let i = 0; i < 750 && !text.includes(needle); i++) await sleep(20);
        expect(text).toContain(needle);
      };
      await until(": open");
      const { booking } = await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
      });
      await until(booking?.id as string);
      expect(text).toContain('"type":"booking.held"');
      stream.close();
    } finally {
      session.close();
    }
  });

  it("ends with an UNAUTHENTICATED error event once its key is revoked", async () => {
    const w = await bookingWorld(server.url);
    const keys = clientFor(KeyService, server.url, w.key);
    const { apiKey, key } = await keys.createApiKey({ scopes: ["events.read"] });
    const stream = await follow(server.url, apiKey);
    await stream.until(() => stream.blocks.some((b) => b.comments.includes("open")));
    await keys.revokeApiKey({ apiKeyId: key?.id as string });
    await stream.until(() => stream.ended());
    const last = stream.blocks.at(-1);
    expect(last?.event).toBe("error");
    expect(JSON.stringify(JSON.parse(last?.data as string))).toContain("UNAUTHENTICATED");
    await stream.stop();
  });

  it("gives the client the stream's cursor as its last event ID once the filter skipped events", async () => {
    const w = await bookingWorld(server.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const s = await follow(server.url, w.key, `?resource_ids=${watched}`);
    await s.until(() => s.blocks.some((b) => b.comments.includes("open")));
    // The opening block names where the stream starts.
    const opened = s.blocks[0]?.id as string;
    expect(opened).toMatch(/^ev2_/);
    expect(s.blocks[0]?.event).toBe("heartbeat");
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: other,
      ...at(2, 9),
    });
    // A heartbeat carries the cursor past the skipped event, as a `heartbeat`
    // event: the cursor as its id, and as its data.
    await s.until(() =>
      s.blocks.some((b) => b.comments.includes("heartbeat") && b.id !== undefined),
    );
    const moved = s.blocks.find((b) => b.comments.includes("heartbeat") && b.id !== undefined);
    expect(moved?.event).toBe("heartbeat");
    expect(JSON.parse(moved?.data as string)).toEqual({ cursor: moved?.id });
    expect(moved?.id).not.toBe(opened);
    await sleep(500);
    await s.stop();
    expect(s.events()).toEqual([]);
    // Heartbeats repeat no id the client already has.
    const ids = s.blocks.flatMap((b) => (b.id === undefined ? [] : [b.id]));
    expect(new Set(ids).size).toBe(ids.length);
    // Resuming from it skips the event again, and brings the next match.
    const resumed = await follow(server.url, w.key, `?resource_ids=${watched}`, {
      "Last-Event-ID": lastEventId(s.blocks) as string,
    });
    await resumed.until(() => resumed.blocks.some((b) => b.comments.includes("open")));
    await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    const { booking: match } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: watched,
      ...at(2, 9),
    });
    await resumed.until(() => resumed.events().length >= 1);
    await sleep(300);
    await resumed.stop();
    expect((resumed.events() as Streamed[]).map((e) => e.booking.id)).toEqual([match?.id]);
  });

  it("sends the cursor in `heartbeat` events, which an EventSource library keeps as its last event ID", async () => {
    // The `eventsource` package (on eventsource-parser), which drops a block
    // with an id and no data, id and all.
    const w = await bookingWorld(server.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const source = new EventSource(`${server.url}/v1/events/stream?resource_ids=${watched}`, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...init?.headers, authorization: `Bearer ${w.key}` } }),
    });
    // Each event's id is what the library keeps, and sends as Last-Event-ID when it reconnects.
    const heartbeats: { id: string; cursor: string }[] = [];
    const messages: unknown[] = [];
    source.addEventListener("heartbeat", (e) => {
      const { cursor } = JSON.parse(e.data) as { cursor: string };
      heartbeats.push({ id: e.lastEventId, cursor });
    });
    source.onmessage = (e) => messages.push(e.data);
    try {
      // Where the stream starts, and then past the event the filter skips.
      await vi.waitFor(() => expect(heartbeats.length).toBeGreaterThan(0), soon);
      await w.bookings.createHold({ serviceId: w.serviceId, resourceId: other, ...at(2, 11) });
      const { events } = await clientFor(EventService, server.url, w.key).listEvents({});
      const skipped = events.at(-1)?.cursor as string;
      await vi.waitFor(() => expect(heartbeats.at(-1)?.cursor).toBe(skipped), soon);
      for (const h of heartbeats) expect(h.id).toBe(h.cursor);
      expect(heartbeats[0]?.cursor).not.toBe(skipped);
      expect(messages).toEqual([]);
    } finally {
      source.close();
    }
  });

  it("sends heartbeat comments while idle", async () => {
    const w = await bookingWorld(server.url);
    const s = await follow(server.url, w.key);
    await s.until(() => s.blocks.some((b) => b.comments.includes("heartbeat")));
    await s.stop();
    expect(s.events()).toEqual([]);
  });

  it("refuses bad requests before streaming, with the JSON errors of the RPCs", async () => {
    const w = await bookingWorld(server.url);
    const { apiKey: bookingsOnly } = await clientFor(KeyService, server.url, w.key).createApiKey({
      scopes: ["bookings.read"],
    });
    const cases: [string | undefined, string, Record<string, string>, number, string][] = [
      [undefined, "", {}, 401, "UNAUTHENTICATED"],
      ["hf_not_a_key", "", {}, 401, "UNAUTHENTICATED"],
      [bookingsOnly, "", {}, 403, "MISSING_SCOPE"],
      [w.key, "?type=booking.held", {}, 400, "MALFORMED_REQUEST"],
      [w.key, "?from_beginning=maybe", {}, 400, "MALFORMED_REQUEST"],
      [w.key, "?types=booking.exploded", {}, 400, "VALIDATION_ERROR"],
      [w.key, "?after=ev1_nope", {}, 400, "INVALID_CURSOR"],
      [w.key, "?after=ev1_zzzzzzzzzzzz_0", {}, 400, "INVALID_CURSOR"],
      [w.key, "", { "Last-Event-ID": "ev1_zzzzzzzzzzzz_0" }, 400, "INVALID_CURSOR"],
      [w.key, "", { "Last-Event-ID": "not-a-cursor" }, 400, "INVALID_CURSOR"],
    ];
    for (const [key, query, headers, status, reason] of cases) {
      const s = await follow(server.url, key, query, headers);
      const body = (await s.res.json()) as {
        code: string;
        details?: { type: string; debug?: { reason?: string } }[];
      };
      expect({ query, status: s.res.status, reason: body.details?.[0]?.debug?.reason }).toEqual({
        query,
        status,
        reason,
      });
    }
    const post = await fetch(`${server.url}/v1/events/stream`, {
      method: "POST",
      headers: { authorization: `Bearer ${w.key}` },
    });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET");
    // A JSON error like any refusal: a code, a stable reason, and what to do.
    const refused = (await post.json()) as {
      code?: string;
      message?: string;
      details?: { type: string; debug?: { reason?: string } }[];
    };
    expect(refused).toMatchObject({
      code: "invalid_argument",
      message: "POST cannot follow events: use GET /v1/events/stream (Server-Sent Events)",
      details: [{ type: "google.rpc.ErrorInfo", debug: { reason: "MALFORMED_REQUEST" } }],
    });
  });

  it("refuses what ListEvents refuses, with the same JSON error: list sizes before items", async () => {
    const w = await bookingWorld(server.url);
    const long = "x".repeat(70);
    const many = (n: number, value: string) => Array.from({ length: n }, () => value);
    const cases: [string, Record<string, string[]>][] = [
      ["21 types", { types: many(21, "booking.held") }],
      ["21 unknown types", { types: many(21, "booking.exploded") }],
      ["101 resource ids", { resourceIds: many(101, long) }],
      ["a resource id no row can have", { resourceIds: [long] }],
      ["a service id no row can have", { serviceIds: ["svc_1", long] }],
      ["a NUL character in a type", { types: ["booking.held\u0000"] }],
      ["a NUL character in a resource id", { resourceIds: ["rsc\u0000"] }],
    ];
    const param = { types: "types", resourceIds: "resource_ids", serviceIds: "service_ids" };
    const mismatches: unknown[] = [];
    for (const [name, filter] of cases) {
      const listed = await postJson(
        server.url,
        "holdfast.v1.EventService/ListEvents",
        { filter },
        w.key,
      );
      const query = new URLSearchParams();
      for (const [list, values] of Object.entries(filter)) {
        for (const value of values) query.append(param[list as keyof typeof param], value);
      }
      const s = await follow(server.url, w.key, `?${query}`);
      if (s.res.ok) await s.stop();
      const body = s.res.ok ? "a stream" : await s.res.json();
      const got = { name, status: s.res.status, body };
      const want = { name, status: 400, body: listed.body };
      if (JSON.stringify(got) !== JSON.stringify(want)) mismatches.push({ got, want });
    }
    expect(mismatches).toEqual([]);
    const [count] = jsonViolationsOf(
      (await (await follow(server.url, w.key, `?types=${many(21, "x").join(",")}`)).res.json()) as {
        details?: unknown[];
      },
    );
    expect(count).toEqual({
      field: "filter.types",
      description: "must list at most 20 items (got 21)",
    });
  });

  it("ends cleanly when the server stops, and resumes on another instance after Last-Event-ID", async () => {
    const databaseUrl = await freshDatabase();
    const own = await startHoldfast(
      loadConfig({ PORT: "0", HOLDFAST_ADMIN_KEY: ADMIN_KEY, HOLDFAST_LOG_LEVEL: "error" }),
      databaseUrl,
    );
    const w = await bookingWorld(own.url);
    const s = await follow(own.url, w.key);
    await s.until(() => s.blocks.some((b) => b.comments.includes("open")));
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) });
    await s.until(() => s.events().length === 1);
    await own.close();
    await s.reading;
    expect(s.failure()).toBeUndefined();
    expect(s.ended()).toBe(true);
    // No `event: error` block (an EventSource would report an error): the
    // stream just ends, and the client reconnects after the retry hint.
    expect(s.blocks.filter((b) => b.event === "error")).toEqual([]);

    // To any instance, with the id of the last event it saw.
    const next = await startTestServer({}, databaseUrl);
    const resumed = await follow(next.url, w.key, "", {
      "Last-Event-ID": s.events()[0]?.sseId as string,
    });
    await resumed.until(() => resumed.blocks.some((b) => b.comments.includes("open")));
    const { booking } = await clientFor(BookingService, next.url, w.key).createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 11),
    });
    await resumed.until(() => resumed.events().length >= 1);
    await sleep(300);
    await resumed.stop();
    expect((resumed.events() as Streamed[]).map((e) => e.booking.id)).toEqual([booking?.id]);
  });

  it("resumes a filtered stream after a stop from past the events it skipped, though retention deleted them", async () => {
    // Heartbeats far apart: the ids come from the opening and the end of the stream.
    const own = await startTestServer({
      HOLDFAST_EVENT_POLL_MS: "100",
      HOLDFAST_STREAM_HEARTBEAT_MS: "60000",
    });
    const w = await bookingWorld(own.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const filter = `?resource_ids=${watched}`;
    const hold = async (url: string, resourceId: string, hour: number) =>
      (
        await clientFor(BookingService, url, w.key).createHold({
          serviceId: w.serviceId,
          resourceId,
          ...at(3, hour),
        })
      ).booking?.id as string;
    // One stream gets a matching event, the other (opened after it) none;
    // then both only read events their filter skips.
    const matching = await follow(own.url, w.key, filter);
    await matching.until(() => matching.blocks.some((b) => b.comments.includes("open")));
    const matched = await hold(own.url, watched, 9);
    await matching.until(() => matching.events().length === 1);
    const matchedId = matching.events()[0]?.sseId;
    const none = await follow(own.url, w.key, filter);
    await none.until(() => none.blocks.some((b) => b.comments.includes("open")));
    for (let h = 10; h < 13; h++) await hold(own.url, other, h);
    const events = clientFor(EventService, own.url, w.key);
    for (let i = 0; i < 250 && (await events.listEvents({})).events.length < 4; i++)
      await sleep(20);
    await sleep(1_000);
    // Longer than the retention later, every event read so far is deleted.
    await retireAll(own.databaseUrl);
    await own.close();
    for (const s of [matching, none]) {
      await s.reading;
      expect(s.failure()).toBeUndefined();
      expect(s.ended()).toBe(true);
      expect(s.blocks.filter((b) => b.event === "error")).toEqual([]);
    }
    expect((matching.events() as Streamed[]).map((e) => e.booking.id)).toEqual([matched]);
    expect(none.events()).toEqual([]);
    // The stream that matched has moved its client past its event.
    expect(lastEventId(matching.blocks)).not.toBe(matchedId);

    // On another instance: a match commits while the clients reconnect, then another.
    const next = await startTestServer({}, own.databaseUrl);
    const meanwhile = await hold(next.url, watched, 14);
    const resumed = [];
    for (const s of [matching, none]) {
      const lastId = lastEventId(s.blocks);
      expect(lastId).toBeDefined();
      const r = await follow(next.url, w.key, filter, { "Last-Event-ID": lastId as string });
      expect(r.res.status).toBe(200);
      await r.until(() => r.blocks.some((b) => b.comments.includes("open")));
      resumed.push(r);
    }
    await hold(next.url, other, 15);
    const later = await hold(next.url, watched, 16);
    for (const r of resumed) {
      await r.until(() => r.events().length >= 2);
      await sleep(300);
      await r.stop();
      expect((r.events() as Streamed[]).map((e) => e.booking.id)).toEqual([meanwhile, later]);
    }
  });
});

/** The field violations of a Connect JSON error body. */
function jsonViolationsOf(body: { details?: unknown[] }) {
  return ((body.details ?? []) as { debug?: { fieldViolations?: unknown[] } }[]).flatMap(
    (d) => d.debug?.fieldViolations ?? [],
  );
}

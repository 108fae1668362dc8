import { create, toJson } from "@bufbuild/protobuf";
import { codeToHttpStatus, errorToJson } from "@connectrpc/connect/protocol-connect";
import {
  EventSchema,
  EventService,
  type WatchEventsRequest,
  WatchEventsRequestSchema,
} from "../../gen/holdfast/v1/event_pb.js";
import { clipText, Rejection } from "../domain/rejection.js";
import { log } from "../log.js";
import { authenticate, type Keyring, requiredScopeOf } from "./auth.js";
import { toConnectError } from "./errors.js";
import type { EventStream, OpenEventStream } from "./event-service.js";
import { cutOff, drained, type NodeRequest, type NodeResponse, writeConnectError } from "./http.js";
import { checkRequest } from "./limits.js";
import { localizeBookings, type ZoneLookup } from "./local-times.js";
import { rateLimited, rateLimitFields } from "./rate-limit.js";
import type { RateLimiter } from "./rate-limiter.js";

/**
 * WatchEvents for JSON-only consumers (browsers, curl, low-code tools), as
 * Server-Sent Events: `GET /v1/events/stream` with the bearer key. It sits
 * outside the `/holdfast.v1.*` paths because those are the RPC router's,
 * where every path is a method of the schema and clients of every protocol
 * expect its framing; `/v1/` is the API's version, as in `holdfast.v1`.
 * The query takes WatchEventsRequest's fields by their proto names, and
 * `Last-Event-ID` (every event's SSE id is its cursor) takes the place of
 * `after`, so an EventSource that reconnects resumes where it was; between
 * events, `heartbeat` events carry the stream's cursor as their id.
 * Opening it is rate limited like a call, with the same header fields, and
 * its request gets the checks of every RPC's (lists, ids, NUL characters),
 * refused with the same JSON errors before the stream starts.
 */
export const EVENT_STREAM_PATH = "/v1/events/stream";

export type EventStreamOptions = {
  keyring: Keyring;
  /** Opening a stream takes a token from the key's and the tenant's rate limits, as an RPC does. */
  limiter: RateLimiter;
  open: OpenEventStream;
  zones: ZoneLookup;
  /**
   * An idle stream sends a `: heartbeat` comment this often, so proxies keep
   * it open; in a `heartbeat` event with its cursor when that has moved on.
   */
  heartbeatMs: number;
  /** How long a client may leave the stream full (not reading) before it is cut off. */
  stallMs: number;
  /**
   * Aborts when the server begins a graceful stop: every stream then ends
   * cleanly (no `error` event, unlike WatchEvents' UNAVAILABLE), and its
   * client reconnects after the retry hint with Last-Event-ID.
   */
  stoppingSignal: AbortSignal;
  /** Aborts when the grace period of a stop is over: whatever still runs ends. */
  shutdownSignal: AbortSignal;
};

/** Suggested wait before an EventSource reconnects, e.g. after a restart. */
const RETRY_MS = 2_000;
const LISTS = { types: "types", resource_ids: "resourceIds", service_ids: "serviceIds" } as const;
const PARAMS = ["after", "from_beginning", ...Object.keys(LISTS)];

export function eventStreamHandler(
  opts: EventStreamOptions,
): (req: NodeRequest, res: NodeResponse) => void {
  const scope = requiredScopeOf(EventService.method.watchEvents);
  return (req, res) => {
    serve(req, res).catch((err: unknown) => log.debug("event stream ended", { err }));
  };

  async function serve(req: NodeRequest, res: NodeResponse): Promise<void> {
    if (req.method !== "GET") {
      res.setHeader("allow", "GET");
      const method = clipText(req.method ?? "", 20);
      const hint = `${method} cannot follow events: use GET ${EVENT_STREAM_PATH} (Server-Sent Events)`;
      writeConnectError(res, new Rejection("MALFORMED_REQUEST", hint), 405);
      return;
    }
    // The stream ends when the client goes, the server stops or the key is revoked.
    const gone = new AbortController();
    res.once("close", () => gone.abort());
    const revocation = opts.keyring.revocation(req.headers.authorization);
    res.once("close", () => revocation.stop());
    // The events end quietly once `signal` aborts. The server's stop is such
    // an end: the stream just ends, and the client reconnects with
    // Last-Event-ID (WatchEvents answers UNAVAILABLE instead).
    const stopped = AbortSignal.any([opts.stoppingSignal, opts.shutdownSignal]);
    const signal = AbortSignal.any([gone.signal, stopped, revocation.signal]);
    let events: EventStream;
    let tenantId: string;
    let watch: WatchEventsRequest;
    // The RateLimit fields, on every answer once the caller is known.
    let limitFields: Record<string, string> = {};
    try {
      const caller = await authenticate(opts.keyring, req.headers.authorization, scope);
      tenantId = caller.tenantId;
      const check = await opts.limiter.take(caller.tenantId, caller.keyId);
      limitFields = Object.fromEntries(rateLimitFields(check));
      if (!check.allowed) throw rateLimited(check);
      watch = requestOf(new URL(req.url ?? "", "http://holdfast").searchParams);
      const lastEventId = req.headers["last-event-id"];
      if (typeof lastEventId === "string" && lastEventId.trim() !== "")
        watch.after = lastEventId.trim();
      // What every RPC's request gets before its handler (WatchEvents' too).
      checkRequest(WatchEventsRequestSchema, watch);
      events = await opts.open(tenantId, watch, signal);
    } catch (err) {
      const error = toConnectError(err, { procedure: EVENT_STREAM_PATH });
      res.writeHead(codeToHttpStatus(error.code), {
        ...limitFields,
        "content-type": "application/json",
      });
      res.end(JSON.stringify(errorToJson(error, undefined)));
      return;
    }

    // HTTP/1.1 and HTTP/2 responses write alike; their types do not unite.
    const write = (text: string) => (res as { write(chunk: string): boolean }).write(text);
    res.writeHead(200, {
      ...limitFields,
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      // Reverse proxies such as nginx would otherwise hold events back.
      "x-accel-buffering": "no",
    });
    // The client's last event ID is where it resumes. Each event's is its
    // cursor; between events, the stream's own cursor moves on past events
    // its filter skips, and the client is given that too, in a `heartbeat`
    // event (`cursorEvent`): the cursor as its `id` and, as data,
    // `{"cursor": …}`. Otherwise a filtered stream that matched nothing for
    // longer than the retention would resume from a cursor already expired,
    // and one opened from now that matched nothing would resume from now
    // again, missing what committed while it reconnected. A block with an
    // `id` and no data would set the last event ID by the SSE specification,
    // but common parsers (eventsource-parser, under many EventSource
    // libraries) drop it, id and all, and a comment carries nothing; an
    // EventSource's `onmessage` does not see a named event, which still sets
    // its last event ID.
    // A client that named where to start (`after`, Last-Event-ID or
    // `from_beginning`) has that id already; one from now is sent where the
    // stream starts.
    let lastId = watch.after !== "" || watch.fromBeginning ? events.cursor() : undefined;
    // From receiving an event until asking for the next, the stream's cursor
    // may be behind the id just written: no other id is sent then.
    let busy = false;
    const idField = () => {
      if (busy) return "";
      const cursor = events.cursor();
      if (cursor === lastId) return "";
      lastId = cursor;
      return `id: ${cursor}\n`;
    };
    /** A `heartbeat` event's fields, when the stream's cursor is one to send. */
    const cursorEvent = () => {
      const id = idField();
      return id === ""
        ? ""
        : `event: heartbeat\n${id}data: ${JSON.stringify({ cursor: lastId })}\n`;
    };
    // The first bytes tell the client the stream is open: every event that
    // commits from now on (or after its cursor) will follow, and, from now,
    // with the stream's starting cursor as its last event ID, after a
    // reconnect too.
    let writable = write(`retry: ${RETRY_MS}\n: open\n${cursorEvent()}\n`);
    // Sent even when the cursor has not moved, so proxies keep an idle stream open.
    const heartbeat = setInterval(() => {
      if (writable) writable = write(`: heartbeat\n${cursorEvent()}\n`);
    }, opts.heartbeatMs);
    try {
      for await (const event of events) {
        busy = true;
        await localizeBookings(EventSchema, event, tenantId, opts.zones);
        const data = JSON.stringify(toJson(EventSchema, event));
        writable = write(`id: ${event.cursor}\ndata: ${data}\n\n`);
        lastId = event.cursor;
        // A client that stops reading fills the socket's buffer: wait for it
        // (the feed meanwhile keeps at most its bounded queue), and cut it
        // off if it stays full, as WatchEvents closes a consumer too slow.
        if (!writable) writable = await drained(res, signal, opts.stallMs);
        if (!writable && signal.aborted) break;
        if (!writable) {
          cutOff(res);
          return;
        }
        busy = false;
      }
      if (revocation.signal.aborted) throw revocation.signal.reason;
      // Ended by the server's stop: the client resumes from how far the
      // stream got, which may be past its last event.
      const block = gone.signal.aborted ? "" : cursorEvent();
      if (block !== "") write(`${block}\n`);
    } catch (err) {
      // Mid-stream failures (CONSUMER_TOO_SLOW, the database gone) end the
      // stream with an `error` event carrying the same JSON as an RPC error
      // (and the stream's cursor as its id, if it moved on since the last);
      // once the server is stopping, it just ends, as the README promises.
      const error = errorToJson(toConnectError(err, { procedure: EVENT_STREAM_PATH }), undefined);
      if (!gone.signal.aborted && !stopped.aborted) {
        write(`event: error\n${idField()}data: ${JSON.stringify(error)}\n\n`);
      }
    } finally {
      clearInterval(heartbeat);
    }
    res.end();
  }
}

/** The WatchEventsRequest a query string names; unknown or malformed parameters are refused. */
function requestOf(query: URLSearchParams): WatchEventsRequest {
  const req = create(WatchEventsRequestSchema, { filter: {} });
  const filter = req.filter as NonNullable<WatchEventsRequest["filter"]>;
  for (const name of new Set(query.keys())) {
    const values = query.getAll(name);
    if (name === "after" || name === "from_beginning") {
      if (values.length > 1) throw malformed(name, "must be given once");
      const value = values[0] as string;
      if (name === "after") req.after = value;
      else if (value === "true" || value === "1" || value === "") req.fromBeginning = true;
      else if (value !== "false" && value !== "0")
        throw malformed(name, 'must be "true" or "false"');
    } else if (name in LISTS) {
      // Repeated (types=a&types=b) or comma-separated (types=a,b).
      filter[LISTS[name as keyof typeof LISTS]].push(
        ...values.flatMap((v) => v.split(",")).filter((v) => v !== ""),
      );
    } else {
      throw malformed(name, `is not a parameter; parameters are ${PARAMS.join(", ")}`);
    }
  }
  return req;
}

function malformed(field: string, description: string): Rejection {
  return new Rejection("MALFORMED_REQUEST", `query parameter ${field} ${description}`, {
    fieldViolations: [{ field, description }],
  });
}

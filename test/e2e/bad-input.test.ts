import http2 from "node:http2";
import { setTimeout as sleep } from "node:timers/promises";
import { gzipSync } from "node:zlib";
import {
  create,
  type DescField,
  type DescMessage,
  type DescMethod,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingService, CreateHoldRequestSchema } from "../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { CatalogService, CreateServiceRequestSchema } from "../../gen/holdfast/v1/catalog_pb.js";
import {
  EventService,
  ListEventsRequestSchema,
  WatchEventsRequestSchema,
} from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ListResourcesRequestSchema, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { API_SERVICES } from "../../src/server.js";
import { at, bookingWorld, dayStart, minutes } from "../support/booking.js";
import {
  clientFor,
  envelope,
  fieldViolations,
  grpcJsClient,
  grpcJsReason,
  jsonReason,
  newTenant,
  postJson,
  rawConnect,
  rawGrpc,
  rawGrpcWeb,
  reasonOfStatusBin,
  rejected,
} from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * Bad input on every protocol: an InvalidArgument with a stable reason, an
 * answer that does not grow with the request, never Internal.
 */
let server: TestServer;
let key: string;
const MAX = 2 * 1024 * 1024;

beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_MAX_REQUEST_BYTES: String(MAX) });
  key = (await newTenant(server.url)).key;
});

const LIST = "holdfast.v1.ResourceService/ListResources";
const WATCH = "holdfast.v1.EventService/WatchEvents";
const HOLD = "holdfast.v1.BookingService/CreateHold";
const TIMESTAMP = "google.protobuf.Timestamp";
const auth = () => ({ authorization: `Bearer ${key}` });
const garbage = Uint8Array.from([0xff, 0xff, 0xff]);

describe("bodies that do not decode are MALFORMED_REQUEST on every protocol", () => {
  it("over gRPC and gRPC-Web, for a unary RPC and for WatchEvents", async () => {
    for (const procedure of [LIST, WATCH]) {
      for (const call of [rawGrpc, rawGrpcWeb]) {
        const reply = await call(server.url, procedure, envelope(garbage), auth());
        expect({ procedure, code: reply.code, reason: reply.reason }).toEqual({
          procedure,
          code: "InvalidArgument",
          reason: "MALFORMED_REQUEST",
        });
      }
    }
  });

  it("over gRPC and gRPC-Web: a compressed flag without an encoding, truncated envelopes, bad gzip", async () => {
    const ok = toBinary(ListResourcesRequestSchema, create(ListResourcesRequestSchema, {}));
    const cases: [string, Uint8Array, Record<string, string>][] = [
      ["compressed, no encoding", envelope(Uint8Array.from([1, 2, 3]), 1), {}],
      ["truncated", envelope(garbage).subarray(0, 6), {}],
      ["gzip that is not", envelope(garbage, 1), { "grpc-encoding": "gzip" }],
      ["an unknown encoding", envelope(ok), { "grpc-encoding": "zstd-from-mars" }],
      ["a bad flag", envelope(ok, 0x40), {}],
      ["two messages for a unary RPC", Buffer.concat([envelope(ok), envelope(ok)]), {}],
      ["no message", new Uint8Array(), {}],
    ];
    for (const [what, body, headers] of cases) {
      for (const call of [rawGrpc, rawGrpcWeb]) {
        const reply = await call(server.url, LIST, body, { ...auth(), ...headers });
        expect({ what, code: reply.code, reason: reply.reason }).toEqual({
          what,
          code: "InvalidArgument",
          reason: "MALFORMED_REQUEST",
        });
      }
    }
  });

  it("over Connect binary and Connect GET", async () => {
    const binary = await rawConnect(server.url, LIST, garbage, {
      ...auth(),
      "content-type": "application/proto",
    });
    expect([binary.status, binary.reason]).toEqual([400, "MALFORMED_REQUEST"]);
    const gzipped = await rawConnect(server.url, LIST, garbage, {
      ...auth(),
      "content-type": "application/proto",
      "content-encoding": "gzip",
    });
    expect([gzipped.status, gzipped.reason]).toEqual([400, "MALFORMED_REQUEST"]);
    for (const query of [
      "?message=!!!&encoding=json&base64=1",
      "?message=%7B&encoding=json",
      "?message=%7B%7D&encoding=yaml",
      "?message=AAA&encoding=proto&base64=1&compression=gzip",
    ]) {
      const get = await rawConnect(server.url, LIST, undefined, auth(), query);
      expect({ query, status: get.status, reason: get.reason }).toEqual({
        query,
        status: 400,
        reason: "MALFORMED_REQUEST",
      });
    }
    // Without its message, a GET is told that, not that a body is not JSON.
    const bare = await rawConnect(server.url, LIST, undefined, auth(), "?encoding=json");
    expect([bare.status, bare.reason, bare.message]).toEqual([
      400,
      "MALFORMED_REQUEST",
      "a Connect GET needs message=<the request> beside its encoding, e.g. ?encoding=json&message={}",
    ]);
  });

  it("still serves well-formed gzip and binary requests", async () => {
    const body = gzipSync(Buffer.from("{}"));
    const reply = await rawConnect(server.url, LIST, body, {
      ...auth(),
      "content-type": "application/json",
      "content-encoding": "gzip",
    });
    expect(reply.status).toBe(200);
    const grpc = await rawGrpc(
      server.url,
      LIST,
      envelope(
        gzipSync(toBinary(ListResourcesRequestSchema, create(ListResourcesRequestSchema))),
        1,
      ),
      { ...auth(), "grpc-encoding": "gzip" },
    );
    expect(grpc.code).toBe("OK");
  });
});

describe("text that is not UTF-8", () => {
  /** `bytes` with the first "§" (C2 A7) spoilt into FF A7, which is not UTF-8: same length. */
  const spoilt = (bytes: Uint8Array) => {
    const out = Buffer.from(bytes);
    out[out.indexOf(Buffer.from("§"))] = 0xff;
    return out;
  };

  it("is MALFORMED_REQUEST in JSON and binary bodies on every protocol, never stored as U+FFFD", async () => {
    const w = await bookingWorld(server.url);
    const times = at(1, 9);
    const iso = (t: { seconds: bigint }) => new Date(Number(t.seconds) * 1000).toISOString();
    const json = Buffer.from(
      JSON.stringify({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        startTime: iso(times.startTime),
        endTime: iso(times.endTime),
        attendee: { name: "Ada § Lovelace" },
      }),
    );
    const binary = toBinary(
      CreateHoldRequestSchema,
      create(CreateHoldRequestSchema, {
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...times,
        attendee: { name: "Ada § Lovelace" },
      }),
    );
    const bodies = { json: spoilt(json), binary: spoilt(binary) };
    const auth = { authorization: `Bearer ${w.key}` };
    const replies = {
      connectJson: await rawConnect(server.url, HOLD, bodies.json, {
        ...auth,
        "content-type": "application/json",
      }),
      connectProto: await rawConnect(server.url, HOLD, bodies.binary, {
        ...auth,
        "content-type": "application/proto",
      }),
      grpcJson: await rawGrpc(server.url, HOLD, envelope(bodies.json), {
        ...auth,
        "content-type": "application/grpc+json",
      }),
      grpcProto: await rawGrpc(server.url, HOLD, envelope(bodies.binary), auth),
      grpcWebJson: await rawGrpcWeb(server.url, HOLD, envelope(bodies.json), {
        ...auth,
        "content-type": "application/grpc-web+json",
      }),
      grpcWebProto: await rawGrpcWeb(server.url, HOLD, envelope(bodies.binary), auth),
    };
    for (const [name, reply] of Object.entries(replies)) {
      expect({ name, code: reply.code, reason: reply.reason }).toEqual({
        name,
        code: name.startsWith("connect") ? "invalid_argument" : "InvalidArgument",
        reason: "MALFORMED_REQUEST",
      });
    }
    expect(replies.connectJson.message).toContain("not valid UTF-8");
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
    // The same body in UTF-8 is a hold, its name as sent.
    const ok = await rawConnect(server.url, HOLD, json, {
      ...auth,
      "content-type": "application/json",
    });
    expect(ok.status).toBe(200);
    const [held] = (await w.bookings.listBookings({})).bookings;
    expect(held?.attendee?.name).toBe("Ada § Lovelace");
  });

  it("is MALFORMED_REQUEST in a Connect GET's message: percent-encoded, in base64, or raw over HTTP/2", async () => {
    const w = await bookingWorld(server.url);
    const GET_RESOURCE = "holdfast.v1.ResourceService/GetResource";
    const auth = { authorization: `Bearer ${w.key}` };
    const message = spoilt(Buffer.from(JSON.stringify({ resourceId: `${w.resourceId}§` })));
    const percent = [...message].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
    for (const query of [
      `?encoding=json&message=${percent}`,
      `?encoding=json&base64=1&message=${message.toString("base64url")}`,
    ]) {
      const get = await rawConnect(server.url, GET_RESOURCE, undefined, auth, query);
      expect({ query, status: get.status, reason: get.reason }).toEqual({
        query,
        status: 400,
        reason: "MALFORMED_REQUEST",
      });
    }
    // Bytes sent as they are over HTTP/2, not percent-encoded: not read as Latin-1.
    // (Node's HTTP/1.1 parser refuses them before any request exists.)
    const session = http2.connect(server.url);
    try {
      const raw = Buffer.from(JSON.stringify({ resourceId: `${w.resourceId}é` })).toString(
        "latin1",
      );
      const stream = session.request({
        ":method": "GET",
        ":path": `/${GET_RESOURCE}?encoding=json&message=${raw}`,
        ...auth,
      });
      const [status, body] = await new Promise<[unknown, string]>((resolve, reject) => {
        let status: unknown;
        let body = "";
        stream.on("response", (h) => {
          status = h[":status"];
        });
        stream.on("data", (chunk: Buffer) => {
          body += chunk.toString();
        });
        stream.on("end", () => resolve([status, body]));
        stream.on("error", reject);
      });
      expect([
        status,
        (JSON.parse(body) as { details?: { debug?: { reason?: string } }[] }).details?.[0]?.debug
          ?.reason,
      ]).toEqual([400, "MALFORMED_REQUEST"]);
    } finally {
      session.close();
    }
    // U+FFFD itself, sent in UTF-8, is a character like any other, beside a
    // % that starts no escape (kept as it is).
    const replacement = encodeURIComponent(JSON.stringify({ resourceId: `${w.resourceId}\ufffd` }));
    const get = await rawConnect(
      server.url,
      GET_RESOURCE,
      undefined,
      auth,
      `?encoding=json&message=${replacement}&note=100%`,
    );
    expect([get.status, get.reason, get.message]).toEqual([
      404,
      "RESOURCE_NOT_FOUND",
      `no resource with id "${w.resourceId}\ufffd"`,
    ]);
  });
});

/** The field violations of a Connect JSON error body. */
function jsonViolations(reply: { body: Record<string, unknown> }) {
  return ((reply.body.details ?? []) as { debug: { fieldViolations?: { field: string }[] } }[])
    .flatMap((d) => d.debug.fieldViolations ?? [])
    .map((v) => v.field);
}

describe("values JSON cannot say are refused, never stored altered", () => {
  const BINARY = ["grpc", "grpc-web", "connect-binary"] as const;

  it("NaN and ±Infinity in metadata: VALIDATION_ERROR naming where, with a key or without", async () => {
    const w = await bookingWorld(server.url);
    for (const protocol of BINARY) {
      const bookings = clientFor(BookingService, server.url, w.key, protocol);
      const resources = clientFor(ResourceService, server.url, w.key, protocol);
      for (const headers of [{}, { "idempotency-key": `nan-${protocol}` }]) {
        const hold = bookings.createHold(
          {
            serviceId: w.serviceId,
            resourceId: w.resourceId,
            ...at(1, 9),
            metadata: { a: 1, b: Number.NaN },
          },
          { headers },
        );
        const err = await rejected(hold, Code.InvalidArgument, "VALIDATION_ERROR");
        expect({ protocol, headers, fields: fieldViolations(err) }).toEqual({
          protocol,
          headers,
          fields: ["metadata.b"],
        });
        const resource = resources.createResource(
          { name: "R", timeZone: "UTC", metadata: { x: [Number.POSITIVE_INFINITY] } },
          { headers },
        );
        const err2 = await rejected(resource, Code.InvalidArgument, "VALIDATION_ERROR");
        expect(fieldViolations(err2)).toEqual(["metadata.x[0]"]);
      }
    }
    // Connect JSON: numbers beyond a double's range parse as ±Infinity.
    const { startTime, endTime } = at(1, 10);
    const body = `{"serviceId": "${w.serviceId}", "startTime": "${new Date(Number(startTime.seconds) * 1000).toISOString()}", "endTime": "${new Date(Number(endTime.seconds) * 1000).toISOString()}", "metadata": {"a": 1e400, "b": -1e999}}`;
    for (const headers of [{}, { "idempotency-key": "nan-json" }] as Record<string, string>[]) {
      const reply = await postJson(server.url, HOLD, body, w.key, headers);
      expect([reply.status, jsonReason(reply), jsonViolations(reply)]).toEqual([
        400,
        "VALIDATION_ERROR",
        ["metadata.a"],
      ]);
    }
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
    expect((await w.resources.listResources({})).resources).toHaveLength(1);
  });
});

describe("a NUL character in text", () => {
  it("is VALIDATION_ERROR naming the field, before anything is written, on every protocol", async () => {
    const w = await bookingWorld(server.url);
    for (const protocol of ["grpc", "connect", "connect-binary", "grpc-web"] as const) {
      const bookings = clientFor(BookingService, server.url, w.key, protocol);
      const resources = clientFor(ResourceService, server.url, w.key, protocol);
      const hold = bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
        attendee: { name: "Ada\u0000Lovelace" },
        metadata: { note: "a\u0000b", "two words": ["x", "\u0000"] },
      });
      const err = await rejected(hold, Code.InvalidArgument, "VALIDATION_ERROR");
      expect({ protocol, fields: fieldViolations(err) }).toEqual({
        protocol,
        fields: ["attendee.name", "metadata.note", 'metadata["two words"][1]'],
      });
      const created = resources.createResource({ name: "R\u0000", timeZone: "UTC" });
      expect(
        fieldViolations(await rejected(created, Code.InvalidArgument, "VALIDATION_ERROR")),
      ).toEqual(["name"]);
      const updated = resources.updateResource({
        resource: { id: w.resourceId, name: "\u0000" },
        updateMask: { paths: ["name"] },
      });
      expect(
        fieldViolations(await rejected(updated, Code.InvalidArgument, "VALIDATION_ERROR")),
      ).toEqual(["resource.name"]);
      const listed = bookings.listBookings({ metadata: { "k\u0000": "v" } });
      expect(
        fieldViolations(await rejected(listed, Code.InvalidArgument, "VALIDATION_ERROR")),
      ).toEqual(["metadata"]);
    }
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
    expect((await w.resources.listResources({})).resources.map((r) => r.name)).toEqual(["R0"]);
  });
});

describe("a NUL character in an id", () => {
  /**
   * [method, JSON body, proto path] for every id field (`id`, `*_id`,
   * `*_ids`) of every unary request, top level or inside a message
   * (`webhook.id`, `filter.resource_ids`), each holding a NUL character.
   */
  function idFields() {
    const found: [DescMethod, Record<string, unknown>, string][] = [];
    const walk = (
      method: DescMethod,
      desc: DescMessage,
      wrap: (v: unknown) => Record<string, unknown>,
      path: string,
      depth: number,
    ): void => {
      for (const f of desc.fields) {
        const at = path ? `${path}.${f.name}` : f.name;
        if (f.fieldKind === "list" && f.listKind === "scalar" && f.name.endsWith("_ids")) {
          found.push([method, wrap({ [f.jsonName]: ["id\u0000"] }), `${at}[0]`]);
        } else if (f.fieldKind === "scalar" && (f.name === "id" || f.name.endsWith("_id"))) {
          found.push([method, wrap({ [f.jsonName]: "id\u0000" }), at]);
        } else if (f.fieldKind === "message" && !f.message.typeName.startsWith("google.")) {
          if (depth < 3) walk(method, f.message, (v) => wrap({ [f.jsonName]: v }), at, depth + 1);
        }
      }
    };
    for (const service of API_SERVICES) {
      for (const method of service.methods) {
        if (method.methodKind === "unary") walk(method, method.input, (v) => v as never, "", 0);
      }
    }
    return found;
  }

  it("is VALIDATION_ERROR naming the field, in every request of every service", async () => {
    const fields = idFields();
    const named = fields.map(([m, , field]) => `${m.name}.${field}`);
    // Those that no handler parses, looked up as they are, among them.
    expect(named).toEqual(
      expect.arrayContaining([
        "GetWebhook.webhook_id",
        "DeleteWebhook.webhook_id",
        "RotateWebhookSecret.webhook_id",
        "SendTestEvent.webhook_id",
        "RetryDelivery.delivery_id",
        "UpdateWebhook.webhook.id",
        "GetBooking.booking_id",
        "ListEvents.filter.resource_ids[0]",
      ]),
    );
    const failures: unknown[] = [];
    for (const [method, body, field] of fields) {
      const procedure = `${method.parent.typeName}/${method.name}`;
      const caller = method.parent.typeName === "holdfast.v1.TenantService" ? ADMIN_KEY : key;
      const reply = await postJson(server.url, procedure, body, caller);
      const got = {
        status: reply.status,
        reason: jsonReason(reply),
        fields: jsonViolations(reply),
      };
      const want = { status: 400, reason: "VALIDATION_ERROR", fields: [field] };
      if (JSON.stringify(got) !== JSON.stringify(want)) failures.push({ procedure, field, got });
    }
    expect(failures).toEqual([]);
  });
});

describe("an id no row can have", () => {
  it("is VALIDATION_ERROR naming the field on every RPC, list filters and Update messages included", async () => {
    const w = await bookingWorld(server.url);
    const long = "r".repeat(65);
    const huge = `res_${"x".repeat(250_000)}`;
    const calls: [string, () => Promise<unknown>, string][] = [
      ["GetResource", () => w.resources.getResource({ resourceId: huge }), "resource_id"],
      [
        "UpdateResource",
        () =>
          w.resources.updateResource({
            resource: { id: long, name: "x" },
            updateMask: { paths: ["name"] },
          }),
        "resource.id",
      ],
      [
        "DeleteOverride",
        () => w.resources.deleteOverride({ resourceId: w.resourceId, overrideId: long }),
        "override_id",
      ],
      ["GetService", () => w.catalog.getService({ serviceId: long }), "service_id"],
      [
        "GetWebhook",
        () => clientFor(WebhookService, server.url, w.key).getWebhook({ webhookId: long }),
        "webhook_id",
      ],
      [
        "RevokeApiKey",
        () => clientFor(KeyService, server.url, w.key).revokeApiKey({ apiKeyId: long }),
        "api_key_id",
      ],
      [
        "RevokeCalendarFeed",
        () =>
          clientFor(CalendarFeedService, server.url, w.key).revokeCalendarFeed({
            calendarFeedId: long,
          }),
        "calendar_feed_id",
      ],
      [
        "ListEvents",
        () =>
          clientFor(EventService, server.url, w.key).listEvents({
            filter: { resourceIds: [w.resourceId, huge] },
          }),
        "filter.resource_ids[1]",
      ],
      ["GetBooking", () => w.bookings.getBooking({ bookingId: long }), "booking_id"],
      ["ListBookings", () => w.bookings.listBookings({ serviceId: long }), "service_id"],
    ];
    for (const [method, call, field] of calls) {
      const err = await rejected(call(), Code.InvalidArgument, "VALIDATION_ERROR");
      expect({ method, fields: fieldViolations(err) }).toEqual({ method, fields: [field] });
      expect(err.rawMessage.length).toBeLessThan(500);
    }
  });
});

describe("a JSON Timestamp on a day its month does not have", () => {
  it("is MALFORMED_REQUEST naming the field, in a POST body and in a Connect GET", async () => {
    const w = await bookingWorld(server.url);
    // The 31st of the next month that has 30 days: protobuf-es alone reads it as the 1st.
    const month = new Date(dayStart(1));
    while (
      new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 0)).getUTCDate() !== 30
    )
      month.setUTCMonth(month.getUTCMonth() + 1, 1);
    const day = `${month.toISOString().slice(0, 7)}-31`;
    const hold = await postJson(
      server.url,
      HOLD,
      {
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        startTime: `${day}T16:00:00Z`,
        endTime: `${day}T16:30:00Z`,
      },
      w.key,
    );
    expect([hold.status, jsonReason(hold), jsonViolations(hold)]).toEqual([
      400,
      "MALFORMED_REQUEST",
      ["start_time"],
    ]);
    expect(hold.body.message).toContain("has 30 days");
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
    const message = JSON.stringify({
      serviceId: w.serviceId,
      startTime: `${day}T00:00:00Z`,
      endTime: `${day}T23:00:00Z`,
    });
    const get = await rawConnect(
      server.url,
      "holdfast.v1.AvailabilityService/ListSlots",
      undefined,
      { authorization: `Bearer ${w.key}` },
      `?encoding=json&message=${encodeURIComponent(message)}`,
    );
    expect([get.status, get.reason]).toEqual([400, "MALFORMED_REQUEST"]);
    expect(get.message).toContain("start_time: expected an RFC 3339 time");
  });
});

describe("a Timestamp whose nanos are out of range", () => {
  /**
   * [method, field] for every Timestamp field of every request message. The
   * only nested ones are the output-only times of the entity an Update call
   * sends, which it never reads; any other would need a case of its own.
   */
  function timestampFields() {
    const found: [DescMethod, DescField][] = [];
    const nested: string[] = [];
    const walk = (desc: DescMessage, path: string, depth: number): void => {
      for (const f of desc.fields) {
        const m = f.fieldKind === "scalar" || f.fieldKind === "enum" ? undefined : f.message;
        if (m?.typeName === TIMESTAMP && depth > 0) nested.push(`${path}.${f.name}`);
        else if (m && !m.typeName.startsWith("google.") && depth < 5) {
          walk(m, `${path}.${f.name}`, depth + 1);
        }
      }
    };
    for (const service of API_SERVICES) {
      for (const method of service.methods) {
        walk(method.input, method.name, 0);
        for (const f of method.input.fields) {
          if (f.fieldKind === "message" && f.message.typeName === TIMESTAMP)
            found.push([method, f]);
        }
      }
    }
    expect(nested.filter((p) => !/^Update\w+\.\w+\.(create|update)_time$/.test(p))).toEqual([]);
    return found;
  }

  it("is VALIDATION_ERROR naming the field, in every request, with a key or without", async () => {
    const fields = timestampFields();
    expect(fields.length).toBeGreaterThanOrEqual(10);
    const seconds = BigInt(Math.floor(dayStart(1) / 1000));
    for (const [method, field] of fields) {
      for (const nanos of [1_000_000_000, -1, 2_000_000_000]) {
        const request = create(method.input, { [field.localName]: { seconds, nanos } });
        const procedure = `${method.parent.typeName}/${method.name}`;
        const keys: Record<string, string>[] = [
          {},
          { "idempotency-key": `nanos-${procedure}-${field.name}-${nanos}` },
        ];
        for (const key of keys) {
          const reply = await rawGrpc(
            server.url,
            procedure,
            envelope(toBinary(method.input, request)),
            { ...auth(), ...key },
          );
          expect({ procedure, nanos, code: reply.code, reason: reply.reason }).toEqual({
            procedure,
            nanos,
            code: "InvalidArgument",
            reason: "VALIDATION_ERROR",
          });
          expect(reply.message).toContain(`${field.name}: nanos must be from 0 to 999999999`);
        }
      }
    }
  });
});

describe("bodies over the cap are REQUEST_TOO_LARGE at every size", () => {
  it.each([MAX + 1, 3 * MAX, 8 * MAX])("%i bytes", async (size) => {
    const json = JSON.stringify({ pageToken: "x".repeat(size) });
    const reply = await postJson(server.url, LIST, json, key);
    expect([reply.status, jsonReason(reply)]).toEqual([400, "REQUEST_TOO_LARGE"]);
    const grpc = await rawGrpc(server.url, LIST, envelope(Buffer.alloc(size)), auth());
    expect([grpc.code, grpc.reason]).toEqual(["InvalidArgument", "REQUEST_TOO_LARGE"]);
    // The limit named is the one configured, not it plus the envelope's five bytes.
    expect(grpc.message).toContain(`limit of ${MAX} bytes`);
  });

  it("counts the size after decompression too", async () => {
    const bomb = gzipSync(Buffer.from(JSON.stringify({ pageToken: "x".repeat(4 * MAX) })));
    expect(bomb.byteLength).toBeLessThan(MAX);
    const reply = await rawConnect(server.url, LIST, bomb, {
      ...auth(),
      "content-type": "application/json",
      "content-encoding": "gzip",
    });
    expect([reply.status, reply.reason]).toEqual([400, "REQUEST_TOO_LARGE"]);
  });
});

describe("long lists", () => {
  it("are refused before their items are looked at, with a short answer", async () => {
    const events = clientFor(EventService, server.url, key);
    const types = Array.from({ length: 50_000 }, (_, i) => `bad.${i}`);
    const request = create(ListEventsRequestSchema, { filter: { types } });
    const err = await rejected(
      events.listEvents(request),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["filter.types"]);
    const json = await postJson(
      server.url,
      "holdfast.v1.EventService/ListEvents",
      { filter: { types } },
      key,
    );
    expect(JSON.stringify(json.body).length).toBeLessThan(2_000);
  });

  it("a map filter has a maximum too: ListBookings' metadata takes at most 20 keys", async () => {
    const labels = (n: number) =>
      Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${i}`, "v"]));
    for (const protocol of ["grpc", "connect"] as const) {
      const bookings = clientFor(BookingService, server.url, key, protocol);
      const err = await rejected(
        bookings.listBookings({ metadata: labels(200) }),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      expect(fieldViolations(err)).toEqual(["metadata"]);
      expect(err.rawMessage).toContain("at most 20 keys (got 200)");
      expect((await bookings.listBookings({ metadata: labels(20) })).bookings).toEqual([]);
    }
  });

  it("in a policy cannot crash the server, whatever their length", async () => {
    const catalog = clientFor(CatalogService, server.url, key);
    const businessHours = Array.from({ length: 80_000 }, () => ({
      weekday: 1,
      startTime: "09:00",
      endTime: "17:00",
    }));
    const request = create(CreateServiceRequestSchema, {
      name: "S",
      policy: { durations: [minutes(30)], businessHours },
    });
    expect(toBinary(CreateServiceRequestSchema, request).byteLength).toBeLessThan(MAX);
    const err = await rejected(
      catalog.createService(request),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["policy.business_hours"]);
  });

  it("report at most 20 violations, and how many more there are", async () => {
    const reply = await postJson(
      server.url,
      "holdfast.v1.CatalogService/CreateService",
      {
        name: "S",
        policy: {
          durations: Array.from({ length: 20 }, () => "7s"),
          businessHours: Array.from({ length: 100 }, () => ({
            weekday: 9,
            startTime: "x",
            endTime: "y",
          })),
        },
      },
      key,
    );
    const violations = (reply.body.details as { debug: { fieldViolations?: unknown[] } }[]).flatMap(
      (d) => d.debug.fieldViolations ?? [],
    );
    expect(violations).toHaveLength(20);
    expect(reply.body.message).toMatch(/and \d+ more$/);
  });
});

describe("a field the request does not have", () => {
  it("is named as the caller sent it, with the nearest real field", async () => {
    const reply = await postJson(
      server.url,
      "holdfast.v1.AvailabilityService/ListSlots",
      { serviceID: "svc_1" },
      key,
    );
    expect(reply.status).toBe(400);
    const v = (
      reply.body.details as {
        debug: { fieldViolations?: { field: string; description: string }[] };
      }[]
    ).flatMap((d) => d.debug.fieldViolations ?? []);
    expect(v[0]?.field).toBe("serviceID");
    expect(v[0]?.description).toContain('"serviceId"');
  });
});

describe("deadlines", () => {
  it("a deadline that passes ends WatchEvents with DeadlineExceeded, never OK", async () => {
    const request = envelope(toBinary(WatchEventsRequestSchema, create(WatchEventsRequestSchema)));
    for (const call of [rawGrpc, rawGrpcWeb]) {
      const reply = await call(server.url, WATCH, request, { ...auth(), "grpc-timeout": "300m" });
      expect([reply.code, reply.reason]).toEqual(["DeadlineExceeded", "DEADLINE_EXCEEDED"]);
    }
  });

  it("a deadline too long for a timer is clamped, so the stream stays open", async () => {
    const w = await bookingWorld(server.url);
    const deadlines = [
      { "grpc-timeout": "99999999H" },
      { "connect-timeout-ms": "2147483648" },
      { "connect-timeout-ms": "9999999999" },
    ];
    for (const [i, headers] of deadlines.entries()) {
      const protocol = "grpc-timeout" in headers ? "grpc" : "connect";
      const events = clientFor(EventService, server.url, w.key, protocol);
      const abort = new AbortController();
      const stream = events.watchEvents({}, { headers, signal: abort.signal });
      const first = stream[Symbol.asyncIterator]().next();
      // An event that happens after the stream opened still arrives on it.
      await new Promise((r) => setTimeout(r, 300));
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9 + i),
      });
      const got = await first;
      expect({ headers, done: got.done }).toEqual({ headers, done: false });
      abort.abort();
    }
  });

  it("a deadline that does not parse is MALFORMED_REQUEST", async () => {
    const reply = await rawGrpc(server.url, LIST, envelope(new Uint8Array()), {
      ...auth(),
      "grpc-timeout": "soon",
    });
    expect([reply.code, reply.reason]).toEqual(["InvalidArgument", "MALFORMED_REQUEST"]);
    const connect = await rawConnect(server.url, LIST, "{}", {
      ...auth(),
      "content-type": "application/json",
      "connect-timeout-ms": "-5",
    });
    expect([connect.status, connect.reason]).toEqual([400, "MALFORMED_REQUEST"]);
  });
});

describe("errors that teach", () => {
  type Violation = { field: string; description: string };
  const violationsOf = (reply: { body: Record<string, unknown> }) =>
    ((reply.body.details ?? []) as { debug: { fieldViolations?: Violation[] } }[]).flatMap(
      (d) => d.debug.fieldViolations ?? [],
    );

  it.each([
    [{ duration: 1800 }, "duration", '"1800s"'],
    [{ startTime: "2030-03-04T00:00:00" }, "start_time", '"2030-03-04T09:00:00Z"'],
    [{ pageSize: "ten" }, "page_size", "whole number"],
    [{ resourceIds: "rsc_1" }, "resource_ids", "JSON array"],
  ])("a field error names the field and the expected format: %j", async (body, field, example) => {
    const reply = await postJson(
      server.url,
      "holdfast.v1.AvailabilityService/ListSlots",
      { serviceId: "svc_1", ...body },
      key,
    );
    expect([reply.status, jsonReason(reply)]).toEqual([400, "MALFORMED_REQUEST"]);
    const [v] = violationsOf(reply);
    expect(v?.field).toBe(field);
    expect(v?.description).toContain(example);
    expect(reply.body.message).toContain(`${field}: expected`);
  });

  it("a value nested too deeply says so, and the limit", async () => {
    const deep = `${"[".repeat(99)}1${"]".repeat(99)}`;
    const reply = await postJson(
      server.url,
      HOLD,
      `{"slotId": "x", "metadata": {"a": ${deep}}}`,
      key,
    );
    expect(jsonReason(reply)).toBe("MALFORMED_REQUEST");
    const [v] = violationsOf(reply);
    expect(v?.field).toBe("metadata");
    expect(v?.description).toContain("nested too deeply");
    expect(v?.description).toContain("100 levels");
  });

  it("an unknown enum value lists the accepted values", async () => {
    const reply = await postJson(
      server.url,
      "holdfast.v1.BookingService/ListBookings",
      { statuses: ["CANCELLED"] },
      key,
    );
    expect(jsonReason(reply)).toBe("MALFORMED_REQUEST");
    const [v] = violationsOf(reply);
    expect(v?.field).toBe("statuses[0]");
    expect(v?.description).toContain('"BOOKING_STATUS_CANCELLED"');
  });

  it("a missing or wrong Content-Type says to send application/json", async () => {
    for (const headers of [
      { "content-type": "application/x-www-form-urlencoded" },
      {} as Record<string, string>,
      { "content-type": "text/plain" },
    ]) {
      const reply = await rawConnect(server.url, LIST, "{}", { ...auth(), ...headers });
      expect([reply.status, reply.reason]).toEqual([415, "UNSUPPORTED_CONTENT_TYPE"]);
      expect(reply.message).toContain("Content-Type: application/json");
    }
  });

  it("gRPC-Web's text mode is told to use the binary mode", async () => {
    const reply = await rawConnect(server.url, LIST, "AAAAAAA=", {
      ...auth(),
      "content-type": "application/grpc-web-text",
    });
    expect([reply.status, reply.reason]).toEqual([415, "UNSUPPORTED_CONTENT_TYPE"]);
    expect(reply.message).toContain("application/grpc-web+proto");
  });

  it("another HTTP method, or a GET of a write, says how to call instead", async () => {
    const put = await fetch(`${server.url}/${LIST}`, {
      method: "PUT",
      headers: { ...auth(), "content-type": "application/json" },
      body: "{}",
    });
    expect(put.status).toBe(405);
    expect(((await put.json()) as { message: string }).message).toContain("use POST");
    const get = await rawConnect(
      server.url,
      "holdfast.v1.ResourceService/CreateResource",
      undefined,
      auth(),
      "?encoding=json&message={}",
    );
    expect([get.status, get.reason]).toEqual([405, "MALFORMED_REQUEST"]);
    expect(get.message).toContain("POST");
  });

  it("plain JSON to WatchEvents points to the Server-Sent Events path and to ListEvents", async () => {
    const reply = await rawConnect(server.url, WATCH, "{}", {
      ...auth(),
      "content-type": "application/json",
    });
    expect([reply.status, reply.reason]).toEqual([415, "UNSUPPORTED_CONTENT_TYPE"]);
    expect(reply.message).toContain("GET /v1/events/stream");
    expect(reply.message).toContain("ListEvents");
    const get = await rawConnect(server.url, WATCH, undefined, auth(), "?encoding=json&message={}");
    expect(get.message).toContain("/v1/events/stream");
  });
});

describe("an oversize message over HTTP/2", () => {
  /**
   * A raw HTTP/2 call that sends its headers, then up to `total` bytes of
   * body as fast as the server takes them (a gRPC envelope declaring them
   * all, or JSON), without ending it: the answer it got, how much it sent
   * before its stream closed, and the reset's code. A stream the server
   * neither reads nor closes stalls the sender: after 3 s of that it stops.
   */
  async function flood(contentType: string, total: number) {
    const session = http2.connect(server.url);
    session.on("error", () => {});
    try {
      const stream = session.request({
        ":method": "POST",
        ":path": `/${LIST}`,
        "content-type": contentType,
        te: "trailers",
        ...auth(),
      });
      stream.on("error", () => {});
      stream.setMaxListeners(0);
      const head: Record<string, unknown> = {};
      stream.on("response", (h) => Object.assign(head, h));
      stream.on("trailers", (t) => Object.assign(head, t));
      let body = "";
      stream.setEncoding("utf8");
      stream.on("data", (text: string) => {
        body += text;
      });
      const closed = new Promise<"closed">((resolve) =>
        stream.once("close", () => resolve("closed")),
      );
      const stalled = () => sleep(3_000).then(() => "stalled" as const);
      let sent = 0;
      if (contentType.startsWith("application/grpc")) {
        const prefix = Buffer.alloc(5);
        prefix.writeUInt32BE(total - 5, 1);
        stream.write(prefix);
        sent += prefix.byteLength;
      }
      const chunk = Buffer.alloc(64 * 1024, 0x20);
      let state: "sending" | "closed" | "stalled" = "sending";
      while (state === "sending" && sent < total && !stream.closed) {
        sent += chunk.byteLength;
        if (!stream.write(chunk)) {
          const drained = new Promise<"sending">((r) => stream.once("drain", () => r("sending")));
          state = await Promise.race([drained, closed, stalled()]);
        }
      }
      if (state !== "stalled") state = await Promise.race([closed, stalled()]);
      const json = body.startsWith("{") ? (JSON.parse(body) as Record<string, unknown>) : {};
      return {
        status: head[":status"],
        grpcStatus: head["grpc-status"],
        reason: ((json.details ?? []) as { debug?: { reason?: string } }[])[0]?.debug?.reason,
        grpcReason: reasonOfStatusBin(head["grpc-status-details-bin"] as string | undefined),
        state,
        rstCode: stream.rstCode,
        sent,
      };
    } finally {
      session.destroy();
    }
  }

  it("is answered at once, and the sender is told to stop (RST_STREAM NO_ERROR)", async () => {
    const total = 16 * MAX;
    const grpc = await flood("application/grpc+proto", total);
    expect(grpc).toMatchObject({
      status: 200,
      grpcStatus: String(Code.InvalidArgument),
      grpcReason: "REQUEST_TOO_LARGE",
      state: "closed",
      rstCode: http2.constants.NGHTTP2_NO_ERROR,
    });
    const json = await flood("application/json", total);
    expect(json).toMatchObject({
      status: 400,
      reason: "REQUEST_TOO_LARGE",
      state: "closed",
      rstCode: http2.constants.NGHTTP2_NO_ERROR,
    });
    // Stopped after about the limit and a flow-control window, not the 32 MiB.
    expect(grpc.sent).toBeLessThan(2 * MAX);
    expect(json.sent).toBeLessThan(2 * MAX);
  });

  it("still reaches grpc-js and Connect clients with its code and reason", async () => {
    const pageToken = "x".repeat(3 * MAX);
    const client = grpcJsClient(server.url, "holdfast/v1/resource.proto", "ResourceService", key);
    try {
      const err = (await client.call("ListResources", { pageToken }).catch((e: unknown) => e)) as
        | grpc.ServiceError
        | undefined;
      expect([err?.code, err && grpcJsReason(err)]).toEqual([
        grpc.status.INVALID_ARGUMENT,
        "REQUEST_TOO_LARGE",
      ]);
    } finally {
      client.close();
    }
    const transports = {
      grpc: createGrpcTransport({ baseUrl: server.url }),
      connect: createConnectTransport({ baseUrl: server.url, httpVersion: "2" }),
    };
    for (const [name, transport] of Object.entries(transports)) {
      const resources = createClient(ResourceService, transport);
      const call = resources.listResources({ pageToken }, { headers: auth() });
      const err = await rejected(call, Code.InvalidArgument, "REQUEST_TOO_LARGE");
      expect([name, err.message]).toEqual([name, expect.stringContaining("exceeds the limit")]);
    }
  });
});

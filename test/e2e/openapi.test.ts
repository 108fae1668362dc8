import { readFileSync } from "node:fs";
import { Validator } from "@seriousme/openapi-schema-validator";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { describe, expect, it } from "vitest";
import { requiredScopeOf } from "../../src/rpc/auth.js";
import { API_SERVICES } from "../../src/server.js";
import { ADMIN_KEY, startTestServer } from "../support/server.js";

/**
 * The OpenAPI document of the Connect JSON API: valid OpenAPI 3.1 by a
 * maintained validator, complete against the proto, served as generated,
 * and true to the running server: a client that knows only the document
 * completes the booking flow, and every answer matches its schema.
 */

// biome-ignore lint/suspicious/noExplicitAny: an OpenAPI document is plain JSON
type Json = any;

const server = await startTestServer();
const doc: Json = JSON.parse(readFileSync("gen/openapi/holdfast.v1.openapi.json", "utf8"));

const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addFormat("int32", true);
ajv.addFormat("int64", true);
ajv.addSchema({ $id: "openapi.json", components: doc.components });

function operation(operationId: string): { path: string; op: Json } {
  for (const [path, item] of Object.entries<Json>(doc.paths)) {
    if (item.post?.operationId === operationId) return { path, op: item.post };
  }
  throw new Error(`no operation ${operationId}`);
}

function schemaRef(schema: Json): Json {
  return { $ref: `openapi.json${schema.$ref}` };
}

type Answer = { status: number; body: Json; reason?: string };

/**
 * A client that knows only the document: the path and the header names come
 * from it, and every answer is checked against the schema it declares.
 */
async function call(
  operationId: string,
  body: Json,
  key: string,
  opts: { idempotencyKey?: string; url?: string } = {},
): Promise<Answer> {
  const { path, op } = operation(operationId);
  const headers: Record<string, string> = {
    "content-type": Object.keys(op.requestBody.content)[0] as string,
    authorization: `Bearer ${key}`,
  };
  if (opts.idempotencyKey) {
    const param = (op.parameters as Json[]).map(
      (p) => doc.components.parameters[p.$ref.split("/").pop()],
    );
    const name = param.find((p) => p.in === "header")?.name;
    expect(name, `${operationId} takes an Idempotency-Key`).toBe("Idempotency-Key");
    headers[name] = opts.idempotencyKey;
  }
  // The request itself matches the document.
  const requestSchema = op.requestBody.content["application/json"].schema;
  const validRequest = ajv.validate(schemaRef(requestSchema), body);
  expect(validRequest, `${operationId} request: ${ajv.errorsText()}`).toBe(true);
  const res = await fetch(`${opts.url ?? server.url}${path}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  const answer: Answer = { status: res.status, body: await res.json() };
  const declared = op.responses[String(res.status)] ?? op.responses.default;
  const valid = ajv.validate(schemaRef(declared.content["application/json"].schema), answer.body);
  expect(
    valid,
    `${operationId} ${res.status}: ${ajv.errorsText()} in ${JSON.stringify(answer.body)}`,
  ).toBe(true);
  if (res.status !== 200) {
    answer.reason = answer.body.details?.find(
      (d: Json) => d.type === "google.rpc.ErrorInfo",
    )?.debug?.reason;
    expect(op["x-holdfast-reasons"], `${operationId} lists ${answer.reason}`).toContain(
      answer.reason,
    );
  }
  return answer;
}

describe("the OpenAPI document", () => {
  it("is valid OpenAPI 3.1", async () => {
    const result = await new Validator().validate(doc);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(doc.openapi).toBe("3.1.0");
  });

  it("describes every unary RPC with its scope, bearer auth and, for mutations, Idempotency-Key", () => {
    for (const service of API_SERVICES) {
      for (const method of service.methods) {
        if (method.methodKind !== "unary") continue;
        const item = doc.paths[`/${service.typeName}/${method.name}`];
        expect(item, `${service.name}.${method.name}`).toBeDefined();
        const scope = requiredScopeOf(method);
        expect(item.post["x-holdfast-required-scope"]).toBe(scope);
        expect(item.post.security).toEqual([{ bearer: scope === "*" ? [] : [scope] }]);
        const mutation = method.idempotency !== 1;
        expect(item.post.parameters.length > 0, `${method.name} Idempotency-Key`).toBe(mutation);
        expect(item.post.responses.default.content["application/json"].schema.$ref).toBe(
          "#/components/schemas/connect.Error",
        );
      }
    }
    expect(doc.components.securitySchemes.bearer).toMatchObject({ type: "http", scheme: "bearer" });
  });

  it("follows the proto3 JSON mapping", () => {
    const s = doc.components.schemas;
    expect(s["holdfast.v1.Booking"].properties.startTime).toMatchObject({
      type: "string",
      format: "date-time",
    });
    const status = s["holdfast.v1.Booking"].properties.status;
    expect(status.$ref ?? status.allOf[0].$ref).toBe(
      "#/components/schemas/holdfast.v1.BookingStatus",
    );
    expect(s["holdfast.v1.BookingStatus"].enum).toContain("BOOKING_STATUS_HELD");
    expect(s["holdfast.v1.Booking"].properties.metadata).toMatchObject({ type: "object" });
    expect(s["holdfast.v1.CreateHoldRequest"].properties.ttl).toMatchObject({
      type: "string",
      examples: ["1800s"],
    });
    expect(s["holdfast.v1.ListBookingsRequest"].properties.pageSize).toMatchObject({
      type: "integer",
    });
    expect(s["holdfast.v1.UpdateResourceRequest"].properties.updateMask).toMatchObject({
      type: "string",
    });
    expect(s["holdfast.v1.ListSlotsResponse"].properties.timeZones).toMatchObject({
      type: "object",
      additionalProperties: { type: "string" },
    });
  });

  it("is served at GET /openapi.json exactly as generated, and rendered at /docs without a CDN", async () => {
    const res = await fetch(`${server.url}/openapi.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    expect(await res.json()).toEqual(doc);

    const page = await fetch(`${server.url}/docs`);
    expect(page.status).toBe(200);
    const html = await page.text();
    const sources = [...html.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1] as string);
    expect(sources.length).toBeGreaterThan(1);
    for (const src of sources) {
      expect(src, "served from this server").toMatch(/^\/docs\//);
      const asset = await fetch(`${server.url}${src}`);
      expect(asset.status, src).toBe(200);
      expect((await asset.arrayBuffer()).byteLength).toBeGreaterThan(10);
    }
  });
});

describe("a client built from the document", () => {
  it("completes the booking flow, and every answer matches the document", async () => {
    const tenant = await call("TenantService_CreateTenant", { name: "openapi-clinic" }, ADMIN_KEY);
    expect(tenant.status).toBe(200);
    const key = tenant.body.apiKey as string;
    const caller = await call("KeyService_GetCaller", {}, key);
    expect(caller.body.scopes).toContain("bookings.write");

    const resource = await call(
      "ResourceService_CreateResource",
      {
        name: "Dr Lee",
        kind: "RESOURCE_KIND_PERSON",
        timeZone: "America/New_York",
        capacity: 1,
        metadata: { floor: 2 },
      },
      key,
      { idempotencyKey: "res-1" },
    );
    const resourceId = resource.body.resource.id;
    const service = await call(
      "CatalogService_CreateService",
      {
        name: "Consultation",
        resourceIds: [resourceId],
        policy: { durations: ["1800s"], holdTtl: "300s" },
      },
      key,
    );
    const serviceId = service.body.service.id;
    const start = new Date(Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 2 * 86_400_000);
    const end = new Date(start.getTime() + 86_400_000);
    const slots = await call(
      "AvailabilityService_ListSlots",
      { serviceId, startTime: start.toISOString(), endTime: end.toISOString(), pageSize: 3 },
      key,
    );
    expect(slots.body.slots).toHaveLength(3);
    const [first, second] = slots.body.slots;
    const badLength = await call(
      "AvailabilityService_ListSlots",
      { serviceId, startTime: start.toISOString(), endTime: end.toISOString(), duration: "420s" },
      key,
    );
    expect(badLength.reason).toBe("INVALID_DURATION");

    const held = await call(
      "BookingService_CreateHold",
      { slotId: first.slotId, attendee: { name: "Ada" } },
      key,
      {
        idempotencyKey: "hold-1",
      },
    );
    expect(held.body.booking.status).toBe("BOOKING_STATUS_HELD");
    const replay = await call(
      "BookingService_CreateHold",
      { slotId: first.slotId, attendee: { name: "Ada" } },
      key,
      {
        idempotencyKey: "hold-1",
      },
    );
    expect(replay.body.booking.id).toBe(held.body.booking.id);

    const clash = await call("BookingService_CreateHold", { slotId: first.slotId }, key);
    expect(clash.status).toBe(409);
    expect(clash.reason).toBe("SLOT_UNAVAILABLE");

    const id = held.body.booking.id;
    const confirmed = await call("BookingService_ConfirmBooking", { bookingId: id }, key);
    expect(confirmed.body.booking.status).toBe("BOOKING_STATUS_CONFIRMED");
    const moved = await call(
      "BookingService_RescheduleBooking",
      { bookingId: id, slotId: second.slotId },
      key,
    );
    expect(moved.body.booking.startTime).toBe(second.startTime);
    const got = await call("BookingService_GetBooking", { bookingId: id }, key);
    expect(got.body.booking.localStartTime).toBe(second.localStartTime);
    const listed = await call(
      "BookingService_ListBookings",
      { statuses: ["BOOKING_STATUS_CONFIRMED"], pageSize: 10 },
      key,
    );
    expect(listed.body.bookings).toHaveLength(1);
    const cancelled = await call(
      "BookingService_CancelBooking",
      { bookingId: id, reason: "changed plans" },
      key,
    );
    expect(cancelled.body.booking.status).toBe("BOOKING_STATUS_CANCELLED");

    // Failures match the error body and name a reason the document lists.
    expect((await call("BookingService_ConfirmBooking", { bookingId: id }, key)).reason).toBe(
      "INVALID_STATE",
    );
    expect(
      (await call("BookingService_GetBooking", { bookingId: "nope" }, key)).status,
    ).toBeGreaterThanOrEqual(400);
    expect((await call("BookingService_GetBooking", { bookingId: id }, "hf_wrong")).reason).toBe(
      "UNAUTHENTICATED",
    );
    const reader = await call("KeyService_CreateApiKey", { scopes: ["bookings.read"] }, key);
    expect(
      (await call("BookingService_CancelBooking", { bookingId: id }, reader.body.apiKey)).reason,
    ).toBe("MISSING_SCOPE");
    const events = await call("EventService_ListEvents", { pageSize: 5 }, key);
    expect(events.status).toBe(200);
    const resources = await call("ResourceService_ListResources", {}, key);
    expect(resources.body.resources[0].metadata).toEqual({ floor: 2 });
  });
});

describe("the reasons each operation lists", () => {
  /** A call that must succeed. */
  async function made(operationId: string, body: Json, key: string): Promise<Answer> {
    const answer = await call(operationId, body, key);
    expect(answer.status, `${operationId}: ${JSON.stringify(answer.body)}`).toBe(200);
    return answer;
  }

  /** A fresh tenant and its all-scopes key, from the document. */
  async function tenant(name: string): Promise<{ tenantId: string; key: string }> {
    const t = await made("TenantService_CreateTenant", { name }, ADMIN_KEY);
    return { tenantId: t.body.tenant.id, key: t.body.apiKey };
  }

  it("include RATE_LIMITED on every operation: the limit is checked before any of them runs", async () => {
    // A server where every key (the operator's too, which may call every
    // operation) gets one call a second.
    const limited = await startTestServer({
      HOLDFAST_KEY_RATE_PER_SECOND: "1",
      HOLDFAST_KEY_RATE_BURST: "1",
    });
    const operations = Object.values<Json>(doc.paths).map((item) => item.post.operationId);
    expect(operations.length).toBeGreaterThan(40);
    for (const operationId of operations) {
      // A call is admitted again only once a second went by: the next is refused.
      let answer: Answer | undefined;
      for (let i = 0; i < 3 && answer?.reason !== "RATE_LIMITED"; i++)
        answer = await call(operationId, {}, ADMIN_KEY, { url: limited.url }); // checks the document lists what came back
      expect([answer?.status, answer?.reason], operationId).toEqual([429, "RATE_LIMITED"]);
    }
  });

  it("include LIMIT_REACHED on every operation that adds what a quota counts", async () => {
    const { tenantId, key } = await tenant("openapi-quotas");
    const resource = await made(
      "ResourceService_CreateResource",
      { name: "Room 1", timeZone: "America/New_York" },
      key,
    );
    const resourceId = resource.body.resource.id;
    const service = await made(
      "CatalogService_CreateService",
      { name: "Visit", resourceIds: [resourceId], policy: { durations: ["1800s"] } },
      key,
    );
    const serviceId = service.body.service.id;
    // A deleted resource and an inactive service, which coming back would count again.
    const gone = await made(
      "ResourceService_CreateResource",
      { name: "Room 2", timeZone: "America/New_York" },
      key,
    );
    const goneId = gone.body.resource.id;
    await made("ResourceService_DeleteResource", { resourceId: goneId }, key);
    const paused = await made(
      "CatalogService_CreateService",
      { name: "Paused", resourceIds: [resourceId], policy: { durations: ["1800s"] } },
      key,
    );
    const pausedId = paused.body.service.id;
    await made(
      "CatalogService_UpdateService",
      { service: { id: pausedId, active: false }, updateMask: "active" },
      key,
    );
    await made(
      "WebhookService_CreateWebhook",
      { url: "https://hooks.example.com/holdfast", eventTypes: ["booking.held"] },
      key,
    );
    const slots = await made(
      "AvailabilityService_ListSlots",
      {
        serviceId,
        startTime: new Date(Date.now() + 86_400_000).toISOString(),
        endTime: new Date(Date.now() + 8 * 86_400_000).toISOString(),
        pageSize: 2,
      },
      key,
    );
    const [first, second] = slots.body.slots;
    await made("BookingService_CreateHold", { slotId: first.slotId }, key);
    // The resource at its bound of overrides (written straight to the table).
    await server.pool.query(
      `INSERT INTO overrides (tenant_id, resource_id, kind, all_day, start_date)
       SELECT $1, $2, 'block', true, date '2030-01-01' + g FROM generate_series(1, 1000) AS g`,
      [tenantId, resourceId],
    );
    // And at its bound of calendar feeds (written straight to the table too).
    await server.pool.query(
      `INSERT INTO calendar_feeds (tenant_id, secret_hash, prefix, resource_id, free_busy, include_holds)
       SELECT $1, sha256(convert_to($1 || g, 'UTF8')), 'hfcal_fill', $2, false, false
       FROM generate_series(1, 1000) AS g`,
      [tenantId, resourceId],
    );
    // Everything is at its quota now (the tenant's first key is its one API key).
    const one = { bookingsPerMonth: 1, activeHolds: 1, resources: 1, services: 1 };
    await made(
      "TenantService_SetTenantQuotas",
      { tenantId, quotas: { ...one, webhooks: 1, apiKeys: 1 } },
      ADMIN_KEY,
    );

    const refused: [string, Json][] = [
      ["BookingService_CreateHold", { slotId: second.slotId }],
      ["BookingService_CreateBooking", { slotId: second.slotId }],
      ["ResourceService_CreateResource", { name: "Room 3", timeZone: "America/New_York" }],
      [
        "ResourceService_UpdateResource",
        { resource: { id: goneId, active: true }, updateMask: "active" },
      ],
      [
        "CatalogService_CreateService",
        { name: "More", resourceIds: [resourceId], policy: { durations: ["1800s"] } },
      ],
      [
        "CatalogService_UpdateService",
        { service: { id: pausedId, active: true }, updateMask: "active" },
      ],
      [
        "WebhookService_CreateWebhook",
        { url: "https://hooks.example.com/other", eventTypes: ["booking.held"] },
      ],
      ["KeyService_CreateApiKey", { scopes: ["bookings.read"] }],
      [
        "ResourceService_CreateOverride",
        { resourceId, kind: "OVERRIDE_KIND_BLOCK", allDay: true, startDate: "2031-01-01" },
      ],
      ["CalendarFeedService_CreateCalendarFeed", { resourceId }],
    ];
    for (const [operationId, body] of refused) {
      const answer = await call(operationId, body, key); // checks the document lists it
      expect([answer.status, answer.reason], operationId).toEqual([429, "LIMIT_REACHED"]);
    }
    // And only those: setting quotas (or reading them) adds nothing they count.
    const listing = Object.values<Json>(doc.paths)
      .filter((item) => item.post["x-holdfast-reasons"].includes("LIMIT_REACHED"))
      .map((item) => item.post.operationId);
    expect(listing.sort()).toEqual([...new Set(refused.map(([id]) => id))].sort());
  });

  it("are what SetTenantQuotas answers: TENANT_NOT_FOUND, and never LIMIT_REACHED", async () => {
    const { op } = operation("TenantService_SetTenantQuotas");
    expect(op["x-holdfast-reasons"]).toContain("TENANT_NOT_FOUND");
    expect(op["x-holdfast-reasons"]).not.toContain("LIMIT_REACHED");
    // A quota below what is in use is set all the same (LIMIT_REACHED is for the work it counts).
    const { tenantId, key } = await tenant("openapi-set-quotas");
    await made("ResourceService_CreateResource", { name: "Room", timeZone: "UTC" }, key);
    await made("TenantService_SetTenantQuotas", { tenantId, quotas: { resources: 1 } }, ADMIN_KEY);
    const lowered = { tenantId, quotas: { resources: 1, apiKeys: 1 } };
    expect((await made("TenantService_SetTenantQuotas", lowered, ADMIN_KEY)).body.quotas).toEqual(
      lowered.quotas,
    );
    const missing = await call(
      "TenantService_SetTenantQuotas",
      { tenantId: "ten_nope", quotas: { resources: 1 } },
      ADMIN_KEY,
    ); // checks the document lists it
    expect([missing.status, missing.reason]).toEqual([404, "TENANT_NOT_FOUND"]);
    for (const operationId of ["TenantService_SetTenantRateLimit", "KeyService_GetUsage"]) {
      const answer = await call(operationId, { tenantId: "ten_nope" }, ADMIN_KEY);
      expect([answer.status, answer.reason], operationId).toEqual([404, "TENANT_NOT_FOUND"]);
    }
  });
});

describe("the NotFound reasons each operation lists", () => {
  /**
   * Every request field that names a row, at the top of a request or inside
   * the message it carries (`resource.id`), with an id that names none: the
   * reason the server answers: the row's NotFound reason, another reason
   * where the field narrows a search (RESOURCE_NOT_IN_SERVICE), or null where
   * it is a filter, which then matches nothing. The document must list
   * exactly these NotFound reasons for each operation, no more and no fewer.
   */
  it("are exactly those the server answers for an unknown id in each field that names a row", async () => {
    const t = await call("TenantService_CreateTenant", { name: "openapi-not-found" }, ADMIN_KEY);
    const key = t.body.apiKey as string;
    const resource = await call(
      "ResourceService_CreateResource",
      { name: "Room", timeZone: "UTC" },
      key,
    );
    const resourceId = resource.body.resource.id;
    const service = await call(
      "CatalogService_CreateService",
      { name: "Visit", resourceIds: [resourceId], policy: { durations: ["1800s"] } },
      key,
    );
    const serviceId = service.body.service.id;
    const webhook = await call(
      "WebhookService_CreateWebhook",
      { url: "https://hooks.example.com/not-found", eventTypes: ["booking.held"] },
      key,
    );
    const webhookId = webhook.body.webhook.id;
    const start = new Date(Math.ceil(Date.now() / 86_400_000) * 86_400_000 + 2 * 86_400_000);
    const window = {
      startTime: start.toISOString(),
      endTime: new Date(start.getTime() + 7 * 86_400_000).toISOString(),
    };
    const slots = await call(
      "AvailabilityService_ListSlots",
      { serviceId, ...window, pageSize: 2 },
      key,
    );
    const [first, second] = slots.body.slots;
    const held = await call("BookingService_CreateHold", { slotId: first.slotId }, key);
    expect(held.status, JSON.stringify(held.body)).toBe(200);
    const bookingId = held.body.booking.id;
    const at = { startTime: second.startTime, endTime: second.endTime };

    const cases: [string, Json, string | null, string?][] = [
      ["AvailabilityService_ListSlots", { serviceId: "svc_nope", ...window }, "SERVICE_NOT_FOUND"],
      [
        "AvailabilityService_ListSlots",
        { serviceId, resourceIds: ["rsc_nope"], ...window },
        "RESOURCE_NOT_IN_SERVICE",
      ],
      ["BookingService_CreateHold", { serviceId: "svc_nope", ...at }, "SERVICE_NOT_FOUND"],
      [
        "BookingService_CreateHold",
        { serviceId, resourceId: "rsc_nope", ...at },
        "RESOURCE_NOT_FOUND",
      ],
      ["BookingService_CreateBooking", { serviceId: "svc_nope", ...at }, "SERVICE_NOT_FOUND"],
      [
        "BookingService_CreateBooking",
        { serviceId, resourceId: "rsc_nope", ...at },
        "RESOURCE_NOT_FOUND",
      ],
      ["BookingService_ConfirmBooking", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      ["BookingService_ExtendHold", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      ["BookingService_CancelBooking", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      ["BookingService_CompleteBooking", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      ["BookingService_MarkNoShow", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      [
        "BookingService_RescheduleBooking",
        { bookingId: "bkg_nope", slotId: second.slotId },
        "BOOKING_NOT_FOUND",
      ],
      [
        "BookingService_RescheduleBooking",
        { bookingId, resourceId: "rsc_nope", ...at },
        "RESOURCE_NOT_FOUND",
      ],
      ["BookingService_GetBooking", { bookingId: "bkg_nope" }, "BOOKING_NOT_FOUND"],
      ["BookingService_ListBookings", { resourceId: "rsc_nope" }, null],
      ["BookingService_ListBookings", { serviceId: "svc_nope" }, null],
      ["CalendarFeedService_CreateCalendarFeed", { resourceId: "rsc_nope" }, "RESOURCE_NOT_FOUND"],
      ["CalendarFeedService_CreateCalendarFeed", { serviceId: "svc_nope" }, "SERVICE_NOT_FOUND"],
      [
        "CalendarFeedService_RevokeCalendarFeed",
        { calendarFeedId: "cal_nope" },
        "CALENDAR_FEED_NOT_FOUND",
      ],
      [
        "CatalogService_CreateService",
        { name: "More", resourceIds: ["rsc_nope"], policy: { durations: ["1800s"] } },
        "RESOURCE_NOT_FOUND",
      ],
      ["CatalogService_GetService", { serviceId: "svc_nope" }, "SERVICE_NOT_FOUND"],
      ["CatalogService_GetService", { serviceId, policyVersion: 99 }, "POLICY_VERSION_NOT_FOUND"],
      ["CatalogService_ListServices", { resourceId: "rsc_nope" }, null],
      [
        "CatalogService_UpdateService",
        { service: { id: "svc_nope", name: "Renamed" }, updateMask: "name" },
        "SERVICE_NOT_FOUND",
      ],
      [
        "CatalogService_UpdateService",
        { service: { id: serviceId, resourceIds: ["rsc_nope"] }, updateMask: "resourceIds" },
        "RESOURCE_NOT_FOUND",
      ],
      ["CatalogService_ListPolicyVersions", { serviceId: "svc_nope" }, "SERVICE_NOT_FOUND"],
      ["EventService_ListEvents", { filter: { resourceIds: ["rsc_nope"] } }, null],
      ["EventService_ListEvents", { filter: { serviceIds: ["svc_nope"] } }, null],
      ["KeyService_RevokeApiKey", { apiKeyId: "key_nope" }, "API_KEY_NOT_FOUND"],
      ["KeyService_GetUsage", { tenantId: "ten_nope" }, "TENANT_NOT_FOUND", ADMIN_KEY],
      ["ResourceService_GetResource", { resourceId: "rsc_nope" }, "RESOURCE_NOT_FOUND"],
      ["ResourceService_ListResources", { serviceId: "svc_nope" }, null],
      [
        "ResourceService_UpdateResource",
        { resource: { id: "rsc_nope", capacity: 2 } },
        "RESOURCE_NOT_FOUND",
      ],
      ["ResourceService_DeleteResource", { resourceId: "rsc_nope" }, "RESOURCE_NOT_FOUND"],
      [
        "ResourceService_SetWeeklySchedule",
        { resourceId: "rsc_nope", weeklySchedule: { windows: [] } },
        "RESOURCE_NOT_FOUND",
      ],
      [
        "ResourceService_CreateOverride",
        {
          resourceId: "rsc_nope",
          kind: "OVERRIDE_KIND_BLOCK",
          allDay: true,
          startDate: "2031-01-01",
        },
        "RESOURCE_NOT_FOUND",
      ],
      ["ResourceService_ListOverrides", { resourceId: "rsc_nope" }, "RESOURCE_NOT_FOUND"],
      [
        "ResourceService_DeleteOverride",
        { resourceId: "rsc_nope", overrideId: "ovr_nope" },
        "RESOURCE_NOT_FOUND",
      ],
      [
        "ResourceService_DeleteOverride",
        { resourceId, overrideId: "ovr_nope" },
        "OVERRIDE_NOT_FOUND",
      ],
      [
        "TenantService_SetTenantRateLimit",
        { tenantId: "ten_nope", rateLimit: { requestsPerSecond: 5, burst: 5 } },
        "TENANT_NOT_FOUND",
        ADMIN_KEY,
      ],
      [
        "TenantService_SetTenantQuotas",
        { tenantId: "ten_nope", quotas: { resources: 1 } },
        "TENANT_NOT_FOUND",
        ADMIN_KEY,
      ],
      ["WebhookService_GetWebhook", { webhookId: "whk_nope" }, "WEBHOOK_NOT_FOUND"],
      [
        "WebhookService_UpdateWebhook",
        { webhook: { id: "whk_nope", description: "x" }, updateMask: "description" },
        "WEBHOOK_NOT_FOUND",
      ],
      ["WebhookService_DeleteWebhook", { webhookId: "whk_nope" }, "WEBHOOK_NOT_FOUND"],
      ["WebhookService_RotateWebhookSecret", { webhookId: "whk_nope" }, "WEBHOOK_NOT_FOUND"],
      ["WebhookService_ListDeliveries", { webhookId: "whk_nope" }, "WEBHOOK_NOT_FOUND"],
      [
        "WebhookService_RetryDelivery",
        { webhookId: "whk_nope", deliveryId: "dlv_nope" },
        "WEBHOOK_NOT_FOUND",
      ],
      ["WebhookService_RetryDelivery", { webhookId, deliveryId: "dlv_nope" }, "DELIVERY_NOT_FOUND"],
      ["WebhookService_SendTestEvent", { webhookId: "whk_nope" }, "WEBHOOK_NOT_FOUND"],
    ];

    // The cases name every field of every request that could name a row.
    const named = (body: Json, prefix = ""): string[] =>
      Object.entries<Json>(body).flatMap(([k, v]) =>
        v && typeof v === "object" && !Array.isArray(v)
          ? named(v, `${prefix}${k}.`)
          : [`${prefix}${k}`],
      );
    const covered = new Set(cases.flatMap(([op, body]) => named(body).map((f) => `${op} ${f}`)));
    const idFields = (schema: Json, prefix = "", depth = 0): string[] =>
      Object.entries<Json>(schema.properties ?? {}).flatMap(([k, v]) => {
        const target = v.$ref ?? v.allOf?.[0]?.$ref;
        const nested = target && doc.components.schemas[target.split("/").pop()];
        if (nested?.properties && depth < 1) return idFields(nested, `${prefix}${k}.`, depth + 1);
        // A slot id names no row (it is signed: INVALID_SLOT_ID); a policy
        // version is a request's only other name of a row.
        const names = depth === 0 ? /(Id|Ids|^policyVersion)$/ : /(^id|Id|Ids)$/;
        return names.test(k) && k !== "slotId" ? [`${prefix}${k}`] : [];
      });
    for (const item of Object.values<Json>(doc.paths)) {
      const op = item.post;
      const ref = op.requestBody.content["application/json"].schema.$ref;
      const schema = doc.components.schemas[ref.split("/").pop()];
      for (const field of idFields(schema)) {
        expect(covered, `a case for ${op.operationId} ${field}`).toContain(
          `${op.operationId} ${field}`,
        );
      }
    }

    const answered = new Map<string, Set<string>>();
    for (const [operationId, body, expected, caller] of cases) {
      const answer = await call(operationId, body, caller ?? key); // checks the document lists it
      expect(
        [answer.status, answer.reason ?? null],
        `${operationId} ${JSON.stringify(body)}: ${JSON.stringify(answer.body)}`,
      ).toEqual([expected?.endsWith("_NOT_FOUND") ? 404 : expected ? 400 : 200, expected]);
      const set = answered.get(operationId) ?? new Set<string>();
      if (expected?.endsWith("_NOT_FOUND")) set.add(expected);
      answered.set(operationId, set);
    }
    for (const item of Object.values<Json>(doc.paths)) {
      const op = item.post;
      const listed = (op["x-holdfast-reasons"] as string[]).filter((r) => r.endsWith("_NOT_FOUND"));
      expect(listed, op.operationId).toEqual([...(answered.get(op.operationId) ?? [])].sort());
    }
  });
});

import { toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService, ListApiKeysResponseSchema } from "../../gen/holdfast/v1/key_pb.js";
import { OverrideKind, ResourceKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import {
  clientFor,
  fieldViolations,
  jsonReason,
  newTenant,
  postJson,
  rejected,
} from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

const minutes = (n: number) => ({ seconds: BigInt(n * 60), nanos: 0 });

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

describe("authentication", () => {
  it("refuses a call without a key, over gRPC and Connect JSON", async () => {
    const resources = clientFor(ResourceService, server.url, undefined);
    await rejected(resources.listResources({}), Code.Unauthenticated, "UNAUTHENTICATED");
    const reply = await postJson(server.url, "holdfast.v1.ResourceService/ListResources", {});
    expect(reply.status).toBe(401);
    expect(jsonReason(reply)).toBe("UNAUTHENTICATED");
  });

  it("refuses an unknown key and a malformed Authorization header", async () => {
    await rejected(
      clientFor(ResourceService, server.url, "hf_not_a_real_key").listResources({}),
      Code.Unauthenticated,
      "UNAUTHENTICATED",
    );
    const reply = await postJson(
      server.url,
      "holdfast.v1.ResourceService/ListResources",
      {},
      undefined,
      {
        authorization: `Basic ${ADMIN_KEY}`,
      },
    );
    expect(jsonReason(reply)).toBe("UNAUTHENTICATED");
  });

  it("refuses a key that lacks the method's scope", async () => {
    const { key } = await newTenant(server.url);
    const created = await clientFor(KeyService, server.url, key).createApiKey({
      scopes: ["catalog.read"],
      description: "read only",
    });
    const readOnly = clientFor(ResourceService, server.url, created.apiKey);
    expect((await readOnly.listResources({})).resources).toEqual([]);
    const err = await rejected(
      readOnly.createResource({ name: "Room 1", timeZone: "UTC" }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    expect(err.rawMessage).toContain("catalog.manage");
  });
});

describe("API keys", () => {
  it("shows the secret once, lists records without it, and revokes at once", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const created = await keys.createApiKey({
      scopes: ["bookings.read", "bookings.write"],
      description: "agent",
    });
    expect(created.apiKey).toMatch(/^hf_[A-Za-z0-9_-]{40,}$/);
    expect(created.key?.prefix).toBe(created.apiKey.slice(0, 10));

    const listed = await keys.listApiKeys({});
    expect(listed.keys.map((k) => k.id)).toContain(created.key?.id);
    expect(JSON.stringify(toJson(ListApiKeysResponseSchema, listed))).not.toContain(
      created.apiKey.slice(10),
    );

    const agent = clientFor(ResourceService, server.url, created.apiKey);
    await rejected(agent.listResources({}), Code.PermissionDenied, "MISSING_SCOPE");
    const revoked = await keys.revokeApiKey({ apiKeyId: created.key?.id as string });
    expect(revoked.key?.revokeTime).toBeDefined();
    await rejected(agent.listResources({}), Code.Unauthenticated, "UNAUTHENTICATED");

    expect((await keys.listApiKeys({})).keys.map((k) => k.id)).not.toContain(created.key?.id);
    expect((await keys.listApiKeys({ includeRevoked: true })).keys.map((k) => k.id)).toContain(
      created.key?.id,
    );
  });

  it("cannot grant scopes the calling key lacks, nor unknown scopes", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const manager = await keys.createApiKey({
      scopes: ["keys.manage", "catalog.read"],
      description: "",
    });
    const limited = clientFor(KeyService, server.url, manager.apiKey);
    await rejected(
      limited.createApiKey({ scopes: ["bookings.write"] }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    const err = await rejected(
      keys.createApiKey({ scopes: ["tenants.manage"] }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["scopes[0]"]);
    await rejected(keys.createApiKey({ scopes: [] }), Code.InvalidArgument, "VALIDATION_ERROR");
    expect((await limited.createApiKey({ scopes: ["catalog.read"] })).key?.scopes).toEqual([
      "catalog.read",
    ]);
  });
});

describe("GetCaller", () => {
  it("tells any valid key its tenant, id and scopes, over gRPC and Connect JSON", async () => {
    const name = `caller-${Math.random().toString(36).slice(2)}`;
    const { key, tenantId } = await newTenant(server.url, name);
    const created = await clientFor(KeyService, server.url, key).createApiKey({
      scopes: ["catalog.read"],
      description: "a key without keys.manage",
    });
    const narrow = clientFor(KeyService, server.url, created.apiKey);
    expect(await narrow.getCaller({})).toMatchObject({
      tenantId,
      tenantName: name,
      apiKeyId: created.key?.id,
      scopes: ["catalog.read"],
    });
    // The narrow key may still not manage keys.
    await rejected(narrow.listApiKeys({}), Code.PermissionDenied, "MISSING_SCOPE");
    const json = await postJson(server.url, "holdfast.v1.KeyService/GetCaller", {}, created.apiKey);
    expect(json.body).toEqual({
      tenantId,
      tenantName: name,
      apiKeyId: created.key?.id,
      scopes: ["catalog.read"],
    });

    const operator = await clientFor(KeyService, server.url, ADMIN_KEY).getCaller({});
    expect(operator).toMatchObject({
      tenantName: "default",
      apiKeyId: "env:HOLDFAST_ADMIN_KEY",
    });
    expect(operator.scopes).toContain("tenants.manage");
  });

  it("lets a key revoke only keys whose scopes it holds itself", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const wide = await keys.createApiKey({ scopes: ["keys.manage", "bookings.read"] });
    const narrow = await keys.createApiKey({ scopes: ["keys.manage"] });
    const asNarrow = clientFor(KeyService, server.url, narrow.apiKey);
    const err = await rejected(
      asNarrow.revokeApiKey({ apiKeyId: wide.key?.id as string }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    expect(err.rawMessage).toContain("bookings.read");
    // The wider key still works; one within the narrow key's scopes (itself) can go.
    expect((await clientFor(KeyService, server.url, wide.apiKey).getCaller({})).apiKeyId).toBe(
      wide.key?.id,
    );
    await asNarrow.revokeApiKey({ apiKeyId: narrow.key?.id as string });
    await rejected(
      asNarrow.revokeApiKey({ apiKeyId: "key_nope" }),
      Code.Unauthenticated,
      "UNAUTHENTICATED",
    );
    // The tenant's first key (all its scopes) revokes either; an unknown id is NOT_FOUND.
    await keys.revokeApiKey({ apiKeyId: wide.key?.id as string });
    await rejected(keys.revokeApiKey({ apiKeyId: "key_nope" }), Code.NotFound, "API_KEY_NOT_FOUND");
  });

  it("refuses a missing or revoked key", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const created = await keys.createApiKey({ scopes: ["bookings.read"] });
    await keys.revokeApiKey({ apiKeyId: created.key?.id as string });
    for (const k of [undefined, created.apiKey]) {
      await rejected(
        clientFor(KeyService, server.url, k).getCaller({}),
        Code.Unauthenticated,
        "UNAUTHENTICATED",
      );
    }
  });
});

describe("tenant isolation beyond the catalog", () => {
  it("keeps overrides, slots, bookings, events and webhooks of tenant A out of tenant B's reach", async () => {
    const a = await bookingWorld(server.url);
    const b = await bookingWorld(server.url);
    const theirs = (
      await a.bookings.createHold({ serviceId: a.serviceId, resourceId: a.resourceId, ...at(1, 9) })
    ).booking;
    const bResources = clientFor(ResourceService, server.url, b.key);
    await rejected(
      bResources.createOverride({
        resourceId: a.resourceId,
        kind: OverrideKind.BLOCK,
        startDate: "2031-01-06",
        allDay: true,
      }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    await rejected(
      bResources.listOverrides({ resourceId: a.resourceId }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    const range = at(1, 0, 0, 24 * 60);
    await rejected(
      clientFor(AvailabilityService, server.url, b.key).listSlots({
        serviceId: a.serviceId,
        ...range,
      }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
    await rejected(
      b.bookings.rescheduleBooking({ bookingId: theirs?.id as string, ...at(1, 10) }),
      Code.NotFound,
      "BOOKING_NOT_FOUND",
    );
    expect((await clientFor(EventService, server.url, b.key).listEvents({})).events).toEqual([]);
    const hook = await clientFor(WebhookService, server.url, a.key).createWebhook({
      url: "https://hooks.example.com/a",
      eventTypes: ["*"],
    });
    const bHooks = clientFor(WebhookService, server.url, b.key);
    const id = hook.webhook?.id as string;
    expect((await bHooks.listWebhooks({})).webhooks).toEqual([]);
    await rejected(bHooks.getWebhook({ webhookId: id }), Code.NotFound, "WEBHOOK_NOT_FOUND");
    await rejected(
      bHooks.updateWebhook({ webhook: { id, description: "mine" } }),
      Code.NotFound,
      "WEBHOOK_NOT_FOUND",
    );
    await rejected(
      bHooks.rotateWebhookSecret({ webhookId: id }),
      Code.NotFound,
      "WEBHOOK_NOT_FOUND",
    );
    await rejected(bHooks.listDeliveries({ webhookId: id }), Code.NotFound, "WEBHOOK_NOT_FOUND");
    await rejected(bHooks.sendTestEvent({ webhookId: id }), Code.NotFound, "WEBHOOK_NOT_FOUND");
    await rejected(bHooks.deleteWebhook({ webhookId: id }), Code.NotFound, "WEBHOOK_NOT_FOUND");
    expect(
      (await clientFor(WebhookService, server.url, a.key).getWebhook({ webhookId: id })).webhook
        ?.description,
    ).toBe("");
  });
});

describe("tenants", () => {
  it("are managed by the operator key only", async () => {
    const { key } = await newTenant(server.url);
    await rejected(
      clientFor(TenantService, server.url, key).listTenants({}),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    const operator = clientFor(TenantService, server.url, ADMIN_KEY);
    const created = await operator.createTenant({ name: "Clinic North" });
    expect(created.apiKey).toMatch(/^hf_/);
    expect(created.key?.scopes).not.toContain("tenants.manage");
    await rejected(
      operator.createTenant({ name: "Clinic North" }),
      Code.AlreadyExists,
      "TENANT_NAME_TAKEN",
    );
    await rejected(operator.createTenant({ name: "  " }), Code.InvalidArgument, "VALIDATION_ERROR");
    const names: string[] = [];
    for (let token = ""; ; ) {
      const page = await operator.listTenants({ pageSize: 2, pageToken: token });
      names.push(...page.tenants.map((t) => t.name));
      token = page.nextPageToken;
      if (!token) break;
    }
    expect(names).toContain("default");
    expect(names).toContain("Clinic North");
  });
});

describe("tenant isolation", () => {
  it("keeps every row of tenant A out of tenant B's reach", async () => {
    const a = await newTenant(server.url);
    const b = await newTenant(server.url);
    const aResources = clientFor(ResourceService, server.url, a.key);
    const bResources = clientFor(ResourceService, server.url, b.key, "connect");
    const room = (
      await aResources.createResource({ name: "A room", kind: ResourceKind.ROOM, timeZone: "UTC" })
    ).resource;
    const id = room?.id as string;

    await rejected(bResources.getResource({ resourceId: id }), Code.NotFound, "RESOURCE_NOT_FOUND");
    expect((await bResources.listResources({ includeInactive: true })).resources).toEqual([]);
    await rejected(
      bResources.updateResource({ resource: { id, name: "mine now" } }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    await rejected(
      bResources.deleteResource({ resourceId: id }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    await rejected(
      bResources.setWeeklySchedule({ resourceId: id }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );

    const aCatalog = clientFor(CatalogService, server.url, a.key);
    const bCatalog = clientFor(CatalogService, server.url, b.key);
    const svc = await aCatalog.createService({
      name: "A consult",
      resourceIds: [id],
      policy: { durations: [minutes(30)] },
    });
    const svcId = svc.service?.id as string;
    await rejected(bCatalog.getService({ serviceId: svcId }), Code.NotFound, "SERVICE_NOT_FOUND");
    await rejected(
      bCatalog.updateService({ service: { id: svcId, name: "x" } }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
    await rejected(
      bCatalog.listPolicyVersions({ serviceId: svcId }),
      Code.NotFound,
      "SERVICE_NOT_FOUND",
    );
    expect((await bCatalog.listServices({ includeInactive: true })).services).toEqual([]);
    // B cannot build on A's resource either.
    const err = await rejected(
      bCatalog.createService({
        name: "B consult",
        resourceIds: [id],
        policy: { durations: [minutes(30)] },
      }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    expect(fieldViolations(err)).toEqual(["resource_ids[0]"]);

    const aKeys = await clientFor(KeyService, server.url, a.key).listApiKeys({});
    const bKeys = clientFor(KeyService, server.url, b.key);
    expect((await bKeys.listApiKeys({})).keys.map((k) => k.id)).not.toContain(aKeys.keys[0]?.id);
    await rejected(
      bKeys.revokeApiKey({ apiKeyId: aKeys.keys[0]?.id as string }),
      Code.NotFound,
      "API_KEY_NOT_FOUND",
    );
    // A's key still works: B's attempt changed nothing.
    expect((await aResources.getResource({ resourceId: id })).resource?.name).toBe("A room");
  });
});

import { Code, ConnectError } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema, QuotaFailureSchema } from "../../gen/google/rpc/error_details_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import type { Quotas } from "../../gen/holdfast/v1/limits_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { at, type BookingWorld, bookingWorld } from "../support/booking.js";
import {
  clientFor,
  fieldViolations,
  jsonReason,
  newTenant,
  postJson,
  rejected,
} from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/** Quotas per tenant, over two instances on one database. */

let one: TestServer;
let two: TestServer;
beforeAll(async () => {
  one = await startTestServer({ HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true" });
  two = await startTestServer({ HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true" }, one.databaseUrl);
});

const operator = () => clientFor(TenantService, one.url, ADMIN_KEY);

function setQuotas(tenantId: string, quotas: Partial<Omit<Quotas, "$typeName">>) {
  return operator().setTenantQuotas({ tenantId, quotas });
}

/** The QuotaFailure of a LIMIT_REACHED error: quota, limit and usage. */
function quotaOf(err: ConnectError) {
  const info = err.findDetails(ErrorInfoSchema)[0];
  const v = err.findDetails(QuotaFailureSchema)[0]?.violations[0];
  return {
    quota: v?.quotaId,
    limit: v?.quotaValue,
    usage: info?.metadata.usage,
  };
}

async function usageOf(key: string, quota: string) {
  const res = await clientFor(KeyService, one.url, key).getUsage({});
  return res.quotas.find((q) => q.quota === quota);
}

/**
 * `n` holds at once on distinct times, spread over the world's resources and
 * alternating between the two instances: how each ended.
 */
async function raceHolds(w: BookingWorld, n: number): Promise<string[]> {
  const clients = [one, two].map((s) => clientFor(BookingService, s.url, w.key));
  const spread = w.resourceIds.length;
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      try {
        await (clients[i % 2] as (typeof clients)[0]).createHold({
          serviceId: w.serviceId,
          resourceId: w.resourceIds[i % spread] as string,
          ...at(2, Math.floor(i / spread), 0),
        });
        return "won";
      } catch (err) {
        const ce = ConnectError.from(err);
        return `${Code[ce.code]} ${ce.findDetails(ErrorInfoSchema)[0]?.reason}`;
      }
    }),
  );
}

describe("active holds", () => {
  it("50 holds racing over two instances for the last 5 units: exactly 5 win", async () => {
    const w = await bookingWorld(one.url, { resources: 10 });
    await setQuotas(w.tenantId, { activeHolds: 8 });
    // 3 of the 8 are taken first.
    for (let i = 0; i < 3; i++) {
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, i),
      });
    }
    const results = await raceHolds(w, 50);
    expect(results.filter((r) => r === "won")).toHaveLength(5);
    expect(results.filter((r) => r === "ResourceExhausted LIMIT_REACHED")).toHaveLength(45);
    expect(await usageOf(w.key, "active_holds")).toMatchObject({ limit: 8, usage: 8n });

    const err = await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(3, 9) }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect(quotaOf(err)).toEqual({ quota: "active_holds", limit: 8n, usage: "8" });
  });

  it("a race from far below a quota to past it over two instances: exactly the quota wins", async () => {
    // Far from the limit writes check it side by side, near it one at a time.
    const w = await bookingWorld(one.url, { resources: 20 });
    await setQuotas(w.tenantId, { activeHolds: 60, bookingsPerMonth: 1000 });
    const results = await raceHolds(w, 100);
    expect(results.filter((r) => r === "won")).toHaveLength(60);
    expect(results.filter((r) => r === "ResourceExhausted LIMIT_REACHED")).toHaveLength(40);
  });

  it("frees a unit when a hold is confirmed or cancelled, and counts the booking once a month", async () => {
    const w = await bookingWorld(one.url);
    await setQuotas(w.tenantId, { activeHolds: 1, bookingsPerMonth: 2 });
    const hold = () =>
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) });
    const { booking } = await hold();
    await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 10) }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    await w.bookings.confirmBooking({ bookingId: booking?.id as string });
    // The hold became a booking: one booking this month, no hold.
    expect(await usageOf(w.key, "active_holds")).toMatchObject({ usage: 0n });
    expect(await usageOf(w.key, "bookings_per_month")).toMatchObject({ limit: 2, usage: 1n });
    const second = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 11),
    });
    expect(second.booking?.id).toBeDefined();
    const err = await rejected(
      w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 12) }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect(quotaOf(err)).toEqual({ quota: "bookings_per_month", limit: 2n, usage: "2" });
  });

  it("stores a LIMIT_REACHED under the Idempotency-Key: a retry replays it", async () => {
    const w = await bookingWorld(one.url);
    await setQuotas(w.tenantId, { activeHolds: 1 });
    await w.bookings.createHold({ serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) });
    const headers = { "idempotency-key": "over-quota" };
    const request = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 10) };
    await rejected(
      w.bookings.createHold(request, { headers }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    await setQuotas(w.tenantId, {});
    const err = await rejected(
      clientFor(BookingService, two.url, w.key).createHold(request, { headers }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect(quotaOf(err)).toEqual({ quota: "active_holds", limit: 1n, usage: "1" });
    expect(err.metadata.get("idempotent-replayed")).toBe("true");
    // Without the key, the same hold now goes through.
    await w.bookings.createHold(request);
  });
});

describe("catalog and key quotas", () => {
  it("stores a catalog LIMIT_REACHED under the Idempotency-Key too", async () => {
    const t = await newTenant(one.url);
    await setQuotas(t.tenantId, { services: 1, resources: 1 });
    const resources = clientFor(ResourceService, one.url, t.key);
    await resources.createResource({ name: "R1", timeZone: "UTC", capacity: 1 });
    const headers = { "idempotency-key": "second-resource" };
    const request = { name: "R2", timeZone: "UTC", capacity: 1 };
    await rejected(
      resources.createResource(request, { headers }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    await setQuotas(t.tenantId, {});
    const again = await rejected(
      clientFor(ResourceService, two.url, t.key).createResource(request, { headers }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect(again.metadata.get("idempotent-replayed")).toBe("true");
    expect(quotaOf(again)).toEqual({ quota: "resources", limit: 1n, usage: "1" });
  });

  it("caps resources, services, webhooks and keys, and frees a unit on delete", async () => {
    const w = await bookingWorld(one.url, { resources: 2 });
    await setQuotas(w.tenantId, { resources: 2, services: 1, webhooks: 1, apiKeys: 2 });
    const resources = clientFor(ResourceService, two.url, w.key);
    const err = await rejected(
      resources.createResource({ name: "R3", timeZone: "UTC", capacity: 1 }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect(quotaOf(err)).toEqual({ quota: "resources", limit: 2n, usage: "2" });
    await resources.deleteResource({ resourceId: w.resourceIds[1] as string });
    await resources.createResource({ name: "R3", timeZone: "UTC", capacity: 1 });
    // Bringing the deleted one back would make three.
    await rejected(
      resources.updateResource({
        resource: { id: w.resourceIds[1] as string, active: true },
        updateMask: { paths: ["active"] },
      }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    // Saying again that an active one is active adds nothing.
    await resources.updateResource({
      resource: { id: w.resourceId, active: true },
      updateMask: { paths: ["active"] },
    });

    await rejected(
      clientFor(CatalogService, one.url, w.key).createService({
        name: "Second",
        resourceIds: [w.resourceId],
        policy: { durations: [{ seconds: 1800n, nanos: 0 }] },
      }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );

    const webhooks = clientFor(WebhookService, one.url, w.key);
    const hook = { url: "http://127.0.0.1:9/hook", eventTypes: ["booking.held"] };
    const first = await webhooks.createWebhook(hook);
    await rejected(webhooks.createWebhook(hook), Code.ResourceExhausted, "LIMIT_REACHED");
    await webhooks.deleteWebhook({ webhookId: first.webhook?.id as string });
    await webhooks.createWebhook(hook);

    // The tenant's first key is one of two.
    const keys = clientFor(KeyService, one.url, w.key);
    const second = await keys.createApiKey({ scopes: ["bookings.read"], description: "" });
    await rejected(
      keys.createApiKey({ scopes: ["bookings.read"], description: "" }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    await keys.revokeApiKey({ apiKeyId: second.key?.id as string });
    await keys.createApiKey({ scopes: ["bookings.read"], description: "" });
  });

  it("refuses new work below a lowered quota and deletes nothing", async () => {
    const w = await bookingWorld(one.url, { resources: 3 });
    await setQuotas(w.tenantId, { resources: 1 });
    const resources = clientFor(ResourceService, one.url, w.key);
    await rejected(
      resources.createResource({ name: "R4", timeZone: "UTC", capacity: 1 }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );
    expect((await resources.listResources({})).resources).toHaveLength(3);
    expect(await usageOf(w.key, "resources")).toMatchObject({ limit: 1, usage: 3n });
    // Existing resources keep taking bookings.
    await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceIds[2] as string,
      ...at(1, 9),
    });
  });
});

/** How a call ended: "ok", or its code and reason. */
async function outcome(call: Promise<unknown>): Promise<string> {
  try {
    await call;
    return "ok";
  } catch (err) {
    const ce = ConnectError.from(err);
    return `${Code[ce.code]} ${ce.findDetails(ErrorInfoSchema)[0]?.reason}`;
  }
}

describe("bringing a row back races the quota", () => {
  // Each round: two of two in use, then at once, over both instances,
  // X deleted, X brought back and a new one created. Bringing X back must
  // decide whether it adds one under the quota's lock: read before it, X
  // may still look active (its deletion not yet committed), the update
  // then skips the check and lands after the deletion, and the new one,
  // counted without X, makes three.
  const ROUNDS = 60;
  // Bringing X back and creating one, each this many times at once.
  const TRIES = 4;
  const ends = new Set(["ok", "ResourceExhausted LIMIT_REACHED"]);

  it("never leaves more active services than the quota", async () => {
    const w = await bookingWorld(one.url);
    await setQuotas(w.tenantId, { services: 2 });
    const catalog = [one, two].map((s) => clientFor(CatalogService, s.url, w.key));
    const [c1, c2] = catalog as [(typeof catalog)[0], (typeof catalog)[0]];
    const policy = { durations: [{ seconds: 1800n, nanos: 0 }] };
    const { service } = await c1.createService({ name: "X", resourceIds: [w.resourceId], policy });
    const x = service?.id as string;
    const active = (v: boolean) => ({
      service: { id: x, active: v },
      updateMask: { paths: ["active"] },
    });
    for (let round = 0; round < ROUNDS; round++) {
      await one.pool.query("UPDATE services SET active = id = ANY ($2) WHERE tenant_id = $1", [
        w.tenantId,
        [w.serviceId, x],
      ]);
      const ended = await Promise.all([
        outcome(c1.updateService(active(false))),
        ...Array.from({ length: TRIES }, (_, i) => [
          outcome((i % 2 ? c1 : c2).updateService(active(true))),
          outcome(
            (i % 2 ? c2 : c1).createService({
              name: `Y${round}.${i}`,
              resourceIds: [w.resourceId],
              policy,
            }),
          ),
        ]).flat(),
      ]);
      for (const e of ended) expect(ends.has(e), e).toBe(true);
      const { rows } = await one.pool.query(
        "SELECT count(*)::int AS n FROM services WHERE tenant_id = $1 AND active",
        [w.tenantId],
      );
      expect(rows[0].n, `round ${round}: ${ended.join(", ")}`).toBeLessThanOrEqual(2);
    }
  });

  it("never leaves more active resources than the quota", async () => {
    const w = await bookingWorld(one.url, { resources: 2 });
    await setQuotas(w.tenantId, { resources: 2 });
    const clients = [one, two].map((s) => clientFor(ResourceService, s.url, w.key));
    const [r1, r2] = clients as [(typeof clients)[0], (typeof clients)[0]];
    const x = w.resourceIds[1] as string;
    for (let round = 0; round < ROUNDS; round++) {
      await one.pool.query("UPDATE resources SET active = id = ANY ($2) WHERE tenant_id = $1", [
        w.tenantId,
        w.resourceIds,
      ]);
      const ended = await Promise.all([
        outcome(r1.deleteResource({ resourceId: x })),
        ...Array.from({ length: TRIES }, (_, i) => [
          outcome(
            (i % 2 ? r1 : r2).updateResource({
              resource: { id: x, active: true },
              updateMask: { paths: ["active"] },
            }),
          ),
          outcome(
            (i % 2 ? r2 : r1).createResource({
              name: `Y${round}.${i}`,
              timeZone: "UTC",
              capacity: 1,
            }),
          ),
        ]).flat(),
      ]);
      for (const e of ended) expect(ends.has(e), e).toBe(true);
      const { rows } = await one.pool.query(
        "SELECT count(*)::int AS n FROM resources WHERE tenant_id = $1 AND active",
        [w.tenantId],
      );
      expect(rows[0].n, `round ${round}: ${ended.join(", ")}`).toBeLessThanOrEqual(2);
    }
  });
});

describe("setting quotas", () => {
  it("refuses zero, negative, absurd and fractional quotas, naming the fields", async () => {
    const t = await newTenant(one.url);
    for (const quotas of [
      { resources: 0 },
      { activeHolds: -1 },
      { bookingsPerMonth: 2_000_000_000 },
    ]) {
      const err = await rejected(
        setQuotas(t.tenantId, quotas),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      expect(fieldViolations(err)).toEqual([
        `quotas.${Object.keys(quotas)[0]?.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`,
      ]);
    }
    const fractional = await postJson(
      one.url,
      "holdfast.v1.TenantService/SetTenantQuotas",
      { tenantId: t.tenantId, quotas: { webhooks: 2.5 } },
      ADMIN_KEY,
    );
    expect(fractional.status).toBe(400);
    expect(jsonReason(fractional)).toBe("MALFORMED_REQUEST");
    await rejected(setQuotas("ten_nope", {}), Code.NotFound, "TENANT_NOT_FOUND");
    await rejected(
      clientFor(TenantService, one.url, t.key).setTenantQuotas({ tenantId: t.tenantId }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    // Every quota unset: all unlimited again.
    const res = await setQuotas(t.tenantId, {});
    expect(res.quotas?.resources).toBeUndefined();
  });
});

describe("GetUsage", () => {
  it("shows a tenant its limits and quotas, and the operator any tenant's", async () => {
    const t = await newTenant(one.url);
    await setQuotas(t.tenantId, { apiKeys: 5 });
    await operator().setTenantRateLimit({
      tenantId: t.tenantId,
      rateLimit: { requestsPerSecond: 100, burst: 300 },
    });
    const own = await clientFor(KeyService, one.url, t.key).getUsage({});
    expect(own.tenantId).toBe(t.tenantId);
    expect(own.rateLimits.map((r) => [r.policy, r.rateLimit?.burst])).toEqual([
      ["tenant", 300],
      ["key", 300],
    ]);
    expect(own.rateLimits[0]?.remaining).toBeGreaterThan(0);
    expect(own.quotas.map((q) => [q.quota, q.limit, q.usage])).toEqual([
      ["bookings_per_month", undefined, 0n],
      ["active_holds", undefined, 0n],
      ["resources", undefined, 0n],
      ["services", undefined, 0n],
      ["webhooks", undefined, 0n],
      ["api_keys", 5, 1n],
    ]);

    const seen = await clientFor(KeyService, two.url, ADMIN_KEY).getUsage({ tenantId: t.tenantId });
    expect(seen.rateLimits.map((r) => r.policy)).toEqual(["tenant"]);
    expect(seen.quotas.find((q) => q.quota === "api_keys")?.usage).toBe(1n);

    const other = await newTenant(one.url);
    await rejected(
      clientFor(KeyService, one.url, t.key).getUsage({ tenantId: other.tenantId }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    await rejected(
      clientFor(KeyService, one.url, ADMIN_KEY).getUsage({ tenantId: "ten_nope" }),
      Code.NotFound,
      "TENANT_NOT_FOUND",
    );
  });
});

import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, jsonReason, keyed, postJson, rejected } from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

describe("booking writes", () => {
  it("replay the first response for the same key and request, marked as replayed", async () => {
    const w = await bookingWorld(server.url);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) };
    const first = keyed("hold-1");
    const a = await w.bookings.createHold(req, first.options);
    expect(first.seen.replayed).toBe(false);
    // The booking moves on; the replay still answers with the first response.
    await w.bookings.confirmBooking({ bookingId: a.booking?.id as string });
    const second = keyed("hold-1");
    const b = await w.bookings.createHold(req, second.options);
    expect(second.seen.replayed).toBe(true);
    expect(b).toEqual(a);
    expect(b.booking?.status).toBe(BookingStatus.HELD);
    expect((await w.bookings.listBookings({})).bookings).toHaveLength(1);
  });

  it("refuse the same key with a different request", async () => {
    const w = await bookingWorld(server.url);
    await w.bookings.createHold(
      { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) },
      keyed("k").options,
    );
    await rejected(
      w.bookings.createHold(
        { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 10) },
        keyed("k").options,
      ),
      Code.InvalidArgument,
      "IDEMPOTENCY_KEY_REUSED",
    );
  });

  it("run concurrent duplicates once: 20 at once with one key make one booking", async () => {
    const w = await bookingWorld(server.url);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 11) };
    const calls = Array.from({ length: 20 }, () => keyed("same-call"));
    const answers = await Promise.all(calls.map((c) => w.bookings.createHold(req, c.options)));
    expect(new Set(answers.map((a) => a.booking?.id)).size).toBe(1);
    expect(calls.filter((c) => c.seen.replayed)).toHaveLength(19);
    const { rows } = await server.pool.query(
      "SELECT count(*)::int AS n FROM bookings WHERE resource_id = $1",
      [w.resourceId],
    );
    expect(rows[0].n).toBe(1);
  });

  it("store business rejections: SLOT_UNAVAILABLE replays even after the slot frees", async () => {
    const w = await bookingWorld(server.url);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 12) };
    const blocker = await w.bookings.createHold(req);
    await rejected(
      w.bookings.createHold(req, keyed("late").options),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    await w.bookings.cancelBooking({ bookingId: blocker.booking?.id as string });
    const retry = await rejected(
      w.bookings.createHold(req, keyed("late").options),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    expect(retry.metadata.get("idempotent-replayed")).toBe("true");
    expect((await w.bookings.createHold(req, keyed("fresh").options)).booking?.status).toBe(
      BookingStatus.HELD,
    );
  });

  it("store a rule's refusal too: the same key replays it after the rules change", async () => {
    const w = await bookingWorld(server.url);
    const days = [1, 2, 3, 4, 5, 6, 7].map((weekday) => ({
      weekday,
      startTime: "09:00",
      endTime: "17:00",
    }));
    await w.resources.setWeeklySchedule({
      resourceId: w.resourceId,
      weeklySchedule: { windows: days },
    });
    const early = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 6) };
    await rejected(
      w.bookings.createHold(early, keyed("early").options),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    // Open all hours: a new request books, the keyed one still gets its first answer.
    await w.resources.setWeeklySchedule({ resourceId: w.resourceId });
    const again = await rejected(
      w.bookings.createHold(early, keyed("early").options),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    expect(again.metadata.get("idempotent-replayed")).toBe("true");
    expect((await w.bookings.createHold(early, keyed("early-2").options)).booking?.status).toBe(
      BookingStatus.HELD,
    );
  });

  it("replay a success even when the rules would now refuse the request", async () => {
    const w = await bookingWorld(server.url);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 13) };
    const a = await w.bookings.createBooking(req, keyed("then").options);
    await w.resources.deleteResource({ resourceId: w.resourceId });
    const again = keyed("then");
    expect(await w.bookings.createBooking(req, again.options)).toEqual(a);
    expect(again.seen.replayed).toBe(true);
    await rejected(
      w.bookings.createBooking(req, keyed("now").options),
      Code.FailedPrecondition,
      "RESOURCE_INACTIVE",
    );
  });

  it("scope keys to method and tenant, and replay confirms too", async () => {
    const w = await bookingWorld(server.url);
    const other = await bookingWorld(server.url);
    const held = await w.bookings.createHold(
      { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 14) },
      keyed("shared").options,
    );
    const theirs = await other.bookings.createHold(
      { serviceId: other.serviceId, resourceId: other.resourceId, ...at(1, 14) },
      keyed("shared").options,
    );
    expect(theirs.booking?.id).not.toBe(held.booking?.id);
    const confirm = keyed("shared");
    const c1 = await w.bookings.confirmBooking(
      { bookingId: held.booking?.id as string },
      confirm.options,
    );
    expect(confirm.seen.replayed).toBe(false);
    const confirmAgain = keyed("shared");
    expect(
      await w.bookings.confirmBooking(
        { bookingId: held.booking?.id as string },
        confirmAgain.options,
      ),
    ).toEqual(c1);
    expect(confirmAgain.seen.replayed).toBe(true);
  });

  it("refuse keys that are empty of meaning: too long, or with spaces", async () => {
    const w = await bookingWorld(server.url);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 15) };
    await rejected(
      w.bookings.createHold(req, keyed("x".repeat(256)).options),
      Code.InvalidArgument,
      "IDEMPOTENCY_KEY_INVALID",
    );
    await rejected(
      w.bookings.createHold(req, keyed("has space").options),
      Code.InvalidArgument,
      "IDEMPOTENCY_KEY_INVALID",
    );
    expect(
      (await w.bookings.createHold(req, keyed("x".repeat(255)).options)).booking,
    ).toBeDefined();
  });

  it("works over Connect JSON with the Idempotency-Key HTTP header", async () => {
    const w = await bookingWorld(server.url);
    const body = {
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      startTime: "2030-02-04T09:00:00Z",
      endTime: "2030-02-04T09:30:00Z",
    };
    const first = await postJson(server.url, "holdfast.v1.BookingService/CreateHold", body, w.key, {
      "Idempotency-Key": "json-1",
    });
    const second = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      body,
      w.key,
      { "Idempotency-Key": "json-1" },
    );
    expect(first.status).toBe(200);
    expect(second.body).toEqual(first.body);
    expect(first.headers.get("idempotent-replayed")).toBeNull();
    expect(second.headers.get("idempotent-replayed")).toBe("true");
    const reused = await postJson(
      server.url,
      "holdfast.v1.BookingService/CreateHold",
      { ...body, endTime: "2030-02-04T10:00:00Z" },
      w.key,
      {
        "Idempotency-Key": "json-1",
      },
    );
    expect(reused.status).toBe(400);
    expect(jsonReason(reused)).toBe("IDEMPOTENCY_KEY_REUSED");
  });
});

describe("other mutations", () => {
  it("create a resource once per key, even with concurrent duplicates", async () => {
    const w = await bookingWorld(server.url);
    const calls = Array.from({ length: 10 }, () => keyed("make-room"));
    const made = await Promise.all(
      calls.map((c) => w.resources.createResource({ name: "Room 9", timeZone: "UTC" }, c.options)),
    );
    expect(new Set(made.map((m) => m.resource?.id)).size).toBe(1);
    expect(calls.filter((c) => c.seen.replayed)).toHaveLength(9);
    const rooms = (await w.resources.listResources({})).resources.filter(
      (r) => r.name === "Room 9",
    );
    expect(rooms).toHaveLength(1);
    await rejected(
      w.resources.createResource({ name: "Room 10", timeZone: "UTC" }, keyed("make-room").options),
      Code.InvalidArgument,
      "IDEMPOTENCY_KEY_REUSED",
    );
  });

  it("do not store validation errors: the key stays free for a corrected request", async () => {
    const w = await bookingWorld(server.url);
    await rejected(
      w.resources.createResource(
        { name: "Room", timeZone: "Nowhere/Land" },
        keyed("fix-me").options,
      ),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    const fixed = keyed("fix-me");
    expect(
      (await w.resources.createResource({ name: "Room", timeZone: "UTC" }, fixed.options)).resource
        ?.name,
    ).toBe("Room");
    expect(fixed.seen.replayed).toBe(false);
  });

  it("store business rejections of other services too", async () => {
    const w = await bookingWorld(server.url);
    const client = clientFor(ResourceService, server.url, w.key);
    await rejected(
      client.deleteResource({ resourceId: "rsc_ghost" }, keyed("del").options),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    const again = await rejected(
      client.deleteResource({ resourceId: "rsc_ghost" }, keyed("del").options),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    expect(again.metadata.get("idempotent-replayed")).toBe("true");
  });

  it("store a rejection without the writes made before it: a refused update changes nothing", async () => {
    const w = await bookingWorld(server.url);
    const update = {
      service: {
        id: w.serviceId,
        resourceIds: [w.resourceId, "rsc_ghost"],
        policy: { durations: [{ seconds: 45n * 60n }] },
      },
      updateMask: { paths: ["policy", "resource_ids"] },
    };
    // The new policy version is written before the resources are checked.
    await rejected(
      w.catalog.updateService(update, keyed("upd").options),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    const again = await rejected(
      w.catalog.updateService(update, keyed("upd").options),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    expect(again.metadata.get("idempotent-replayed")).toBe("true");
    const { service } = await w.catalog.getService({ serviceId: w.serviceId });
    expect(service?.policyVersion).toBe(1);
    expect(service?.policy?.durations.map((d) => d.seconds)).toEqual([30n * 60n, 60n * 60n]);
    // And the next policy change gets version 2, as if the refused one never happened.
    const { service: changed } = await w.catalog.updateService({
      ...update,
      service: { ...update.service, resourceIds: [w.resourceId] },
    });
    expect(changed?.policyVersion).toBe(2);
  });

  it("store a rejection the database raised, in a transaction that goes on to commit", async () => {
    const operator = clientFor(TenantService, server.url, ADMIN_KEY);
    const name = `taken-${Math.random().toString(36).slice(2)}`;
    await operator.createTenant({ name });
    await rejected(
      operator.createTenant({ name }, keyed(`dup-${name}`).options),
      Code.AlreadyExists,
      "TENANT_NAME_TAKEN",
    );
    const again = await rejected(
      operator.createTenant({ name }, keyed(`dup-${name}`).options),
      Code.AlreadyExists,
      "TENANT_NAME_TAKEN",
    );
    expect(again.metadata.get("idempotent-replayed")).toBe("true");
  });

  it("never store a new key's secret: a replay returns the record without it", async () => {
    const w = await bookingWorld(server.url);
    const keys = clientFor(KeyService, server.url, w.key);
    const first = await keys.createApiKey({ scopes: ["bookings.read"] }, keyed("new-key").options);
    expect(first.apiKey).toMatch(/^hf_/);
    const replay = keyed("new-key");
    const second = await keys.createApiKey({ scopes: ["bookings.read"] }, replay.options);
    expect(replay.seen.replayed).toBe(true);
    expect(second.key?.id).toBe(first.key?.id);
    expect(second.apiKey).toBe("");
    const { rows } = await server.pool.query(
      "SELECT outcome::text AS o FROM idempotency_keys WHERE key = 'new-key'",
    );
    expect(rows[0].o).not.toContain(first.apiKey);
  });
});

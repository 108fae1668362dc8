import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, jsonReason, postJson, rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * What counts as the same request under one Idempotency-Key: the same
 * protobuf message, on whichever protocol and however its JSON is spelt.
 * A field set to an empty message is not the same message as one left
 * unset (it is on the wire, and in what an update changes).
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

const CREATE_HOLD = "holdfast.v1.BookingService/CreateHold";
const UPDATE_RESOURCE = "holdfast.v1.ResourceService/UpdateResource";

describe("the same request under one Idempotency-Key", () => {
  it("is the same protobuf message: a gRPC binary call and its Connect JSON spelling replay each other", async () => {
    const w = await bookingWorld(server.url, { protocol: "grpc" });
    const range = at(3, 9);
    const iso = (ms: number) => new Date(ms).toISOString();
    let header: Headers | undefined;
    const first = await w.bookings.createHold(
      {
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...range,
        ttl: { seconds: 600n, nanos: 0 },
        attendee: { name: "Ada" },
        metadata: { b: 1, a: "x" },
      },
      {
        headers: { "Idempotency-Key": "fp-1" },
        onHeader: (h) => {
          header = h;
        },
      },
    );
    expect(header?.get("idempotent-replayed")).toBeNull();
    // The same message in JSON: other field names (proto names), another
    // key order, the time with an offset, the duration and a number with a
    // fraction.
    const spelt = JSON.stringify({
      metadata: { a: "x", b: 1 },
      attendee: { name: "Ada" },
      ttl: "600.000s",
      end_time: iso(range.startMs + 30 * 60_000).replace("Z", "+00:00"),
      start_time: iso(range.startMs).replace("Z", "+00:00"),
      resource_id: w.resourceId,
      service_id: w.serviceId,
    }).replace('"b":1', '"b":1.0');
    const again = await postJson(server.url, CREATE_HOLD, spelt, w.key, {
      "Idempotency-Key": "fp-1",
    });
    expect(again.status).toBe(200);
    expect(again.headers.get("idempotent-replayed")).toBe("true");
    expect((again.body.booking as { id: string }).id).toBe(first.booking?.id);

    // And the other way round: JSON first, then gRPC.
    const json = {
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      startTime: iso(range.startMs + 60 * 60_000),
      endTime: iso(range.startMs + 90 * 60_000),
    };
    const made = await postJson(server.url, CREATE_HOLD, json, w.key, {
      "Idempotency-Key": "fp-2",
    });
    expect(made.status).toBe(200);
    const replayed = await w.bookings.createHold(
      { serviceId: w.serviceId, resourceId: w.resourceId, ...at(3, 10) },
      {
        headers: { "Idempotency-Key": "fp-2" },
        onHeader: (h) => {
          header = h;
        },
      },
    );
    expect(header?.get("idempotent-replayed")).toBe("true");
    expect(replayed.booking?.id).toBe((made.body.booking as { id: string }).id);
  });

  it('is not a request with "metadata": {} and one without: an update clears the metadata for one and keeps it for the other', async () => {
    const w = await bookingWorld(server.url);
    const resources = clientFor(ResourceService, server.url, w.key, "grpc");
    const { resource } = await resources.createResource({
      name: "Room",
      timeZone: "UTC",
      metadata: { floor: 2 },
    });
    const id = resource?.id as string;
    const keep = await postJson(
      server.url,
      UPDATE_RESOURCE,
      { resource: { id, name: "Room A" } },
      w.key,
      { "Idempotency-Key": "upd-1" },
    );
    expect(keep.status).toBe(200);
    expect((keep.body.resource as { metadata: unknown }).metadata).toEqual({ floor: 2 });
    const clearing = { resource: { id, name: "Room A", metadata: {} } };
    const reused = await postJson(server.url, UPDATE_RESOURCE, clearing, w.key, {
      "Idempotency-Key": "upd-1",
    });
    expect([reused.status, jsonReason(reused)]).toEqual([400, "IDEMPOTENCY_KEY_REUSED"]);
    // Under a key of its own it does what it says: the metadata is cleared.
    const cleared = await postJson(server.url, UPDATE_RESOURCE, clearing, w.key, {
      "Idempotency-Key": "upd-2",
    });
    expect(cleared.status).toBe(200);
    expect((cleared.body.resource as { metadata?: unknown }).metadata ?? {}).toEqual({});
    // The same over gRPC: a metadata set to an empty Struct is sent, and differs.
    await rejected(
      resources.updateResource(
        { resource: { id, name: "Room A" } },
        { headers: { "Idempotency-Key": "upd-2" } },
      ),
      Code.InvalidArgument,
      "IDEMPOTENCY_KEY_REUSED",
    );
  });
});

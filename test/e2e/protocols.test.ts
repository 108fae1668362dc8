import { execFile } from "node:child_process";
import { createConnection } from "node:net";
import { promisify } from "node:util";
import { Code } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import {
  clientFor,
  grpcJsClient,
  grpcJsReason,
  grpcJsStatus,
  jsonReason,
  newTenant,
  postJson,
  rawGrpc,
  rawGrpcWeb,
  rejected,
} from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

const run = promisify(execFile);
let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_MAX_REQUEST_BYTES: "65536" });
  key = (await newTenant(server.url)).key;
});

const CREATE = "holdfast.v1.ResourceService/CreateResource";

describe("bad input gets InvalidArgument with a reason, never Internal", () => {
  it.each([
    ["malformed JSON", '{"name": "x",', "MALFORMED_REQUEST", undefined],
    [
      "a wrong type",
      { name: "Room", timeZone: "UTC", capacity: "many" },
      "MALFORMED_REQUEST",
      "capacity",
    ],
    [
      "an unknown enum value",
      { name: "Room", timeZone: "UTC", kind: "RESOURCE_KIND_SPACESHIP" },
      "MALFORMED_REQUEST",
      undefined,
    ],
    [
      "an unknown field",
      { name: "Room", timeZone: "UTC", colour: "red" },
      "MALFORMED_REQUEST",
      "colour",
    ],
    [
      "an invalid time zone",
      { name: "Room", timeZone: "Europe/Atlantis" },
      "VALIDATION_ERROR",
      "time_zone",
    ],
    ["a JSON array", "[1,2]", "MALFORMED_REQUEST", undefined],
    [
      "a NUL character in text",
      { name: "Ro\u0000om", timeZone: "UTC" },
      "VALIDATION_ERROR",
      undefined,
    ],
    [
      "a NUL character in metadata",
      { name: "Room", timeZone: "UTC", metadata: { note: "a\u0000b" } },
      "VALIDATION_ERROR",
      undefined,
    ],
  ])("over Connect JSON: %s", async (_, body, reason, field) => {
    const reply = await postJson(server.url, CREATE, body, key);
    expect(reply.status).toBe(400);
    expect(reply.body.code).toBe("invalid_argument");
    expect(jsonReason(reply)).toBe(reason);
    if (field) {
      const violations = (
        reply.body.details as { type: string; debug: { fieldViolations?: { field: string }[] } }[]
      )
        .flatMap((d) => d.debug.fieldViolations ?? [])
        .map((v) => v.field);
      expect(violations).toContain(field);
    }
  });

  it("caps the body size for every protocol", async () => {
    const big = { name: "Room", timeZone: "UTC", metadata: { blob: "x".repeat(70_000) } };
    const reply = await postJson(server.url, CREATE, big, key);
    expect(reply.status).toBe(400);
    expect(jsonReason(reply)).toBe("REQUEST_TOO_LARGE");
    for (const protocol of ["grpc", "grpc-web", "connect"] as const) {
      await rejected(
        clientFor(ResourceService, server.url, key, protocol).createResource(big),
        Code.InvalidArgument,
        "REQUEST_TOO_LARGE",
      );
    }
    // The server is fine afterwards.
    expect(
      (await clientFor(ResourceService, server.url, key).listResources({})).resources,
    ).toBeDefined();
  });

  it("refuses metadata over 16 KiB with a field violation", async () => {
    const reply = await postJson(
      server.url,
      CREATE,
      { name: "R", timeZone: "UTC", metadata: { a: "y".repeat(17_000) } },
      key,
    );
    expect(jsonReason(reply)).toBe("VALIDATION_ERROR");
    // Counted in UTF-8 bytes: 6,000 CJK characters are 18 KB.
    const cjk = await postJson(
      server.url,
      CREATE,
      { name: "R", timeZone: "UTC", metadata: { a: "字".repeat(6_000) } },
      key,
    );
    expect(jsonReason(cjk)).toBe("VALIDATION_ERROR");
  });

  it("refuses what only a binary request can carry, with an Idempotency-Key or without", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
    });
    // Beyond google.protobuf.Duration's range, which JSON could not even say.
    const extend = { bookingId: booking?.id as string, ttl: { seconds: 10n ** 15n } };
    await rejected(w.bookings.extendHold(extend), Code.InvalidArgument, "VALIDATION_ERROR");
    await rejected(
      w.bookings.extendHold(extend, { headers: { "Idempotency-Key": "far-future" } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("refuses edited page tokens and cursors, not only garbage ones", async () => {
    const w = await bookingWorld(server.url);
    for (const h of [9, 10]) {
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, h),
      });
    }
    const { nextPageToken } = await w.bookings.listBookings({ pageSize: 1 });
    const token = JSON.parse(Buffer.from(nextPageToken, "base64url").toString());
    const edited = Buffer.from(JSON.stringify({ ...token, k: "soon|bkg_1" })).toString("base64url");
    await rejected(
      w.bookings.listBookings({ pageSize: 1, pageToken: edited }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await rejected(
      clientFor(EventService, server.url, w.key).listEvents({ after: `ev1_${"z".repeat(14)}_0` }),
      Code.InvalidArgument,
      "INVALID_CURSOR",
    );
  });

  it("answers an unknown procedure with METHOD_NOT_FOUND in the caller's own protocol", async () => {
    const nope = "holdfast.v1.ResourceService/Explode";
    const reply = await postJson(server.url, nope, {}, key);
    expect(reply.status).toBe(404);
    expect(jsonReason(reply)).toBe("METHOD_NOT_FOUND");
    const auth = { authorization: `Bearer ${key}` };
    for (const raw of [
      await rawGrpc(server.url, nope, Buffer.alloc(5), auth),
      await rawGrpcWeb(server.url, nope, Buffer.alloc(5), auth),
    ]) {
      expect([raw.status, raw.code, raw.reason]).toEqual([
        200,
        "Unimplemented",
        "METHOD_NOT_FOUND",
      ]);
      expect(raw.message).toContain("no RPC at /holdfast.v1.ResourceService/Explode");
    }
    // An outside backend's gRPC client reads the trailers-only answer.
    const { Client, credentials, status } = await import("@grpc/grpc-js");
    const client = new Client(new URL(server.url).host, credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
        client.makeUnaryRequest(
          `/${nope}`,
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (e) => (e ? resolve(e) : reject(new Error("answered"))),
        ),
      );
      expect(err.code).toBe(status.UNIMPLEMENTED);
      expect(grpcJsReason(err)).toBe("METHOD_NOT_FOUND");
    } finally {
      client.close();
    }
  });
});

describe("connections", () => {
  it("closes one that never says which protocol it speaks", async () => {
    const { port } = new URL(server.url);
    const socket = createConnection(Number(port), "127.0.0.1");
    const closed = await new Promise<boolean>((resolve) => {
      socket.once("close", () => resolve(true));
      setTimeout(() => resolve(false), 15_000);
    });
    socket.destroy();
    expect(closed).toBe(true);
  });
});

describe("health checking", () => {
  it("reports SERVING over gRPC and Connect JSON, and NOT_FOUND for unknown services", async () => {
    const health = clientFor(Health, server.url, undefined);
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: "holdfast.v1.BookingService" })).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    await rejected(
      health.check({ service: "nope.Service" }),
      Code.NotFound,
      "HEALTH_SERVICE_NOT_FOUND",
    );
    const reply = await postJson(server.url, "grpc.health.v1.Health/Check", {});
    expect(reply.body).toEqual({ status: "SERVING" });
  });
});

describe("server reflection", () => {
  const buf = "node_modules/.bin/buf";
  const auth = () => ["-H", `Authorization: Bearer ${key}`];

  it("lists the services for buf curl", async () => {
    const { stdout } = await run(buf, [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--list-services",
      server.url,
    ]);
    const services = stdout.trim().split("\n");
    expect(services).toEqual(
      expect.arrayContaining([
        "holdfast.v1.ResourceService",
        "holdfast.v1.CatalogService",
        "holdfast.v1.KeyService",
        "holdfast.v1.TenantService",
        "holdfast.v1.BookingService",
        "holdfast.v1.AvailabilityService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
      ]),
    );
  });

  it("lets buf curl call a method without a local schema (reflection v1 and v1alpha)", async () => {
    for (const reflectProtocol of ["grpc-v1", "grpc-v1alpha"]) {
      const { stdout } = await run(buf, [
        "curl",
        "--protocol",
        "grpc",
        "--http2-prior-knowledge",
        "--reflect-protocol",
        reflectProtocol,
        ...auth(),
        "-d",
        JSON.stringify({
          name: `Reflected ${reflectProtocol}`,
          timeZone: "Europe/Berlin",
          kind: "RESOURCE_KIND_ROOM",
        }),
        `${server.url}/holdfast.v1.ResourceService/CreateResource`,
      ]);
      expect(JSON.parse(stdout).resource).toMatchObject({
        name: `Reflected ${reflectProtocol}`,
        kind: "RESOURCE_KIND_ROOM",
      });
    }
  });
});

describe("an outside backend on @grpc/grpc-js with proto-loader", () => {
  it("creates and reads resources, and sees reasons in the status details", async () => {
    const client = grpcJsClient(server.url, "holdfast/v1/resource.proto", "ResourceService", key);
    try {
      const created = (await client.call("createResource", {
        name: "Van",
        kind: "RESOURCE_KIND_EQUIPMENT",
        timeZone: "Asia/Kolkata",
        capacity: 2,
      })) as {
        resource: { id: string; kind: string; capacity: number; timeZone: string };
      };
      expect(created.resource).toMatchObject({
        kind: "RESOURCE_KIND_EQUIPMENT",
        capacity: 2,
        timeZone: "Asia/Kolkata",
      });
      const got = (await client.call("getResource", { resourceId: created.resource.id })) as {
        resource: { id: string };
      };
      expect(got.resource.id).toBe(created.resource.id);

      const notFound = (await client
        .call("getResource", { resourceId: "rsc_missing" })
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(notFound.code).toBe(5);
      expect(grpcJsReason(notFound)).toBe("RESOURCE_NOT_FOUND");

      const invalid = (await client
        .call("createResource", { name: "x", timeZone: "Not/AZone" })
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(invalid.code).toBe(3);
      expect(grpcJsReason(invalid)).toBe("VALIDATION_ERROR");
    } finally {
      client.close();
    }
  });

  it("reads every error message as it was written: grpc-message encoded as the gRPC spec says", async () => {
    // @grpc/grpc-js decodes grpc-message with decodeURI, which leaves the
    // escapes of reserved characters (`:` as %3A, `/` as %2F) as they are.
    const client = grpcJsClient(server.url, "holdfast/v1/resource.proto", "ResourceService", key);
    try {
      const invalid = (await client
        .call("createResource", { name: "x", timeZone: "Mars/Olympus Mons, é 100%" })
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(grpcJsReason(invalid)).toBe("VALIDATION_ERROR");
      const written = grpcJsStatus(invalid)?.message ?? "";
      expect(written).toMatch(/: .*Mars\/Olympus Mons, é 100%/);
      expect(invalid.details).toBe(written);
    } finally {
      client.close();
    }
    // The same for the edge's own answer to an unknown procedure.
    const { Client, credentials } = await import("@grpc/grpc-js");
    const raw = new Client(new URL(server.url).host, credentials.createInsecure());
    try {
      const err = await new Promise<grpc.ServiceError>((resolve, reject) =>
        raw.makeUnaryRequest(
          "/holdfast.v1.ResourceService/Explode",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (e) => (e ? resolve(e) : reject(new Error("answered"))),
        ),
      );
      expect(err.details).toBe(grpcJsStatus(err)?.message);
      expect(err.details).toContain("no RPC at /holdfast.v1.ResourceService/Explode: see");
    } finally {
      raw.close();
    }
  });

  it("is refused without a key, with reason UNAUTHENTICATED", async () => {
    const client = grpcJsClient(
      server.url,
      "holdfast/v1/resource.proto",
      "ResourceService",
      "hf_wrong",
    );
    try {
      const err = (await client
        .call("listResources", {})
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(16);
      expect(grpcJsReason(err)).toBe("UNAUTHENTICATED");
    } finally {
      client.close();
    }
  });
});

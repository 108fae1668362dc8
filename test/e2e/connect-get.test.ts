import { createConnection } from "node:net";
import { gzipSync } from "node:zlib";
import { create, type DescMethod, fromBinary, toBinary } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import {
  GetResourceRequestSchema,
  GetResourceResponseSchema,
  ResourceService,
} from "../../gen/holdfast/v1/resource_pb.js";
import { API_SERVICES } from "../../src/server.js";
import { at, bookingWorld } from "../support/booking.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

/**
 * A Connect GET request, as the protocol defines it for side-effect-free
 * methods: the message in the `message` query parameter, JSON as is or
 * binary (and optionally gzip-compressed) as unpadded base64url.
 */
async function connectGet(
  procedure: string,
  message: unknown,
  key: string | undefined,
  form: { encoding: "json" | "proto"; base64?: boolean; gzip?: boolean } = { encoding: "json" },
) {
  let bytes: Uint8Array | string =
    form.encoding === "json" ? JSON.stringify(message) : (message as Uint8Array);
  if (form.gzip) bytes = gzipSync(bytes);
  const query = new URLSearchParams({ connect: "v1", encoding: form.encoding });
  if (form.base64 || form.gzip) {
    query.set("base64", "1");
    query.set("message", Buffer.from(bytes).toString("base64url"));
  } else {
    query.set("message", bytes as string);
  }
  if (form.gzip) query.set("compression", "gzip");
  return fetch(`${server.url}/${procedure}?${query}`, {
    headers: key === undefined ? {} : { authorization: `Bearer ${key}` },
  });
}

const unaryReads = (services: readonly { methods: DescMethod[] }[]) =>
  services.flatMap((s) =>
    s.methods.filter(
      (m) =>
        m.methodKind === "unary" &&
        m.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
    ),
  );
const path = (m: DescMethod) => `${m.parent.typeName}/${m.name}`;

describe("Connect GET", () => {
  it("is declared for every read and no write of the API", () => {
    const unary = API_SERVICES.flatMap((s) => s.methods).filter((m) => m.methodKind === "unary");
    const reads = unary.filter((m) => /^(Get|List)/.test(m.name)).map(path);
    expect(unaryReads(API_SERVICES).map(path)).toEqual(reads);
    expect(reads.length).toBeGreaterThan(15);
  });

  it("is answered by every read, the health check included", async () => {
    const methods = [...unaryReads(API_SERVICES).map(path), "grpc.health.v1.Health/Check"];
    for (const procedure of methods) {
      const res = await connectGet(procedure, {}, ADMIN_KEY);
      const body = (await res.json()) as { code?: string };
      // An empty request may be refused for a missing id: the method still
      // answered, in JSON, rather than the framework (405, 415).
      expect({ procedure, status: [200, 400, 404].includes(res.status), code: body.code }).toEqual({
        procedure,
        status: true,
        code: res.status === 200 ? undefined : body.code,
      });
      expect(res.headers.get("content-type")).toBe("application/json");
    }
    const health = await connectGet(path(Health.method.check), { service: "" }, undefined);
    expect(await health.json()).toEqual({ status: "SERVING" });
  });

  it("answers one read of each service with its result, in JSON, binary and gzip forms", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
    });
    const json = async (procedure: string, message: unknown, key = w.key) => {
      const res = await connectGet(procedure, message, key);
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    };

    expect(
      ((await json("holdfast.v1.TenantService/ListTenants", {}, ADMIN_KEY)).tenants as unknown[])
        .length,
    ).toBeGreaterThan(1);
    expect(await json("holdfast.v1.KeyService/GetCaller", {})).toMatchObject({
      tenantId: w.tenantId,
    });
    expect(
      await json("holdfast.v1.CatalogService/GetService", { serviceId: w.serviceId }),
    ).toMatchObject({ service: { id: w.serviceId } });
    const slots = await json("holdfast.v1.AvailabilityService/ListSlots", {
      serviceId: w.serviceId,
      startTime: new Date(Number(at(1, 10).startTime.seconds) * 1000).toISOString(),
      endTime: new Date(Number(at(1, 11).startTime.seconds) * 1000).toISOString(),
    });
    expect((slots.slots as unknown[]).length).toBeGreaterThan(0);
    expect(
      await json("holdfast.v1.BookingService/GetBooking", { bookingId: booking?.id }),
    ).toMatchObject({ booking: { id: booking?.id, localStartTime: expect.any(String) } });
    expect(await json("holdfast.v1.EventService/ListEvents", { pageSize: 10 })).toHaveProperty(
      "nextCursor",
    );
    expect(await json("holdfast.v1.WebhookService/ListWebhooks", {})).toEqual({});

    // Binary, as base64url; and gzip-compressed binary.
    const request = toBinary(
      GetResourceRequestSchema,
      create(GetResourceRequestSchema, { resourceId: w.resourceId }),
    );
    for (const form of [
      { encoding: "proto", base64: true },
      { encoding: "proto", gzip: true },
    ] as const) {
      const res = await connectGet(path(ResourceService.method.getResource), request, w.key, form);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("application/proto");
      const reply = fromBinary(GetResourceResponseSchema, new Uint8Array(await res.arrayBuffer()));
      expect(reply.resource?.id).toBe(w.resourceId);
    }
    // JSON compressed with gzip.
    const zipped = await connectGet("holdfast.v1.KeyService/GetCaller", {}, w.key, {
      encoding: "json",
      gzip: true,
    });
    expect(await zipped.json()).toMatchObject({ tenantId: w.tenantId });
  });

  it("is refused for writes, which need POST and an Idempotency-Key", async () => {
    const res = await connectGet("holdfast.v1.BookingService/CreateHold", {}, ADMIN_KEY);
    expect(res.status).toBe(405);
  });

  it("answers a URL over Node's 16 KiB header limit with REQUEST_TOO_LARGE, as JSON", async () => {
    const { port } = new URL(server.url);
    const message = encodeURIComponent(JSON.stringify({ service: "x".repeat(20_000) }));
    const answer = await new Promise<string>((resolve) => {
      const socket = createConnection(Number(port), "127.0.0.1");
      let got = "";
      socket.on("data", (d: Buffer) => {
        got += d.toString();
      });
      socket.once("close", () => resolve(got));
      socket.write(
        `GET /grpc.health.v1.Health/Check?encoding=json&message=${message} HTTP/1.1\r\nHost: x\r\n\r\n`,
      );
    });
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as {
      code: string;
      details: { debug?: { reason?: string } }[];
    };
    expect(body.code).toBe("invalid_argument");
    expect(body.details[0]?.debug?.reason).toBe("REQUEST_TOO_LARGE");
  });
});

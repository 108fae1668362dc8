import type { DescMethod } from "@bufbuild/protobuf";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { Health } from "../../gen/health/v1/health_pb.js";
import { API_SERVICES } from "../../src/server.js";
import {
  envelope,
  newTenant,
  type RawReply,
  rawConnect,
  rawGrpc,
  rawGrpcWeb,
} from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * Generated bad input to every RPC, over Connect JSON, gRPC and gRPC-Web:
 * never Internal, a reason on every error, an answer that does not grow
 * beyond a small multiple of its request (or a fixed cap), and a server
 * that is still there afterwards.
 */
let server: TestServer;
let key: string;

beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_MAX_REQUEST_BYTES: "65536" });
  key = (await newTenant(server.url)).key;
});

const methods: DescMethod[] = [...API_SERVICES, Health].flatMap((s) => s.methods);
const pathOf = (m: DescMethod) => `${m.parent.typeName}/${m.name}`;
const streams = (m: DescMethod) => m.methodKind !== "unary";

/** JSON an agent might get wrong: the method's own keys (and near misses) with any values. */
function jsonBody(m: DescMethod): fc.Arbitrary<string> {
  const keys = m.input.fields.flatMap((f) => [f.jsonName, f.name, f.jsonName.toUpperCase()]);
  const key = fc.oneof(
    fc.constantFrom(...(keys.length ? keys : ["x"])),
    fc.string({ maxLength: 12 }),
  );
  const value = fc.oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.constantFrom("1800", "1800s", "2030-03-04T00:00:00", "-1", "9".repeat(30), "\u0000"),
    fc.array(fc.string({ maxLength: 40 }), { maxLength: 300 }),
  );
  return fc.oneof(
    fc.dictionary(key, value, { maxKeys: 6 }).map((o) => JSON.stringify(o)),
    fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 200 }),
    // Nested far deeper than any message.
    fc
      .integer({ min: 100, max: 20_000 })
      .map((n) => `${"[".repeat(n)}${"]".repeat(n)}`),
  );
}

/** Enveloped bodies that do not parse, or that parse as something unexpected. */
const binaryBody: fc.Arbitrary<{ body: Uint8Array; headers: Record<string, string> }> = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((b) => ({ body: envelope(b), headers: {} })),
  fc
    .tuple(fc.uint8Array({ maxLength: 300 }), fc.integer({ min: 0, max: 255 }))
    .map(([b, flags]) => ({ body: envelope(b, flags), headers: {} })),
  fc
    .tuple(fc.uint8Array({ maxLength: 300 }), fc.nat(310))
    .map(([b, cut]) => ({ body: envelope(b).subarray(0, cut), headers: {} })),
  fc.uint8Array({ maxLength: 300 }).map((b) => ({
    body: envelope(b, 1),
    headers: { "grpc-encoding": "gzip" },
  })),
  fc.uint8Array({ maxLength: 60 }).map((b) => ({ body: b, headers: {} })),
  fc.constantFrom("99999999H", "0n", "1S", "x", "-1m").map((t) => ({
    body: envelope(new Uint8Array()),
    headers: { "grpc-timeout": t },
  })),
);

function check(what: string, requestBytes: number, reply: RawReply): void {
  const context = `${what}: ${reply.code} ${reply.reason ?? "(no reason)"} ${reply.message.slice(0, 200)}`;
  expect(["Internal", "internal", "Unknown", "unknown"], context).not.toContain(reply.code);
  if (reply.code !== "OK" && reply.code !== "ok") expect(reply.reason, context).toBeDefined();
  expect(reply.size, context).toBeLessThanOrEqual(Math.max(16 * requestBytes, 32 * 1024));
}

const auth = () => ({ authorization: `Bearer ${key}` });
// Streams would run until their deadline: a short one ends them.
const deadline = (m: DescMethod, header: string, value: string) =>
  streams(m) ? { [header]: value } : {};

describe("generated bad input to every RPC", () => {
  it("over Connect JSON", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...methods).chain((m) => fc.tuple(fc.constant(m), jsonBody(m))),
        async ([m, body]) => {
          const headers = streams(m)
            ? {
                "content-type": "application/connect+json",
                ...deadline(m, "connect-timeout-ms", "200"),
              }
            : { "content-type": "application/json" };
          const sent = streams(m) ? envelope(Buffer.from(body)) : body;
          const reply = await rawConnect(server.url, pathOf(m), sent, { ...auth(), ...headers });
          if (streams(m)) return; // a streamed answer's errors are checked over gRPC below
          check(`${pathOf(m)} ${body.slice(0, 100)}`, Buffer.byteLength(body), reply);
        },
      ),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 250) },
    );
  }, 180_000);

  for (const [name, call] of [
    ["gRPC", rawGrpc],
    ["gRPC-Web", rawGrpcWeb],
  ] as const) {
    it(`over ${name}`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.constantFrom(...methods), binaryBody, async (m, { body, headers }) => {
          const reply = await call(server.url, pathOf(m), body, {
            ...auth(),
            ...headers,
            // A well-formed stream would run until its deadline.
            ...deadline(m, "grpc-timeout", "200m"),
          });
          check(
            `${pathOf(m)} ${Buffer.from(body).toString("hex").slice(0, 80)}`,
            body.byteLength,
            reply,
          );
        }),
        { numRuns: Number(process.env.FUZZ_RUNS ?? 250) },
      );
    }, 180_000);
  }

  it("leaves the server serving", async () => {
    const reply = await rawConnect(server.url, "grpc.health.v1.Health/Check", "{}", {
      "content-type": "application/json",
    });
    expect(reply.status).toBe(200);
  });
});

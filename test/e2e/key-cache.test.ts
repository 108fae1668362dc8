import { randomBytes } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { clientFor, jsonReason, newTenant, postJson } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

const GET_CALLER = "holdfast.v1.KeyService/GetCaller";

let server: TestServer;
beforeAll(async () => {
  // Keys stay trusted for the whole file, however slow the machine: what
  // is measured here is eviction, not expiry.
  server = await startTestServer({ HOLDFAST_KEY_CACHE_TTL_MS: "3600000" });
});

/** Answers GetCaller once per key, `concurrency` calls at a time; returns the HTTP statuses seen. */
async function callWith(
  keys: readonly string[],
  concurrency: number,
): Promise<Map<number, number>> {
  const statuses = new Map<number, number>();
  let next = 0;
  const worker = async () => {
    while (next < keys.length) {
      const key = keys[next++] as string;
      const res = await fetch(`${server.url}/${GET_CALLER}`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
        body: "{}",
      });
      await res.arrayBuffer();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return statuses;
}

const madeUpKey = () => `hf_${randomBytes(32).toString("base64url")}`;

describe("the API key cache", () => {
  it("keeps valid keys through a flood of 50,000 made-up ones", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const valid = [key];
    for (let i = 0; i < 19; i++) {
      valid.push(
        (await keys.createApiKey({ scopes: ["catalog.read"], description: `k${i}` })).apiKey,
      );
    }
    expect(await callWith(valid, 4)).toEqual(new Map([[200, 20]]));
    const beforeFlood = server.keyring.lookups;

    const flood = Array.from({ length: 50_000 }, madeUpKey);
    expect(await callWith(flood, 32)).toEqual(new Map([[401, 50_000]]));
    // Every made-up key was looked up once: none of them was mistaken for another.
    expect(server.keyring.lookups - beforeFlood).toBe(50_000);

    const afterFlood = server.keyring.lookups;
    expect(await callWith(valid, 4)).toEqual(new Map([[200, 20]]));
    expect(server.keyring.lookups).toBe(afterFlood);
  }, 600_000);

  it("looks a key up once for many concurrent first calls, known or not", async () => {
    const { key } = await newTenant(server.url);
    const fresh = (
      await clientFor(KeyService, server.url, key).createApiKey({
        scopes: ["catalog.read"],
        description: "fresh",
      })
    ).apiKey;
    const unknown = madeUpKey();
    const before = server.keyring.lookups;
    const replies = await Promise.all([
      ...Array.from({ length: 20 }, () => postJson(server.url, GET_CALLER, {}, fresh)),
      ...Array.from({ length: 20 }, () => postJson(server.url, GET_CALLER, {}, unknown)),
    ]);
    expect(replies.slice(0, 20).every((r) => r.status === 200)).toBe(true);
    expect(replies.slice(20).map(jsonReason)).toEqual(Array(20).fill("UNAUTHENTICATED"));
    expect(server.keyring.lookups - before).toBe(2);
  });

  it("forgets a revoked key at once", async () => {
    const { key } = await newTenant(server.url);
    const keys = clientFor(KeyService, server.url, key);
    const created = await keys.createApiKey({ scopes: ["catalog.read"], description: "soon gone" });
    expect((await postJson(server.url, GET_CALLER, {}, created.apiKey)).status).toBe(200);
    await keys.revokeApiKey({ apiKeyId: created.key?.id as string });
    const reply = await postJson(server.url, GET_CALLER, {}, created.apiKey);
    expect(jsonReason(reply)).toBe("UNAUTHENTICATED");
  });
});

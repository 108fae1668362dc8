import { beforeAll, describe, expect, it } from "vitest";
import { CatalogCache } from "../../src/db/catalog-cache.js";
import type { Queryable } from "../../src/db/pool.js";
import { type BookingWorld, bookingWorld } from "../support/booking.js";
import { startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
let world: BookingWorld;
beforeAll(async () => {
  server = await startTestServer();
  world = await bookingWorld(server.url, { resources: 3 });
});

/** A cache of its own over the server's database, counting the queries it sends. */
function countedCache() {
  let queries = 0;
  const db = {
    query: (text: string, values: unknown[]) => {
      queries++;
      return server.pool.query(text, values);
    },
  } as unknown as Queryable;
  return { cache: new CatalogCache(db, undefined), queries: () => queries };
}

describe("the catalog cache", () => {
  it("loads a service once for many concurrent misses, and keeps it", async () => {
    const { cache, queries } = countedCache();
    const got = await Promise.all(
      Array.from({ length: 20 }, () => cache.service(world.tenantId, world.serviceId)),
    );
    expect(new Set(got).size).toBe(1);
    expect(got[0]?.resourceIds).toEqual(world.resourceIds);
    expect(queries()).toBe(1);
    await cache.service(world.tenantId, world.serviceId);
    expect(queries()).toBe(1);
  });

  it("reads the resources missed by concurrent calls in one query", async () => {
    const { cache, queries } = countedCache();
    const [all, one, again] = await Promise.all([
      cache.resources(world.tenantId, [...world.resourceIds, "res_missing"]),
      cache.resource(world.tenantId, world.resourceId),
      cache.resources(world.tenantId, world.resourceIds),
    ]);
    expect([...all.keys()]).toEqual(world.resourceIds);
    expect(one?.id).toBe(world.resourceId);
    expect(again.size).toBe(3);
    expect(queries()).toBe(1);
  });

  it("keeps nothing for ids that do not exist, and they evict nothing", async () => {
    const { cache, queries } = countedCache();
    await cache.service(world.tenantId, world.serviceId);
    for (let i = 0; i < 2_000; i += 200) {
      await Promise.all(
        Array.from({ length: 200 }, (_, j) => cache.service(world.tenantId, `svc_nope${i + j}`)),
      );
    }
    expect(await cache.service(world.tenantId, "svc_nope1")).toBeUndefined();
    const before = queries();
    expect((await cache.service(world.tenantId, world.serviceId))?.id).toBe(world.serviceId);
    expect(queries()).toBe(before);
  });

  it("forgets one tenant's copies, not another's", async () => {
    const other = await bookingWorld(server.url);
    const { cache, queries } = countedCache();
    await cache.service(world.tenantId, world.serviceId);
    await cache.service(other.tenantId, other.serviceId);
    await cache.resource(world.tenantId, world.resourceId);
    expect(queries()).toBe(3);
    cache.forget(world.tenantId);
    await cache.service(other.tenantId, other.serviceId);
    expect(queries()).toBe(3);
    await cache.service(world.tenantId, world.serviceId);
    await cache.resource(world.tenantId, world.resourceId);
    expect(queries()).toBe(5);
  });
});

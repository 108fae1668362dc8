import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { bookingWorld } from "../support/booking.js";
import { clientFor, keyed, newTenant } from "../support/clients.js";
import { freshDatabase, lockWaiters } from "../support/database.js";
import { startTestServer } from "../support/server.js";

/**
 * Duplicates of a request that is still running (same Idempotency-Key, same
 * request) wait for it without holding a connection of the pool, on the
 * instance running it and on others: any number of them leave the other
 * tenants' calls their connections.
 */

/** A transaction of its own holding the resource's row, which UpdateResource then waits for. */
async function holdResourceRow(databaseUrl: string, resourceId: string) {
  const holder = new pg.Client({ connectionString: databaseUrl });
  await holder.connect();
  onTestFinished(() => holder.end());
  await holder.query("BEGIN");
  await holder.query("SELECT 1 FROM resources WHERE id = $1 FOR UPDATE", [resourceId]);
  return holder;
}

/** Until a session of the servers waits for a lock (the first request, behind the row). */
const untilOneWaits = (databaseUrl: string) =>
  vi.waitFor(async () => expect(await lockWaiters(databaseUrl)).toBeGreaterThan(0), {
    timeout: 30_000,
    interval: 20,
  });

type Settled = { value?: unknown; error?: ConnectError; replayed: boolean };

/** The call's outcome once settled, and whether it has. */
function track(
  call: (options: ReturnType<typeof keyed>["options"]) => Promise<unknown>,
  key: string,
) {
  const { seen, options } = keyed(key);
  const state: { settled?: Settled } = {};
  const done = call(options).then(
    (value) => {
      state.settled = { value, replayed: seen.replayed };
    },
    (err: unknown) => {
      state.settled = { error: ConnectError.from(err), replayed: seen.replayed };
    },
  );
  return { state, done };
}

describe("duplicates of a request still running", { timeout: 120_000 }, () => {
  it("wait for it without a connection, here and on another instance, leave other tenants theirs, then replay it", async () => {
    const databaseUrl = await freshDatabase();
    // A small pool, and a lock timeout longer than the pool's wait for a
    // connection (10 s): duplicates waiting in Postgres would starve the rest.
    const env = { HOLDFAST_DB_POOL_SIZE: "4", HOLDFAST_DB_LOCK_TIMEOUT_MS: "20000" };
    const here = await startTestServer(env, databaseUrl);
    const there = await startTestServer(env, databaseUrl);
    const w = await bookingWorld(here.url);
    const holder = await holdResourceRow(databaseUrl, w.resourceId);

    const update = (url: string) => (options: ReturnType<typeof keyed>["options"]) =>
      clientFor(ResourceService, url, w.key).updateResource(
        { resource: { id: w.resourceId, name: "Renamed" }, updateMask: { paths: ["name"] } },
        options,
      );
    const first = track(update(here.url), "rename-1");
    await untilOneWaits(databaseUrl);
    const duplicates = [
      ...Array.from({ length: 15 }, () => track(update(here.url), "rename-1")),
      ...Array.from({ length: 15 }, () => track(update(there.url), "rename-1")),
    ];

    // Another tenant's calls, on both instances, get connections meanwhile.
    const other = await newTenant(here.url);
    for (const url of [here.url, there.url]) {
      const resources = clientFor(ResourceService, url, other.key);
      for (let i = 0; i < 10; i++) await resources.listResources({});
    }
    expect(first.state.settled).toBeUndefined();
    expect(duplicates.filter((d) => d.state.settled)).toEqual([]);

    await holder.query("COMMIT");
    await Promise.all([first.done, ...duplicates.map((d) => d.done)]);
    expect(first.state.settled?.error).toBeUndefined();
    expect(first.state.settled?.replayed).toBe(false);
    for (const d of duplicates) {
      expect(d.state.settled?.error).toBeUndefined();
      expect(d.state.settled?.replayed).toBe(true);
      expect(d.state.settled?.value).toEqual(first.state.settled?.value);
    }
  });

  it("are answered UNAVAILABLE after the lock timeout, having done nothing", async () => {
    const databaseUrl = await freshDatabase();
    // Lanes for every duplicate: each waits for the key, none for a turn of its tenant's writes.
    const server = await startTestServer(
      {
        HOLDFAST_DB_POOL_SIZE: "4",
        HOLDFAST_DB_LOCK_TIMEOUT_MS: "1000",
        HOLDFAST_WRITE_LANES: "16",
      },
      databaseUrl,
    );
    const w = await bookingWorld(server.url);
    // The first request with the key, stuck on another instance: its claim,
    // not yet committed.
    const claimant = new pg.Client({ connectionString: databaseUrl });
    await claimant.connect();
    onTestFinished(() => claimant.end());
    await claimant.query("BEGIN");
    await claimant.query(
      `INSERT INTO idempotency_keys (tenant_id, api_key_id, method, key, request_hash)
       SELECT tenant_id, id, 'holdfast.v1.ResourceService/UpdateResource', 'rename-2', '\\x00'
         FROM api_keys WHERE tenant_id = $1`,
      [w.tenantId],
    );
    const resources = clientFor(ResourceService, server.url, w.key);
    const rename = () =>
      track(
        (options) =>
          resources.updateResource(
            { resource: { id: w.resourceId, name: "Renamed" }, updateMask: { paths: ["name"] } },
            options,
          ),
        "rename-2",
      );
    const duplicates = Array.from({ length: 10 }, rename);
    await Promise.all(duplicates.map((d) => d.done));
    for (const d of duplicates) {
      expect(d.state.settled?.error?.code).toBe(Code.Unavailable);
      expect(d.state.settled?.error?.findDetails(ErrorInfoSchema)[0]?.reason).toBe("UNAVAILABLE");
      expect(d.state.settled?.error?.rawMessage).toBe(
        "a request with the same Idempotency-Key is still running; retry shortly",
      );
    }
    expect((await resources.getResource({ resourceId: w.resourceId })).resource?.name).toBe("R0");
    // The first gave up: the key is free again, and a retry runs.
    await claimant.query("ROLLBACK");
    const retry = rename();
    await retry.done;
    expect(retry.state.settled?.error).toBeUndefined();
    expect(retry.state.settled?.replayed).toBe(false);
    expect((await resources.getResource({ resourceId: w.resourceId })).resource?.name).toBe(
      "Renamed",
    );
  });
});

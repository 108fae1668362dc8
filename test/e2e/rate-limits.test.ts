import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { createHoldfastClient } from "../../clients/typescript/src/index.js";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { Health } from "../../gen/health/v1/health_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { insertKey } from "../../src/db/keys.js";
import {
  clientFor,
  fieldViolations,
  grpcJsClient,
  grpcJsReason,
  jsonReason,
  newTenant,
  postJson,
  rejected,
} from "../support/clients.js";
import { callTool, clinic, mcpOverHttp } from "../support/mcp.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * Rate limits per key and per tenant, shared by two instances on one
 * database. Counts only: how many calls were admitted and refused, never
 * how long anything took.
 */

let one: TestServer;
let two: TestServer;
beforeAll(async () => {
  // Leases that last a minute: the tokens an instance holds stay unspent
  // for the whole test, however slow the machine.
  one = await startTestServer({}, undefined, { rateLeaseMs: 60_000 });
  two = await startTestServer({}, one.databaseUrl, { rateLeaseMs: 60_000 });
});

const operator = () => clientFor(TenantService, one.url, ADMIN_KEY);

/** A tenant with this rate limit, and a key of it. */
async function limitedTenant(requestsPerSecond: number, burst: number) {
  const t = await newTenant(one.url);
  await operator().setTenantRateLimit({
    tenantId: t.tenantId,
    rateLimit: { requestsPerSecond, burst },
  });
  return t;
}

/**
 * The first refusal of `call`, tried up to three times: with a limit of one
 * per second, a call is admitted again only if a second went by.
 */
async function refused(call: () => Promise<unknown>): Promise<ConnectError> {
  for (let i = 0; ; i++) {
    try {
      await call();
    } catch (err) {
      const ce = ConnectError.from(err);
      expect(ce.findDetails(ErrorInfoSchema)[0]?.reason).toBe("RATE_LIMITED");
      expect(ce.code).toBe(Code.ResourceExhausted);
      return ce;
    }
    if (i === 2) throw new Error("never refused");
  }
}

type Tally = { admitted: number; limited: number; other: string[] };

/** Calls GetCaller `n` times at once, alternating between the two instances. */
async function flood(key: string, n: number): Promise<Tally> {
  const clients = [one, two].map((s) => clientFor(KeyService, s.url, key));
  const tally: Tally = { admitted: 0, limited: 0, other: [] };
  await Promise.all(
    Array.from({ length: n }, async (_, i) => {
      try {
        await (clients[i % 2] as (typeof clients)[0]).getCaller({});
        tally.admitted++;
      } catch (err) {
        const ce = ConnectError.from(err);
        const reason = ce.findDetails(ErrorInfoSchema)[0]?.reason;
        if (ce.code === Code.ResourceExhausted && reason === "RATE_LIMITED") tally.limited++;
        else tally.other.push(`${Code[ce.code]} ${reason}`);
      }
    }),
  );
  return tally;
}

/** Calls GetCaller `n` times at once on one instance. */
async function floodOne(server: TestServer, key: string, n: number): Promise<Tally> {
  const c = clientFor(KeyService, server.url, key);
  const tally: Tally = { admitted: 0, limited: 0, other: [] };
  await Promise.all(
    Array.from({ length: n }, async () => {
      try {
        await c.getCaller({});
        tally.admitted++;
      } catch (err) {
        const ce = ConnectError.from(err);
        const reason = ce.findDetails(ErrorInfoSchema)[0]?.reason;
        if (ce.code === Code.ResourceExhausted && reason === "RATE_LIMITED") tally.limited++;
        else tally.other.push(`${Code[ce.code]} ${reason}`);
      }
    }),
  );
  return tally;
}

describe("the shared budget of two instances", () => {
  it("admits a whole burst sent to both at once, and no more than one burst plus the rate plus a lease", async () => {
    // 1 request per second: whatever the machine's speed, the refill over
    // the test's few seconds is small next to the calls over the burst. A
    // burst of 160 makes each instance lease 10 tokens at a time.
    const t = await limitedTenant(1, 160);
    const lease = 10;
    const started = Date.now();
    // Under the limit: the burst, split over the instances, all admitted.
    const first = await flood(t.key, 160);
    expect(first).toEqual({ admitted: 160, limited: 0, other: [] });
    // Over it: a bucket per instance would admit up to twice the burst.
    const second = await flood(t.key, 320);
    const elapsedSeconds = (Date.now() - started) / 1000;
    expect(second.other).toEqual([]);
    expect(second.admitted + second.limited).toBe(320);
    // Limit plus one burst: 160 at once plus 1 per second since the start,
    // plus what the other instance may still hold of its lease (docs/limits.md).
    expect(first.admitted + second.admitted).toBeLessThanOrEqual(
      160 + Math.ceil(elapsedSeconds) + lease - 1,
    );
    expect(second.limited).toBeGreaterThan(0);
  });

  it("never refuses a caller within its limit, though the other instance holds leased tokens", async () => {
    // Leases of 20: the one call on the first instance leaves it holding 19.
    const t = await limitedTenant(1, 320);
    expect(await floodOne(one, t.key, 1)).toEqual({ admitted: 1, limited: 0, other: [] });
    // The rest of the burst, all on the second: the shared bucket holds only
    // 300 of them; the 19 the first instance holds unspent are lent.
    expect(await floodOne(two, t.key, 319)).toEqual({ admitted: 319, limited: 0, other: [] });
    // Past the burst, calls are refused again: 40 calls need 40 s of refill.
    const past = await floodOne(two, t.key, 40);
    expect(past.limited).toBeGreaterThan(0);
  });

  it("holds a tenant with many keys to one burst plus the rate plus two leases per instance", async () => {
    // A burst of 320 makes leases of 20. Sixteen keys, each with a call for
    // every token of one lease, on one instance or the other: were each
    // key's lease held apart from the others, the instances would end up
    // holding (and lending against) 16 * 19 tokens, spent long since.
    const t = await limitedTenant(1, 320);
    const lease = 20;
    const started = Date.now();
    const keys = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const { secret } = await insertKey(one.pool, t.tenantId, ["bookings.read"], "agent");
        return secret;
      }),
    );
    const users = keys.slice(0, 16);
    const first = await Promise.all(
      users.map((key, i) => floodOne(i % 2 === 0 ? one : two, key, lease)),
    );
    // Within the burst: all admitted.
    expect(first.reduce((n, f) => n + f.admitted, 0)).toBe(320);
    // Then four more keys hammer both instances with twice the burst again.
    const second = await Promise.all(keys.slice(16).map((key) => flood(key, 160)));
    const elapsedSeconds = (Date.now() - started) / 1000;
    const admitted = 320 + second.reduce((n, f) => n + f.admitted, 0);
    for (const f of second) expect(f.other).toEqual([]);
    // docs/limits.md: a tenant admits at most b + r * T + 2 * N * L, N = 2
    // instances, L = 20 (a sixteenth of the tenant's burst), however many keys.
    expect(admitted).toBeLessThanOrEqual(320 + Math.ceil(elapsedSeconds) + 2 * 2 * lease);
    expect(second.reduce((n, f) => n + f.limited, 0)).toBeGreaterThan(0);
  });

  it("takes tokens in leases: calls spend them without asking Postgres", async () => {
    // The test servers' defaults: 100000 a second, burst 100000, so leases of 1000.
    const t = await newTenant(one.url);
    const keys = clientFor(KeyService, one.url, t.key);
    const { apiKeyId } = await keys.getCaller({});
    const { rows } = await one.pool.query("SELECT tokens FROM rate_leases WHERE bucket = $1", [
      `k/${apiKeyId}`,
    ]);
    // The 999 tokens beyond the first call are counted as held by the instance.
    expect(rows.map((r) => r.tokens)).toEqual([999]);
    // Were each call checked in Postgres, a limit of one call would refuse
    // the next; the instance spends what it holds (for at most a lease's
    // lifetime: a minute in these tests, a second by default).
    await operator().setTenantRateLimit({
      tenantId: t.tenantId,
      rateLimit: { requestsPerSecond: 1, burst: 1 },
    });
    for (let i = 0; i < 49; i++) await keys.getCaller({});
  });

  it("limits each key of a tenant by its own limit, and never by another tenant's traffic", async () => {
    const busy = await limitedTenant(1, 5);
    const quiet = await limitedTenant(1, 10);
    const [noisy, calm] = await Promise.all([flood(busy.key, 30), flood(quiet.key, 10)]);
    expect(noisy.limited).toBeGreaterThan(0);
    expect(calm).toEqual({ admitted: 10, limited: 0, other: [] });

    // A key with its own lower limit is held to it; the tenant's other keys are not.
    const roomy = await limitedTenant(100, 100);
    const created = await clientFor(KeyService, one.url, roomy.key).createApiKey({
      scopes: ["bookings.read"],
      description: "slow agent",
      rateLimit: { requestsPerSecond: 1, burst: 2 },
    });
    expect(created.key?.rateLimit).toMatchObject({ requestsPerSecond: 1, burst: 2 });
    const [slow, others] = await Promise.all([flood(created.apiKey, 6), flood(roomy.key, 10)]);
    expect(slow.limited).toBeGreaterThan(0);
    expect(slow.admitted).toBeGreaterThanOrEqual(2);
    expect(others).toEqual({ admitted: 10, limited: 0, other: [] });
  });
});

describe("a refusal", () => {
  it("is RESOURCE_EXHAUSTED, RATE_LIMITED, with RetryInfo and the RateLimit fields, in every protocol", async () => {
    const t = await limitedTenant(1, 1);
    const keys = clientFor(KeyService, one.url, t.key, "connect");
    let header: Headers | undefined;
    await keys.getCaller(
      {},
      {
        onHeader: (h) => {
          header = h;
        },
      },
    );
    expect(header?.get("ratelimit-policy")).toBe('"tenant";q=1;w=1, "key";q=1;w=1');
    expect(header?.get("ratelimit")).toMatch(/^"tenant";r=0;t=1, "key";r=0;t=1$/);

    const err = await refused(() => keys.getCaller({}));
    const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
    expect(delay).toBeDefined();
    const ms = Number(delay?.seconds) * 1000 + (delay?.nanos ?? 0) / 1e6;
    expect(ms).toBeGreaterThan(0);
    expect(ms).toBeLessThanOrEqual(1000);
    expect(err.metadata.get("ratelimit-policy")).toBe('"tenant";q=1;w=1, "key";q=1;w=1');
    expect(err.metadata.get("ratelimit")).toMatch(/"key";r=0;t=1$/);

    // Connect JSON, as curl sees it: 429 with Retry-After.
    let reply = await postJson(one.url, "holdfast.v1.KeyService/GetCaller", {}, t.key);
    // Admitted only if a second went by since the last admitted call.
    if (reply.status === 200)
      reply = await postJson(one.url, "holdfast.v1.KeyService/GetCaller", {}, t.key);
    expect(reply.status).toBe(429);
    expect(jsonReason(reply)).toBe("RATE_LIMITED");
    expect(reply.headers.get("retry-after")).toBe("1");
    expect(reply.headers.get("ratelimit")).toMatch(/^"tenant";r=0;t=1, "key";r=0;t=1$/);

    // gRPC, as a grpc-js backend sees it: the fields in the error's metadata.
    const g = grpcJsClient(two.url, "holdfast/v1/key.proto", "KeyService", t.key);
    try {
      const call = () =>
        g.call("getCaller", {}).then(
          () => undefined,
          (e: grpc.ServiceError) => e,
        );
      const gErr = (await call()) ?? (await call());
      expect(gErr?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      expect(grpcJsReason(gErr as grpc.ServiceError)).toBe("RATE_LIMITED");
      expect(gErr?.metadata.get("ratelimit-policy")).toEqual(['"tenant";q=1;w=1, "key";q=1;w=1']);
    } finally {
      g.close();
    }
  });

  it("is not stored under the Idempotency-Key: the same call later goes through", async () => {
    const t = await limitedTenant(1, 1);
    const resources = clientFor(ResourceService, one.url, t.key, "connect");
    const headers = { "idempotency-key": "rate-limited-once" };
    await flood(t.key, 4);
    await rejected(
      resources.createResource({ name: "A", timeZone: "UTC", capacity: 1 }, { headers }),
      Code.ResourceExhausted,
      "RATE_LIMITED",
    );
    // The typed client waits as told and retries with the same key.
    const hf = createHoldfastClient({ baseUrl: two.url, apiKey: t.key, protocol: "connect" });
    let replayed: string | null = "unset";
    const { resource } = await hf.resources.createResource(
      { name: "A", timeZone: "UTC", capacity: 1 },
      {
        headers,
        onHeader: (h) => {
          replayed = h.get("idempotent-replayed");
        },
      },
    );
    expect(resource?.name).toBe("A");
    expect(replayed).toBeNull();
    const { rows } = await one.pool.query(
      "SELECT count(*)::int AS n FROM resources WHERE tenant_id = $1",
      [t.tenantId],
    );
    expect(rows[0].n).toBe(1);
  });
});

describe("the typed client", () => {
  it("waits as RetryInfo says and retries with the same Idempotency-Key", async () => {
    const t = await limitedTenant(2, 1);
    const hf = createHoldfastClient({ baseUrl: one.url, apiKey: t.key, maxAttempts: 10 });
    // Each call after the first is refused once, then admitted after the wait.
    const names = ["A", "B", "C"];
    for (const name of names) {
      await hf.resources.createResource({ name, timeZone: "UTC", capacity: 1 });
    }
    const { rows } = await one.pool.query(
      "SELECT name FROM resources WHERE tenant_id = $1 ORDER BY name",
      [t.tenantId],
    );
    expect(rows.map((r) => r.name)).toEqual(names);
  });

  it("passes the refusal on when its attempts run out", async () => {
    const t = await limitedTenant(1, 1);
    const hf = createHoldfastClient({ baseUrl: one.url, apiKey: t.key, maxAttempts: 1 });
    await hf.keys.getCaller({});
    await refused(() => hf.keys.getCaller({}));
  });
});

describe("the MCP tools", () => {
  it("wait as RetryInfo says and call again, instead of failing", async () => {
    const c = await clinic(one.url);
    const { tenantId } = await clientFor(KeyService, one.url, c.key).getCaller({});
    // Two calls a second, one at a time: every call after the first waits.
    await operator().setTenantRateLimit({
      tenantId,
      rateLimit: { requestsPerSecond: 2, burst: 1 },
    });
    const agent = await mcpOverHttp(two.url, c.key);
    for (let i = 0; i < 3; i++) {
      const listed = await callTool(agent, "list_services", {});
      expect(listed.isError, listed.text).toBe(false);
      expect(listed.data.services[0].service_id).toBe(c.serviceId);
    }
  });
});

describe("the event stream", () => {
  it("is limited like a call when it opens, with the RateLimit fields on every answer", async () => {
    const t = await limitedTenant(1, 1);
    const open = async () => {
      const abort = new AbortController();
      const res = await fetch(`${one.url}/v1/events/stream`, {
        headers: { authorization: `Bearer ${t.key}` },
        signal: abort.signal,
      });
      const body =
        res.status === 200 ? undefined : ((await res.json()) as { code: string; message: string });
      abort.abort();
      return { res, body };
    };
    const first = await open();
    expect(first.res.status).toBe(200);
    expect(first.res.headers.get("ratelimit-policy")).toBe('"tenant";q=1;w=1, "key";q=1;w=1');
    expect(first.res.headers.get("ratelimit")).toMatch(/^"tenant";r=0;t=1, "key";r=0;t=1$/);
    // Admitted again only if a second went by since the last admitted call.
    let next = await open();
    if (next.res.status === 200) next = await open();
    expect(next.res.status).toBe(429);
    expect(next.body?.code).toBe("resource_exhausted");
    expect(next.body?.message).toMatch(/rate limit/);
    expect(next.res.headers.get("retry-after")).toBe("1");
    expect(next.res.headers.get("ratelimit")).toMatch(/"key";r=0;t=1$/);
  });
});

describe("a calendar feed", () => {
  it("is limited as a key is, within its tenant's limit, with the RateLimit fields on every answer", async () => {
    // A burst of 2 leases one token at a time, so no lease holds tokens the
    // buckets would count as credit.
    const t = await limitedTenant(2, 2);
    const { resource } = await clientFor(ResourceService, one.url, t.key).createResource({
      name: "Room",
      timeZone: "UTC",
    });
    const { urlPath } = await clientFor(CalendarFeedService, one.url, t.key).createCalendarFeed({
      resourceId: resource?.id as string,
    });
    // The buckets full again.
    await new Promise((r) => setTimeout(r, 1100));
    // Fetched from both instances in turn until one is refused.
    const answers: { res: Response; body: string }[] = [];
    const started = performance.now();
    for (let i = 0; i < 40 && !answers.some((a) => a.res.status === 429); i++) {
      const res = await fetch(`${[one, two][i % 2]?.url}${urlPath}`);
      answers.push({ res, body: await res.text() });
    }
    const seconds = (performance.now() - started) / 1000;
    const statuses = answers.map((a) => a.res.status);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
    const admitted = answers.filter((a) => a.res.status === 200);
    const refusedFeeds = answers.filter((a) => a.res.status === 429);
    expect(refusedFeeds).toHaveLength(1);
    // The burst, the refill meanwhile, and a token of credit per instance
    // for the leases it may still hold (docs/limits.md): counts, not time.
    expect(admitted.length).toBeGreaterThanOrEqual(1);
    expect(admitted.length).toBeLessThanOrEqual(2 + 2 * Math.ceil(seconds) + 2);
    for (const a of admitted) {
      expect(a.body).toMatch(/^BEGIN:VCALENDAR/);
      expect(a.res.headers.get("ratelimit-policy")).toBe('"tenant";q=2;w=1, "key";q=2;w=1');
    }
    const refusal = refusedFeeds[0];
    // The RPCs' JSON error, RATE_LIMITED, as test/e2e/calendar-feed.test.ts checks in full.
    expect(refusal?.res.headers.get("content-type")).toBe("application/json");
    expect(JSON.parse(refusal?.body ?? "")).toMatchObject({
      code: "resource_exhausted",
      message: expect.stringMatching(
        /^over the (calendar feed|tenant)'s rate limit: retry in \d+ ms$/,
      ),
      details: [
        { type: "google.rpc.ErrorInfo", debug: { reason: "RATE_LIMITED" } },
        { type: "google.rpc.RetryInfo" },
      ],
    });
    expect(refusal?.res.headers.get("retry-after")).toBe("1");
    expect(refusal?.res.headers.get("ratelimit")).toMatch(/"tenant";r=0;t=\d+/);
    // An unknown feed is a bare 404, never limited.
    const unknown = await fetch(`${one.url}/v1/feeds/hfcal_${"A".repeat(43)}.ics`);
    expect(unknown.status).toBe(404);
    expect(unknown.headers.get("ratelimit")).toBeNull();
  });
});

describe("what is not limited", () => {
  it("health checks, /healthz, /readyz and /metrics carry no RateLimit fields and are never refused", async () => {
    const health = clientFor(Health, one.url, undefined, "connect");
    for (let i = 0; i < 5; i++) {
      let header: Headers | undefined;
      await health.check(
        { service: "" },
        {
          onHeader: (h) => {
            header = h;
          },
        },
      );
      expect(header?.get("ratelimit")).toBeNull();
    }
    // Even with the key of a tenant allowed one call a second.
    const t = await limitedTenant(1, 1);
    for (const path of ["/healthz", "/readyz", "/metrics"]) {
      for (let i = 0; i < 3; i++) {
        const res = await fetch(`${one.url}${path}`, {
          headers: { authorization: `Bearer ${t.key}` },
        });
        await res.arrayBuffer();
        expect(res.status, path).toBe(200);
        expect(res.headers.get("ratelimit"), path).toBeNull();
      }
    }
  });
});

describe("setting limits", () => {
  it("lets the operator set and reset a tenant's limit", async () => {
    const t = await newTenant(one.url);
    const set = await operator().setTenantRateLimit({
      tenantId: t.tenantId,
      rateLimit: { requestsPerSecond: 7, burst: 9 },
    });
    expect(set).toMatchObject({ rateLimit: { requestsPerSecond: 7, burst: 9 }, isDefault: false });
    let header: Headers | undefined;
    await clientFor(KeyService, two.url, t.key).getCaller(
      {},
      {
        onHeader: (h) => {
          header = h;
        },
      },
    );
    expect(header?.get("ratelimit-policy")).toMatch(/^"tenant";q=9;w=2, "key";q=9;w=2$/);
    const reset = await operator().setTenantRateLimit({ tenantId: t.tenantId });
    expect(reset).toMatchObject({ rateLimit: { requestsPerSecond: 100000 }, isDefault: true });
  });

  it("refuses zero, negative, absurd and fractional limits, naming the fields", async () => {
    const t = await newTenant(one.url);
    for (const rateLimit of [
      { requestsPerSecond: 0, burst: 1 },
      { requestsPerSecond: -5, burst: 1 },
      { requestsPerSecond: 1, burst: 2_000_000_000 },
    ]) {
      const err = await rejected(
        operator().setTenantRateLimit({ tenantId: t.tenantId, rateLimit }),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      expect(fieldViolations(err)).toHaveLength(1);
      expect(fieldViolations(err)[0]).toMatch(/^rate_limit\.(requests_per_second|burst)$/);
    }
    const fractional = await postJson(
      one.url,
      "holdfast.v1.TenantService/SetTenantRateLimit",
      { tenantId: t.tenantId, rateLimit: { requestsPerSecond: 1.5, burst: 2 } },
      ADMIN_KEY,
    );
    expect(fractional.status).toBe(400);
    expect(jsonReason(fractional)).toBe("MALFORMED_REQUEST");

    await rejected(
      operator().setTenantRateLimit({ tenantId: "ten_nope", rateLimit: undefined }),
      Code.NotFound,
      "TENANT_NOT_FOUND",
    );
    // Only the operator sets tenants' limits.
    await rejected(
      clientFor(TenantService, one.url, t.key).setTenantRateLimit({ tenantId: t.tenantId }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
  });

  it("caps a created key's limit by its creator's: a slow key cannot mint a fast one", async () => {
    const t = await limitedTenant(100, 100);
    const first = clientFor(KeyService, one.url, t.key);
    // The tenant's first key has no limit of its own: it grants up to the tenant's.
    const roomy = await first.createApiKey({
      scopes: ["bookings.read"],
      description: "",
      rateLimit: { requestsPerSecond: 100, burst: 100 },
    });
    expect(roomy.key?.rateLimit).toMatchObject({ requestsPerSecond: 100, burst: 100 });
    const slow = await first.createApiKey({
      scopes: ["keys.manage", "bookings.read"],
      description: "slow agent",
      rateLimit: { requestsPerSecond: 1, burst: 5 },
    });
    const keys = clientFor(KeyService, two.url, slow.apiKey);
    const err = await rejected(
      keys.createApiKey({
        scopes: ["bookings.read"],
        description: "",
        rateLimit: { requestsPerSecond: 100, burst: 5 },
      }),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    expect(fieldViolations(err)).toEqual(["rate_limit.requests_per_second"]);
    // A key it creates without a limit gets its own, and is held to it.
    const minted = await keys.createApiKey({ scopes: ["bookings.read"], description: "" });
    expect(minted.key?.rateLimit).toMatchObject({ requestsPerSecond: 1, burst: 5 });
    const flooded = await flood(minted.apiKey, 20);
    expect(flooded.other).toEqual([]);
    expect(flooded.limited).toBeGreaterThan(0);
    // Up to its own limit, it may grant.
    const same = await keys.createApiKey({
      scopes: ["bookings.read"],
      description: "",
      rateLimit: { requestsPerSecond: 1, burst: 2 },
    });
    expect(same.key?.rateLimit).toMatchObject({ requestsPerSecond: 1, burst: 2 });
  });

  it("refuses a key limit above its tenant's", async () => {
    const t = await limitedTenant(10, 20);
    const keys = clientFor(KeyService, one.url, t.key);
    const err = await rejected(
      keys.createApiKey({
        scopes: ["bookings.read"],
        description: "",
        rateLimit: { requestsPerSecond: 11, burst: 21 },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual([
      "rate_limit.burst",
      "rate_limit.requests_per_second",
    ]);
    const ok = await keys.createApiKey({
      scopes: ["bookings.read"],
      description: "",
      rateLimit: { requestsPerSecond: 10, burst: 20 },
    });
    expect(ok.key?.rateLimit).toMatchObject({ requestsPerSecond: 10, burst: 20 });
    const listed = await keys.listApiKeys({});
    expect(listed.keys.find((k) => k.id === ok.key?.id)?.rateLimit?.burst).toBe(20);
  });
});

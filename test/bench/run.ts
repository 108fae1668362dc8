/**
 * `npm run bench [-- --json FILE]`: Holdfast's speed, measured. Not part of
 * `npm test`. Starts Postgres (embedded, fsync on; or a fresh database on
 * the server in DATABASE_URL), runs the server as its own process, and
 * drives it over loopback from this one. Prints a table; --json also
 * writes the figures to FILE; --only holds,race,... runs just those sections
 * (holds, one-resource, idempotency, quota, race, slots, events, floor); --quick
 * runs a fifth of the calls.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { DescService } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { OverrideKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

const ADMIN_KEY = `hf_bench_${randomBytes(12).toString("hex")}`;
const MINUTE = 60_000;

type Row = {
  scenario: string;
  protocol: string;
  concurrency: number;
  calls: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
};

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/** Runs `call(i)` for i = 0..total-1 with `concurrency` in flight; latencies in ms. */
async function drive(total: number, concurrency: number, call: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        const i = next++;
        const t0 = performance.now();
        try {
          await call(i);
        } catch {
          failures++;
        }
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return { latencies, seconds, failures };
}

function row(
  scenario: string,
  protocol: string,
  concurrency: number,
  r: Awaited<ReturnType<typeof drive>>,
): Row {
  if (r.failures > 0)
    throw new Error(`${scenario} ${protocol} c=${concurrency}: ${r.failures} calls failed`);
  return {
    scenario,
    protocol,
    concurrency,
    calls: r.latencies.length,
    perSecond: Math.round(r.latencies.length / r.seconds),
    p50: round(percentile(r.latencies, 50)),
    p95: round(percentile(r.latencies, 95)),
    p99: round(percentile(r.latencies, 99)),
  };
}

const round = (n: number) => Math.round(n * 100) / 100;

function bearer(key: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${key}`);
    return next(req);
  };
}

/** A client of `service` as the given API key, over gRPC or Connect JSON on HTTP/1.1. */
function clientOf<S extends DescService>(
  service: S,
  url: string,
  key: string,
  protocol: "grpc" | "connect-json",
): Client<S> {
  const interceptors = [bearer(key)];
  const transport =
    protocol === "grpc"
      ? createGrpcTransport({ baseUrl: url, interceptors })
      : createConnectTransport({
          baseUrl: url,
          httpVersion: "1.1",
          useBinaryFormat: false,
          interceptors,
        });
  return createClient(service, transport);
}

const bookingClient = (url: string, key: string, protocol: "grpc" | "connect-json") =>
  clientOf(BookingService, url, key, protocol);

/** A fresh tenant for one scenario, and a gRPC transport carrying its key. */
async function benchTenant(url: string) {
  const operator = createClient(
    TenantService,
    createGrpcTransport({ baseUrl: url, interceptors: [bearer(ADMIN_KEY)] }),
  );
  const { apiKey, tenant } = await operator.createTenant({
    name: `bench-${randomBytes(4).toString("hex")}`,
  });
  return {
    apiKey,
    tenantId: tenant?.id as string,
    operator,
    transport: createGrpcTransport({ baseUrl: url, interceptors: [bearer(apiKey)] }),
  };
}

/** A tenant with `resources` resources (UTC, always open) and a 30-minute service over them. */
async function world(url: string, resources: number) {
  const { apiKey, transport, tenantId, operator } = await benchTenant(url);
  const rc = createClient(ResourceService, transport);
  const ids: string[] = [];
  for (let i = 0; i < resources; i++) {
    ids.push((await rc.createResource({ name: `R${i}`, timeZone: "UTC" })).resource?.id as string);
  }
  const svc = await createClient(CatalogService, transport).createService({
    name: "Bench",
    resourceIds: ids,
    policy: { durations: [{ seconds: 1800n, nanos: 0 }], maxHoldTtl: { seconds: 1800n, nanos: 0 } },
  });
  return {
    key: apiKey,
    tenantId,
    operator,
    serviceId: svc.service?.id as string,
    resourceIds: ids,
  };
}

/** Slot i of a world: spread round-robin over its resources, each slot used once. */
function slot(w: Awaited<ReturnType<typeof world>>, i: number, dayOffset: number) {
  const resourceId = w.resourceIds[i % w.resourceIds.length] as string;
  const n = Math.floor(i / w.resourceIds.length);
  const start = Date.UTC(2031, 0, 1) + dayOffset * 86_400_000 * 400 + n * 30 * MINUTE;
  return {
    serviceId: w.serviceId,
    resourceId,
    startTime: timestampFromMs(start),
    endTime: timestampFromMs(start + 30 * MINUTE),
  };
}

/**
 * A service over `resources` resources working Monday to Saturday, 07:00 to
 * 21:00 Berlin time, 30-minute bookings on a 15-minute grid, and 10
 * overrides per resource blocking one afternoon in three.
 */
async function availabilityWorld(url: string, resources: number, start: number) {
  const { apiKey, transport } = await benchTenant(url);
  const rc = createClient(ResourceService, transport);
  const ids: string[] = [];
  for (let i = 0; i < resources; i++) {
    const id = (
      await rc.createResource({
        name: `R${i}`,
        timeZone: "Europe/Berlin",
        weeklySchedule: {
          windows: [1, 2, 3, 4, 5, 6].map((weekday) => ({
            weekday,
            startTime: "07:00",
            endTime: "21:00",
          })),
        },
      })
    ).resource?.id as string;
    for (let o = 0; o < 10; o++) {
      const day = new Date(start + o * 3 * 86_400_000).toISOString().slice(0, 10);
      await rc.createOverride({
        resourceId: id,
        kind: OverrideKind.BLOCK,
        title: "off",
        startDate: day,
        startTime: "13:00",
        endTime: "17:00",
      });
    }
    ids.push(id);
  }
  const svc = await createClient(CatalogService, transport).createService({
    name: "Bench slots",
    resourceIds: ids,
    policy: {
      durations: [{ seconds: 1800n, nanos: 0 }],
      slotInterval: { seconds: 900n, nanos: 0 },
    },
  });
  return { key: apiKey, serviceId: svc.service?.id as string, resourceIds: ids };
}

/** Books up to `count` confirmed half-hours spread over `days` days; returns how many were made. */
async function fill(
  url: string,
  w: Awaited<ReturnType<typeof availabilityWorld>>,
  start: number,
  days: number,
  count: number,
) {
  const c = bookingClient(url, w.key, "grpc");
  let made = 0;
  for (let i = 0; made < count && i < count * 4; i++) {
    const at = start + ((i * 7919) % (days * 48)) * 30 * MINUTE;
    const resourceId = w.resourceIds[i % w.resourceIds.length] as string;
    await c
      .createBooking({
        serviceId: w.serviceId,
        resourceId,
        startTime: timestampFromMs(at),
        endTime: timestampFromMs(at + 30 * MINUTE),
      })
      .then(
        () => made++,
        () => {},
      );
  }
  return made;
}

async function main() {
  const jsonFile = process.argv.includes("--json")
    ? process.argv[process.argv.indexOf("--json") + 1]
    : undefined;
  const quick = process.argv.includes("--quick");
  const scale = quick ? 0.2 : 1;
  const only = process.argv.includes("--only")
    ? (process.argv[process.argv.indexOf("--only") + 1] ?? "").split(",")
    : undefined;
  const runs = (section: string) => !only || only.includes(section);

  // Postgres: a fresh database, fsync on.
  let adminUrl = process.env.DATABASE_URL;
  let stopPostgres = async () => {};
  let dataDir: string | undefined;
  if (!adminUrl) {
    dataDir = await mkdtemp(join(tmpdir(), "holdfast-bench-"));
    const embedded = await startEmbeddedPostgres({
      dataDir: join(dataDir, "pg"),
      persistent: false,
      fsync: true,
    });
    adminUrl = embedded.adminUrl;
    stopPostgres = embedded.stop;
  }
  const dbName = `holdfast_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const fsync = (await admin.query("SHOW fsync")).rows[0].fsync;
  const syncCommit = (await admin.query("SHOW synchronous_commit")).rows[0].synchronous_commit;

  // The server, as its own process (a second one, with metrics off, for their overhead).
  const servers: ChildProcess[] = [];
  const startServer = async (env: Record<string, string> = {}) => {
    const child = spawn(
      process.execPath,
      [...(process.env.BENCH_SERVER_FLAGS?.split(" ") ?? []), "--import", "tsx", "src/main.ts"],
      {
        env: {
          ...process.env,
          DATABASE_URL: dbUrl.toString(),
          PORT: "0",
          HOLDFAST_ADMIN_KEY: ADMIN_KEY,
          HOLDFAST_LOG_LEVEL: "warn",
          // The bench's webhook receiver listens on loopback.
          HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
          // Every call still passes the rate limit check (and pays for it),
          // but the bench drives one key far faster than the defaults allow.
          HOLDFAST_TENANT_RATE_PER_SECOND: "1000000",
          HOLDFAST_TENANT_RATE_BURST: "1000000",
          HOLDFAST_KEY_RATE_PER_SECOND: "1000000",
          HOLDFAST_KEY_RATE_BURST: "1000000",
          ...env,
        },
        stdio: ["ignore", "pipe", "inherit"],
      },
    );
    servers.push(child);
    return new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) resolve(m[1] as string);
      });
      child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
  };
  const url = await startServer();

  const rows: Row[] = [];
  const extra: Record<string, unknown> = { postgres: { fsync, synchronous_commit: syncCommit } };
  try {
    // Warm-up: JIT, connections, plan caches.
    {
      const w = await world(url, 16);
      const c = bookingClient(url, w.key, "grpc");
      await drive(Math.round(1000 * scale), 16, (i) => c.createHold(slot(w, i, 0)));
    }

    // CreateHold on distinct slots spread over 64 resources.
    for (const protocol of runs("holds") ? (["grpc", "connect-json"] as const) : []) {
      for (const concurrency of [1, 16, 64]) {
        const w = await world(url, 64);
        const c = bookingClient(url, w.key, protocol);
        const total = Math.round((concurrency === 1 ? 1000 : 6000) * scale);
        rows.push(
          row(
            "CreateHold, 64 resources",
            protocol,
            concurrency,
            await drive(total, concurrency, (i) => c.createHold(slot(w, i, 1))),
          ),
        );
      }
    }

    // CreateHold on distinct slots of one busy resource: every write takes the same lock.
    for (const protocol of runs("one-resource") ? (["grpc", "connect-json"] as const) : []) {
      const w = await world(url, 1);
      const c = bookingClient(url, w.key, protocol);
      rows.push(
        row(
          "CreateHold, one resource",
          protocol,
          16,
          await drive(Math.round(4000 * scale), 16, (i) => c.createHold(slot(w, i, 2))),
        ),
      );
    }

    // With an Idempotency-Key on every call, as the typed client sends.
    if (runs("idempotency")) {
      const w = await world(url, 64);
      const c = bookingClient(url, w.key, "grpc");
      const keyed = (i: number) =>
        c.createHold(slot(w, i, 3), { headers: { "idempotency-key": `k-${i}` } });
      rows.push(
        row(
          "CreateHold + Idempotency-Key, 64 resources",
          "grpc",
          16,
          await drive(Math.round(6000 * scale), 16, keyed),
        ),
      );
    }

    // What quotas cost: CreateHold on 64 resources at 16 clients for a
    // tenant with booking quotas set (each hold then counts the tenant's
    // active holds and the month's bookings under the tenant's quota lock)
    // and for one without, alternating so that the machine's drift falls
    // on both alike.
    if (runs("quota")) {
      const sums = { none: { calls: 0, seconds: 0 }, quota: { calls: 0, seconds: 0 } };
      for (let pass = 0; pass < 3; pass++) {
        for (const variant of ["none", "quota"] as const) {
          const w = await world(url, 64);
          if (variant === "quota") {
            await w.operator.setTenantQuotas({
              tenantId: w.tenantId,
              quotas: { activeHolds: 1_000_000, bookingsPerMonth: 1_000_000 },
            });
          }
          const c = bookingClient(url, w.key, "grpc");
          const r = await drive(Math.round(3000 * scale), 16, (i) =>
            c.createHold(slot(w, i, 5 + pass)),
          );
          rows.push(
            row(
              `CreateHold, 64 resources, ${variant === "quota" ? "quotas set" : "no quota"} (round ${pass + 1})`,
              "grpc",
              16,
              r,
            ),
          );
          sums[variant].calls += r.latencies.length;
          sums[variant].seconds += r.seconds;
        }
      }
      const none = sums.none.calls / sums.none.seconds;
      const quota = sums.quota.calls / sums.quota.seconds;
      extra.quotaCost = {
        noQuotaPerSecond: Math.round(none),
        quotasSetPerSecond: Math.round(quota),
        lossPercent: round((1 - quota / none) * 100),
      };
    }

    // The 50-way race for one slot: time until all 50 have their answer.
    const races: Record<string, number[]> = {};
    for (const protocol of runs("race") ? (["grpc", "connect-json"] as const) : []) {
      const w = await world(url, 1);
      const clients = Array.from({ length: 10 }, () => bookingClient(url, w.key, protocol));
      await Promise.all(
        clients.map((c) => c.getBooking({ bookingId: "bkg_warm" }).catch(() => {})),
      );
      races[protocol] = [];
      for (let r = 0; r < 20; r++) {
        const s = slot(w, r, 4);
        const t0 = performance.now();
        const results = await Promise.allSettled(
          Array.from({ length: 50 }, (_, i) =>
            (clients[i % 10] as Client<typeof BookingService>).createHold(s),
          ),
        );
        races[protocol].push(performance.now() - t0);
        const won = results.filter((x) => x.status === "fulfilled").length;
        if (won !== 1) throw new Error(`race ${r}: ${won} winners`);
      }
      races[protocol].sort((a, b) => a - b);
    }
    extra.race50 = Object.fromEntries(
      Object.entries(races).map(([p, t]) => [
        p,
        { p50: round(percentile(t, 50)), max: round(t[t.length - 1] as number), runs: t.length },
      ]),
    );

    // ListSlots: one resource over 30 days on a 15-minute grid, with 10
    // overrides and 500 bookings; and the first page (1000 slots) of a
    // service of 20 resources over 7 days.
    if (runs("slots")) {
      const start = Date.UTC(2032, 0, 5);
      const one = await availabilityWorld(url, 1, start);
      const made = await fill(url, one, start, 30, 500);
      if (made < 500) throw new Error(`only ${made} of 500 bookings could be made`);
      const twenty = await availabilityWorld(url, 20, start);
      await fill(url, twenty, start, 7, 200);
      for (const protocol of ["grpc", "connect-json"] as const) {
        const c1 = clientOf(AvailabilityService, url, one.key, protocol);
        const c20 = clientOf(AvailabilityService, url, twenty.key, protocol);
        const month = {
          serviceId: one.serviceId,
          startTime: timestampFromMs(start),
          endTime: timestampFromMs(start + 30 * 86_400_000),
        };
        const week = {
          serviceId: twenty.serviceId,
          startTime: timestampFromMs(start),
          endTime: timestampFromMs(start + 7 * 86_400_000),
        };
        const check = await c1.listSlots(month);
        extra[`slots30d_${protocol}`] = check.slots.length;
        await drive(Math.round(100 * scale), 4, () => c1.listSlots(month));
        rows.push(
          row(
            "ListSlots 1 resource x 30 days",
            protocol,
            1,
            await drive(Math.round(300 * scale), 1, () => c1.listSlots(month)),
          ),
        );
        rows.push(
          row(
            "ListSlots 1 resource x 30 days",
            protocol,
            16,
            await drive(Math.round(1000 * scale), 16, () => c1.listSlots(month)),
          ),
        );
        await drive(Math.round(50 * scale), 4, () => c20.listSlots(week));
        rows.push(
          row(
            "ListSlots 20 resources x 7 days, 1st page",
            protocol,
            1,
            await drive(Math.round(200 * scale), 1, () => c20.listSlots(week)),
          ),
        );
        rows.push(
          row(
            "ListSlots 20 resources x 7 days, 1st page",
            protocol,
            16,
            await drive(Math.round(600 * scale), 16, () => c20.listSlots(week)),
          ),
        );
      }
    }

    // Events: commit -> stream receipt and commit -> webhook receipt, under a
    // steady load of holds and confirms. Latency is receipt time minus the
    // event's occur_time (stamped in the writing transaction, just before
    // its commit); Postgres and this process share the machine's clock.
    if (runs("events")) {
      const w = await world(url, 64);
      const streamLatency: number[] = [];
      const hookLatency: number[] = [];
      const receiver = createHttpServer((req, res) => {
        let body = "";
        req.on("data", (c: Buffer) => {
          body += c.toString();
        });
        req.on("end", () => {
          hookLatency.push(Date.now() - Date.parse(JSON.parse(body).timestamp));
          res.writeHead(204).end();
        });
      });
      await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
      const hookUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}/hook`;
      const interceptors = [bearer(w.key)];
      await createClient(
        WebhookService,
        createGrpcTransport({ baseUrl: url, interceptors }),
      ).createWebhook({
        url: hookUrl,
        eventTypes: ["booking.held", "booking.confirmed"],
      });
      const events = createClient(
        EventService,
        createGrpcTransport({ baseUrl: url, interceptors }),
      );
      const abort = new AbortController();
      const streaming = (async () => {
        try {
          for await (const r of events.watchEvents({}, { signal: abort.signal })) {
            const at = r.event?.occurTime;
            if (at) streamLatency.push(Date.now() - (Number(at.seconds) * 1000 + at.nanos / 1e6));
          }
        } catch {}
      })();
      await new Promise((r) => setTimeout(r, 300));
      const c = bookingClient(url, w.key, "grpc");
      const pairs = Math.round(1000 * scale);
      const started = performance.now();
      // About 200 holds and 200 confirms a second, 8 callers.
      await drive(pairs, 8, async (i) => {
        const due = started + i * 5;
        const wait = due - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const { booking } = await c.createHold(slot(w, i, 6));
        await c.confirmBooking({ bookingId: booking?.id as string });
      });
      const deadline = Date.now() + 15_000;
      while (
        (streamLatency.length < 2 * pairs || hookLatency.length < 2 * pairs) &&
        Date.now() < deadline
      ) {
        await new Promise((r) => setTimeout(r, 50));
      }
      abort.abort();
      await streaming;
      receiver.close();
      const stats = (l: number[]) => {
        const s = [...l].sort((a, b) => a - b);
        return { received: s.length, p50: round(percentile(s, 50)), p99: round(percentile(s, 99)) };
      };
      extra.eventLatency = {
        expected: 2 * pairs,
        stream: stats(streamLatency),
        webhook: stats(hookLatency),
      };
    }

    // Metrics on versus off: the same CreateHold load on two servers over the
    // same database, one with HOLDFAST_METRICS=false, in alternating rounds so
    // that drift (caches, the table growing) falls on both alike.
    if (runs("metrics")) {
      const offUrl = await startServer({ HOLDFAST_METRICS: "false" });
      const totals = { on: { calls: 0, seconds: 0 }, off: { calls: 0, seconds: 0 } };
      const latencies = { on: [] as number[], off: [] as number[] };
      const load = async (which: "on" | "off") => {
        const at = which === "on" ? url : offUrl;
        const w = await world(at, 64);
        const c = bookingClient(at, w.key, "grpc");
        const r = await drive(Math.round(2000 * scale), 16, (i) => c.createHold(slot(w, i, 7)));
        if (r.failures > 0) throw new Error(`metrics ${which}: ${r.failures} calls failed`);
        totals[which].calls += r.latencies.length;
        totals[which].seconds += r.seconds;
        latencies[which].push(...r.latencies);
      };
      await load("off"); // warm-up of the second server, not counted
      totals.off = { calls: 0, seconds: 0 };
      latencies.off = [];
      for (let i = 0; i < 4; i++) {
        for (const which of i % 2 === 0 ? (["on", "off"] as const) : (["off", "on"] as const))
          await load(which);
      }
      for (const which of ["on", "off"] as const) {
        const l = latencies[which].sort((a, b) => a - b);
        rows.push(
          row(`CreateHold, metrics ${which}`, "grpc", 16, {
            latencies: l,
            seconds: totals[which].seconds,
            failures: 0,
          }),
        );
      }
      const perSecond = (t: { calls: number; seconds: number }) => t.calls / t.seconds;
      extra.metricsOverheadPercent = round(
        (1 - perSecond(totals.on) / perSecond(totals.off)) * 100,
      );
    }

    // The floor: the same hold transaction as raw SQL through pg, no server.
    if (runs("floor")) {
      const w = await world(url, 64);
      const pool = new pg.Pool({ connectionString: dbUrl.toString(), max: 24 });
      const { rows: ctx } = await pool.query(
        `SELECT s.tenant_id, s.revision AS srev, s.policy_version FROM services s WHERE s.id = $1`,
        [w.serviceId],
      );
      const { tenant_id: tenantId, srev, policy_version: version } = ctx[0];
      const revs = new Map(
        (
          await pool.query("SELECT id, revision FROM resources WHERE tenant_id = $1", [tenantId])
        ).rows.map((r) => [r.id, r.revision]),
      );
      const hold = (i: number) => {
        const s = slot(w, i, 5);
        return pool.query(
          `SELECT create_booking($1, $2, $3::text[], $4, $5::integer[], $6, $7, $8, '0 ms', '0 ms', '0 ms', NULL,
                                 '120 s', '{}', '{}', NULL, NULL, NULL)`,
          [
            tenantId,
            w.serviceId,
            [s.resourceId],
            srev,
            [revs.get(s.resourceId)],
            version,
            new Date(Number(s.startTime.seconds) * 1000),
            new Date(Number(s.endTime.seconds) * 1000),
          ],
        );
      };
      await drive(200, 16, hold);
      rows.push(
        row(
          "same hold as raw SQL (floor)",
          "pg",
          16,
          await drive(Math.round(6000 * scale), 16, (i) => hold(i + 200)),
        ),
      );
      await pool.end();
    }
  } finally {
    await Promise.all(
      servers.map((child) => {
        child.kill("SIGTERM");
        return new Promise((resolve) => child.once("exit", resolve));
      }),
    );
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end();
    await stopPostgres();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }

  const header = ["scenario", "protocol", "conc", "calls", "per s", "p50 ms", "p95 ms", "p99 ms"];
  const lines = rows.map((r) =>
    [r.scenario, r.protocol, r.concurrency, r.calls, r.perSecond, r.p50, r.p95, r.p99].map(String),
  );
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => (l[i] as string).length)),
  );
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) => (i < 2 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number)))
      .join("  ");
  console.log(
    `\nHoldfast benchmark (Postgres fsync=${fsync}, synchronous_commit=${syncCommit}; server and load on this machine)\n`,
  );
  console.log(fmt(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const l of lines) console.log(fmt(l));
  const race = extra.race50 as Record<string, { p50: number; max: number; runs: number }>;
  console.log("\n50-way race for one slot, time until all 50 answered (20 races each):");
  for (const [p, r] of Object.entries(race ?? {}))
    console.log(`  ${p.padEnd(12)} p50 ${r.p50} ms, max ${r.max} ms`);
  const ev = extra.eventLatency as
    | {
        expected: number;
        stream: { received: number; p50: number; p99: number };
        webhook: { received: number; p50: number; p99: number };
      }
    | undefined;
  if (ev) {
    console.log(
      `\nCommit to receipt under ~200 holds + 200 confirms a second (${ev.expected} events):`,
    );
    console.log(
      `  WatchEvents stream  p50 ${ev.stream.p50} ms, p99 ${ev.stream.p99} ms (${ev.stream.received} received)`,
    );
    console.log(
      `  webhook             p50 ${ev.webhook.p50} ms, p99 ${ev.webhook.p99} ms (${ev.webhook.received} received)`,
    );
  }
  const quotaCost = extra.quotaCost as
    | { noQuotaPerSecond: number; quotasSetPerSecond: number; lossPercent: number }
    | undefined;
  if (quotaCost)
    console.log(
      `\nCreateHold, 64 resources, 16 clients, gRPC: ${quotaCost.noQuotaPerSecond}/s without quotas, ${quotaCost.quotasSetPerSecond}/s with booking quotas set (${quotaCost.lossPercent}% lost)`,
    );
  if (extra.metricsOverheadPercent !== undefined)
    console.log(
      `\nMetrics overhead on CreateHold throughput (gRPC, 16 in flight): ${extra.metricsOverheadPercent}%`,
    );
  if (extra.slots30d_grpc !== undefined)
    console.log("\nListSlots results checked:", extra.slots30d_grpc, "slots in the 30-day month");
  if (jsonFile) {
    await writeFile(jsonFile, `${JSON.stringify({ rows, ...extra }, null, 2)}\n`);
    console.log(`\nfigures written to ${jsonFile}`);
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

/**
 * `npm run bench [-- --json FILE] [--only a,b] [--skip a,b] [--quick]`:
 * Holdfast's speed and cost per call, measured against floors run in the
 * same process tree on the same machine. Not part of `npm test`.
 *
 * Starts Postgres (embedded, fsync on; or a fresh database on the server in
 * DATABASE_URL, then Postgres CPU is only read when BENCH_POSTMASTER_PID
 * names its postmaster), runs the server as its own process, and drives it
 * over loopback from this one. For every scenario: calls/s, p50/p95/p99,
 * and CPU per call of the server process (all threads), of the Postgres
 * cluster (every process of it) and of this load generator, from /proc.
 *
 * Sections (--only / --skip): noop (the no-op connect-node floor), holds,
 * hot (one resource versus 64 spread), idempotency, quota, race, slots
 * (at one client alternating with the no-op floor answering the same
 * page), events, metrics, sql (the raw-SQL floors, alternating with CreateHold
 * through the server: target 2), scale (first: CreateHold and
 * ListSlots on a server whose database is empty and on one whose database
 * holds 1,000,000 bookings and 1,000,000 events, in alternating rounds), and
 * baseline,
 * which runs only with `--baseline DIR`: CreateHold at 16 clients against
 * this tree's server and DIR's (another checkout with its node_modules, e.g.
 * a worktree of an earlier commit), each on its own database, in
 * alternating rounds (target 6). --quick runs a fifth of the calls (the
 * data keeps its size). BENCH_SERVER_FLAGS are node flags for the Holdfast
 * server (e.g. --cpu-prof), BENCH_NOOP_FLAGS for the no-op server,
 * BENCH_SERVER_DIR another checkout whose server to measure in place of
 * this tree's, BENCH_SERVER_LOG a file for what the servers print. Prints
 * the figures and a table of the targets of issue 13; --json also writes
 * everything to FILE.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer as createHttpServer } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { create, type DescService, toBinary } from "@bufbuild/protobuf";
import { timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Client, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import pg from "pg";
import {
  AvailabilityService,
  ListSlotsRequestSchema,
  ListSlotsResponseSchema,
} from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { OverrideKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";
import { scrape } from "../support/metrics.js";
import {
  BackendCpu,
  type CpuPerCall,
  type Driven,
  drive,
  loadAverage,
  type Probe,
  percentile,
  ratio,
  round,
  rssMiB,
  withCpu,
} from "./measure.js";
import { FULL_SCALE, loadScaleData } from "./scale.js";

const ADMIN_KEY = `hf_bench_${randomBytes(12).toString("hex")}`;
const MINUTE = 60_000;
const DAY = 86_400_000;
const PROTOCOLS = ["grpc", "connect-json"] as const;
type Protocol = (typeof PROTOCOLS)[number];

type Row = {
  scenario: string;
  protocol: string;
  concurrency: number;
  calls: number;
  perSecond: number;
  p50: number;
  p95: number;
  p99: number;
  /** CPU per call in ms: server process, Postgres cluster, load generator. */
  cpu: CpuPerCall;
};

function row(
  scenario: string,
  protocol: string,
  concurrency: number,
  r: Driven & { cpu?: CpuPerCall },
): Row {
  // A stray timeout on a loaded machine is reported, not fatal; more is a broken run.
  if (r.failures > Math.max(1, r.latencies.length / 100))
    throw new Error(`${scenario} ${protocol} c=${concurrency}: ${r.failures} calls failed`);
  if (r.failures > 0)
    process.stderr.write(
      `${scenario} ${protocol} c=${concurrency}: ${r.failures} call(s) failed\n`,
    );
  return {
    scenario,
    protocol,
    concurrency,
    calls: r.latencies.length,
    perSecond: Math.round(r.latencies.length / r.seconds),
    p50: round(percentile(r.latencies, 50)),
    p95: round(percentile(r.latencies, 95)),
    p99: round(percentile(r.latencies, 99)),
    cpu: r.cpu ?? { client: Number.NaN },
  };
}

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
  protocol: Protocol,
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

const bookingClient = (url: string, key: string, protocol: Protocol) =>
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

/** The server's count of writes of single-resource creates and of the creates they carried (its /metrics). */
async function batchWrites(url: string): Promise<{ writes: number; creates: number }> {
  const samples = await scrape(url);
  return {
    writes: samples.get("holdfast_booking_batch_creates_count") ?? 0,
    creates: samples.get("holdfast_booking_batch_creates_sum") ?? 0,
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
  // Holds last 30 minutes, longer than a run: none lapses while later
  // sections are measured, so their CPU per call is their own calls' and not
  // also the sweeper expiring an earlier section's holds (with the default
  // two minutes, tens of thousands of them, each with its event).
  const svc = await createClient(CatalogService, transport).createService({
    name: "Bench",
    resourceIds: ids,
    policy: {
      durations: [{ seconds: 1800n, nanos: 0 }],
      holdTtl: { seconds: 1800n, nanos: 0 },
      maxHoldTtl: { seconds: 1800n, nanos: 0 },
    },
  });
  return {
    key: apiKey,
    tenantId,
    operator,
    serviceId: svc.service?.id as string,
    resourceIds: ids,
  };
}
type World = Awaited<ReturnType<typeof world>>;

/** Slot i of a world: spread round-robin over its resources, each slot used once per `series`. */
function slot(w: World, i: number, series: number) {
  const resourceId = w.resourceIds[i % w.resourceIds.length] as string;
  const n = Math.floor(i / w.resourceIds.length);
  const start = Date.UTC(2031, 0, 1) + series * DAY * 400 + n * 30 * MINUTE;
  return {
    serviceId: w.serviceId,
    resourceId,
    startTime: timestampFromMs(start),
    endTime: timestampFromMs(start + 30 * MINUTE),
  };
}

const SLOTS_START = Date.UTC(2032, 0, 5); // a Monday

/**
 * The ListSlots data of issue 13: resources in Europe/Berlin open 06:00 to
 * 22:00 every day, with 10 overrides each (13:00 to 15:00 every third
 * day), a service of 15- and 30-minute bookings on a 15-minute grid, and
 * `perResource` 15-minute bookings on each resource over the first 7 days
 * (about half of their open time), made through CreateBooking.
 */
async function slotsWorld(url: string, resources: number, perResource: number) {
  const { apiKey, transport } = await benchTenant(url);
  const rc = createClient(ResourceService, transport);
  const ids: string[] = [];
  for (let i = 0; i < resources; i++) {
    const id = (
      await rc.createResource({
        name: `R${i}`,
        timeZone: "Europe/Berlin",
        weeklySchedule: {
          windows: [1, 2, 3, 4, 5, 6, 7].map((weekday) => ({
            weekday,
            startTime: "06:00",
            endTime: "22:00",
          })),
        },
      })
    ).resource?.id as string;
    for (let o = 0; o < 10; o++) {
      const day = new Date(SLOTS_START + o * 3 * DAY).toISOString().slice(0, 10);
      await rc.createOverride({
        resourceId: id,
        kind: OverrideKind.BLOCK,
        title: "off",
        startDate: day,
        startTime: "13:00",
        endTime: "15:00",
      });
    }
    ids.push(id);
  }
  const svc = await createClient(CatalogService, transport).createService({
    name: "Bench slots",
    resourceIds: ids,
    policy: {
      durations: [
        { seconds: 1800n, nanos: 0 },
        { seconds: 900n, nanos: 0 },
      ],
      slotInterval: { seconds: 900n, nanos: 0 },
    },
  });
  const w = { key: apiKey, serviceId: svc.service?.id as string, resourceIds: ids };
  // Each resource filled by its own sequence of attempts, in parallel: the
  // quarter hours of the week in a scattered order (7919 is prime to 672),
  // closed ones refused, until `perResource` are booked.
  const c = bookingClient(url, w.key, "grpc");
  const positions = 7 * 96;
  const made = await Promise.all(
    ids.map(async (resourceId, r) => {
      let n = 0;
      for (let i = 0; n < perResource && i < positions; i++) {
        const at = SLOTS_START + (((i + r) * 7919) % positions) * 15 * MINUTE;
        await c
          .createBooking({
            serviceId: w.serviceId,
            resourceId,
            startTime: timestampFromMs(at),
            endTime: timestampFromMs(at + 15 * MINUTE),
          })
          .then(
            () => n++,
            () => {},
          );
      }
      return n;
    }),
  );
  if (made.some((n) => n < perResource))
    throw new Error(`slots world: only ${made.join(", ")} of ${perResource} bookings made`);
  return w;
}

type Section =
  | "noop"
  | "holds"
  | "hot"
  | "idempotency"
  | "quota"
  | "race"
  | "slots"
  | "events"
  | "metrics"
  | "sql"
  | "scale"
  | "baseline";
const ALIASES: Record<string, Section> = { "one-resource": "hot", floor: "sql" };

function argValue(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const sectionList = (v: string | undefined) =>
  v?.split(",").map((s) => ALIASES[s] ?? (s as Section));

type Started = { url: string; pid: number };

async function main() {
  const startedAt = new Date();
  const loadAtStart = loadAverage();
  const jsonFile = argValue("--json");
  const quick = process.argv.includes("--quick");
  const scale = quick ? 0.2 : 1;
  const n = (calls: number) => Math.max(10, Math.round(calls * scale));
  const only = sectionList(argValue("--only"));
  // --baseline DIR: another checkout (with its node_modules), e.g. a worktree
  // of the commit before a round of changes, measured against this tree.
  const baselineDir = argValue("--baseline");
  const skip = sectionList(argValue("--skip")) ?? [];
  const runs = (section: Section) => (!only || only.includes(section)) && !skip.includes(section);

  // Postgres: a fresh database, fsync on.
  let adminUrl = process.env.DATABASE_URL;
  let stopPostgres = async () => {};
  let dataDir: string | undefined;
  let postmasterPid = process.env.BENCH_POSTMASTER_PID
    ? Number(process.env.BENCH_POSTMASTER_PID)
    : undefined;
  if (!adminUrl) {
    dataDir = await mkdtemp(join(tmpdir(), "holdfast-bench-"));
    const embedded = await startEmbeddedPostgres({
      dataDir: join(dataDir, "pg"),
      persistent: false,
      fsync: true,
    });
    adminUrl = embedded.adminUrl;
    stopPostgres = embedded.stop;
    postmasterPid = Number.parseInt(
      readFileSync(join(dataDir, "pg", "postmaster.pid"), "utf8"),
      10,
    );
  }
  const dbName = `holdfast_bench_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${dbName}`;
  const fsync = (await admin.query("SHOW fsync")).rows[0].fsync;
  const syncCommit = (await admin.query("SHOW synchronous_commit")).rows[0].synchronous_commit;

  // Processes this bench starts: Holdfast servers and the no-op floor.
  const children: ChildProcess[] = [];
  const spawnServer = (
    args: string[],
    flags: string | undefined,
    env: Record<string, string>,
    cwd?: string,
  ) => {
    const child = spawn(process.execPath, [...(flags?.split(" ").filter(Boolean) ?? []), ...args], {
      cwd,
      env: { ...process.env, PORT: "0", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    children.push(child);
    return new Promise<Started>((resolve, reject) => {
      let out = "";
      let listening = false;
      child.stdout?.on("data", (d: Buffer) => {
        // BENCH_SERVER_LOG: a file that keeps what the servers print (say with --trace-gc).
        if (process.env.BENCH_SERVER_LOG) appendFileSync(process.env.BENCH_SERVER_LOG, d);
        if (listening) return;
        out += d.toString();
        const m = /listening on (http:\/\/\S+)/.exec(out);
        if (m) {
          listening = true;
          resolve({ url: m[1] as string, pid: child.pid as number });
        }
      });
      child.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    });
  };
  const startHoldfast = (
    env: Record<string, string> = {},
    // BENCH_SERVER_DIR: run another checkout's server (an earlier commit,
    // for a before/after comparison) under this bench.
    dir = process.env.BENCH_SERVER_DIR,
    database = dbUrl,
  ) =>
    spawnServer(
      ["--import", "tsx", "src/main.ts"],
      process.env.BENCH_SERVER_FLAGS,
      {
        DATABASE_URL: database.toString(),
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
      dir,
    );
  /** Stops a server this bench started (before the end of the run). */
  const stopServer = async (started: Started) => {
    const child = children.find((c) => c.pid === started.pid);
    if (child && child.exitCode === null) {
      child.kill("SIGTERM");
      await new Promise((resolve) => child.once("exit", resolve));
    }
  };
  /**
   * A Holdfast server (this tree's, or `dir`'s) on a fresh database of its
   * own in the same cluster, with the probe of its process and backends;
   * `drop` stops it and drops the database.
   */
  const serverOfItsOwn = async (suffix: string, dir?: string) => {
    const name = `${dbName}_${suffix}`;
    await admin.query(`CREATE DATABASE ${name}`);
    const database = new URL(dbUrl);
    database.pathname = `/${name}`;
    const started = await startHoldfast({}, dir, database);
    const own: Probe = {
      serverPid: started.pid,
      postmasterPid,
      backends: postmasterPid === undefined ? undefined : new BackendCpu(postmasterPid, name),
    };
    const drop = async () => {
      await stopServer(started);
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
    };
    return { ...started, database, probe: own, drop };
  };
  /**
   * ANALYZE of a bench database once its warm-up has written to it. A fresh
   * database's first plans are made before any statistics exist, when every
   * index of a tiny table costs the same, and the booking writes keep their
   * generic plans: one made then read a resource's occupancy through
   * bookings_by_create_time, every booking of the tenant filtered one by one
   * (auto_explain, 2026-11-27: 830 rows removed for each hold, 3.4 ms
   * instead of 0.13), until the first ANALYZE re-planned it. Autovacuum does
   * that a minute or so into a deployment's life, but not always before a
   * section of the bench ends, so runs of one tree came out in two modes.
   */
  const analyze = async (database: URL) => {
    const client = new pg.Client({ connectionString: database.toString() });
    await client.connect();
    await client.query("ANALYZE").finally(() => client.end());
  };
  const server = await startHoldfast();
  const url = server.url;
  const backends = postmasterPid === undefined ? undefined : new BackendCpu(postmasterPid, dbName);
  const probe: Probe = { serverPid: server.pid, postmasterPid, backends };
  /** Drives `call` and reads CPU around it, for a row. */
  const measured = (
    total: number,
    concurrency: number,
    call: (i: number) => Promise<unknown>,
    p: Probe = probe,
  ) => withCpu(p, () => drive(total, concurrency, call));

  const rows: Row[] = [];
  const extra: Record<string, unknown> = {
    startedAt: startedAt.toISOString(),
    quick,
    postgres: { fsync, synchronous_commit: syncCommit },
  };
  /** Keeps a row, and prints it at once: a run cut short still shows what it measured. */
  const add = (...measuredRows: Row[]) => {
    for (const r of measuredRows) {
      rows.push(r);
      process.stderr.write(
        `${r.scenario} | ${r.protocol} c=${r.concurrency}: ${r.perSecond}/s p50 ${r.p50} p99 ${r.p99} ms${Number.isNaN(r.cpu.client) ? "" : `; CPU/call srv ${r.cpu.server} pg ${r.cpu.postgres} (backends ${r.cpu.backends}) load ${r.cpu.client} ms`}\n`,
      );
    }
  };
  const find = (scenario: string, protocol: string, concurrency: number) =>
    rows.find(
      (r) => r.scenario === scenario && r.protocol === protocol && r.concurrency === concurrency,
    );
  // Made once, when the first section that needs them runs.
  let slotWorlds: Promise<{ one: SlotWorld; twenty: SlotWorld }> | undefined;
  type SlotWorld = Awaited<ReturnType<typeof slotsWorld>>;
  const slotsData = () => {
    slotWorlds ??= (async () => ({
      one: await slotsWorld(url, 1, 200),
      twenty: await slotsWorld(url, 20, 200),
    }))();
    return slotWorlds;
  };
  const slotsRequest = (w: SlotWorld, days: number) => ({
    serviceId: w.serviceId,
    startTime: timestampFromMs(SLOTS_START),
    endTime: timestampFromMs(SLOTS_START + days * DAY),
    duration: { seconds: 1800n, nanos: 0 },
  });

  // The no-op floor's server (test/bench/noop-server.ts), started by the
  // first section that needs it.
  let noopStarted: Promise<Started> | undefined;
  const noopServer = async () => {
    noopStarted ??= spawnServer(
      ["--import", "tsx", "test/bench/noop-server.ts"],
      process.env.BENCH_NOOP_FLAGS,
      {},
    );
    const noop = await noopStarted;
    const noopProbe: Probe = { serverPid: noop.pid, postmasterPid, backends };
    return { noop, noopProbe };
  };

  const HOLDS = "CreateHold, 64 resources";
  const NOOP = "CreateHold, no-op connect-node server (floor)";
  const HOLDS_VS_NOOP = "CreateHold, 64 resources (alternating with the no-op floor)";
  const HOLDS_VS_SQL = "CreateHold, 64 resources (alternating with the raw-SQL floors)";
  const HOT = "CreateHold, one hot resource";
  const SPREAD = "CreateHold, 64 resources (alternating with hot)";
  const SQL_FLOOR = "raw SQL hold: lock, overlap check, insert, commit (floor)";
  const SQL_TABLE = "the same raw SQL hold into Holdfast's bookings table";
  const SQL_FUNCTION = "create_booking() through pg, no server";
  const SLOTS_1_7 = "ListSlots 1 resource x 7 days";
  const SLOTS_1_30 = "ListSlots 1 resource x 30 days";
  const SLOTS_20_7 = "ListSlots 20 resources x 7 days, 1st page";
  const slotsFloor = (scenario: string) => `${scenario}, no-op floor (same page)`;
  const THIS_TREE = "CreateHold, 64 resources, this tree (alternating with the baseline)";
  const BASELINE = `CreateHold, 64 resources, baseline ${baselineDir ?? ""}`;

  try {
    // Warm-up: JIT, connections, plan caches. After 1000 calls a protocol,
    // rows measured later in a run still came out cheaper than the first
    // ones (2026-11-27): 3000 calls a protocol, the floor's too.
    const WARM_UP = 3000;

    // Data scale (target 5) comes first, so that nothing the other sections
    // leave behind runs meanwhile. Two servers, each on a database of its
    // own: one empty, one with the data loaded, measured in alternating
    // rounds (as target 6 is), since one phase after another on this box
    // differed by up to a third for the same server.
    if (runs("scale")) {
      const empty = await serverOfItsOwn("scale_empty");
      const full = await serverOfItsOwn("scale_data");
      try {
        const t0 = performance.now();
        const loader = new pg.Client({ connectionString: full.database.toString() });
        await loader.connect();
        const loaded = await loadScaleData(loader, FULL_SCALE).finally(() => loader.end());
        const loadSeconds = round((performance.now() - t0) / 1000, 1);
        console.log(`scale data loaded in ${loadSeconds} s`, loaded.timings);
        const servers = { empty, full };
        const kinds = ["empty", "full"] as const;
        const label = { empty: "empty database", full: "with 1M bookings + 1M events" };
        const ones = {
          empty: await slotsWorld(empty.url, 1, 200),
          full: await slotsWorld(full.url, 1, 200),
        };
        // The server's RSS moves with its garbage collector: the median of
        // samples taken all through the section says more than one reading.
        const rss = { empty: [] as number[], full: [] as number[] };
        const sampler = setInterval(() => {
          for (const k of kinds) {
            const mib = rssMiB(servers[k].pid);
            if (mib !== undefined) rss[k].push(mib);
          }
        }, 200);
        const ratios: Record<string, { createHoldP50?: number; listSlotsP99?: number }> = {};
        try {
          for (const protocol of PROTOCOLS) {
            const on = async (k: (typeof kinds)[number]) => {
              const w = await world(servers[k].url, 64);
              return {
                w,
                c: bookingClient(servers[k].url, w.key, protocol),
                s: clientOf(AvailabilityService, servers[k].url, ones[k].key, protocol),
              };
            };
            const clients = { empty: await on("empty"), full: await on("full") };
            const week = (k: (typeof kinds)[number]) => slotsRequest(ones[k], 7);
            // Both servers warmed with the same calls, unrecorded.
            for (const k of kinds) {
              const { w, c, s } = clients[k];
              await drive(n(WARM_UP), 16, (i) => c.createHold(slot(w, i + 1_000_000, 29)));
              await drive(n(500), 1, () => s.listSlots(week(k)));
            }
            await analyze(empty.database);
            const holds = await alternating(kinds, 4, (k, pass) => {
              const { w, c } = clients[k];
              return measured(
                n(750),
                16,
                (i) => c.createHold(slot(w, i + pass * 100_000, 30)),
                servers[k].probe,
              );
            });
            const slots = await alternating(kinds, 4, (k) =>
              measured(n(125), 1, () => clients[k].s.listSlots(week(k)), servers[k].probe),
            );
            const rows = Object.fromEntries(
              kinds.map((k) => [
                k,
                {
                  holds: row(
                    `CreateHold, 64 resources, ${label[k]}`,
                    protocol,
                    16,
                    merge(holds[k]),
                  ),
                  slots: row(
                    `ListSlots 1 resource x 7 days, ${label[k]}`,
                    protocol,
                    1,
                    merge(slots[k]),
                  ),
                },
              ]),
            ) as Record<(typeof kinds)[number], { holds: Row; slots: Row }>;
            for (const k of kinds) add(rows[k].holds, rows[k].slots);
            ratios[protocol] = {
              createHoldP50: ratio(rows.full.holds.p50, rows.empty.holds.p50),
              listSlotsP99: ratio(rows.full.slots.p99, rows.empty.slots.p99),
            };
          }
        } finally {
          clearInterval(sampler);
        }
        const median = (xs: number[]) =>
          round(
            percentile(
              xs.sort((a, b) => a - b),
              50,
            ),
            1,
          );
        extra.scale = {
          size: FULL_SCALE,
          loadSeconds,
          loadSteps: loaded.timings,
          rssMiBEmpty: median(rss.empty),
          rssMiBWithData: median(rss.full),
          rssRatio: ratio(median(rss.full), median(rss.empty)),
          ratios,
        };
      } finally {
        await empty.drop();
        await full.drop();
      }
    }

    // The main server's warm-up (see WARM_UP).
    {
      const w = await world(url, 16);
      for (const protocol of PROTOCOLS) {
        const c = bookingClient(url, w.key, protocol);
        await drive(n(WARM_UP), 16, (i) => c.createHold(slot(w, i, protocol === "grpc" ? 0 : 10)));
      }
      await analyze(dbUrl);
    }

    // The no-op floor: the same requests, the same load generator, against
    // connect-node's adapter on the same port handling, with a CreateHold
    // that answers without the database. The floor moved by a third between
    // runs on this box, so it is measured in rounds alternating with
    // Holdfast's own CreateHold (16 clients, 64 resources), and target 1
    // compares those two rows.
    if (runs("noop")) {
      const { noop, noopProbe } = await noopServer();
      for (const protocol of PROTOCOLS) {
        const floor = await world(url, 64);
        const onFloor = bookingClient(noop.url, floor.key, protocol);
        await drive(n(WARM_UP), 16, (i) => onFloor.createHold(slot(floor, i, 20)));
        const sums = await alternating(["floor", "holdfast"], 4, async (which) => {
          if (which === "floor") {
            return measured(n(3000), 16, (i) => onFloor.createHold(slot(floor, i, 20)), noopProbe);
          }
          const w = await world(url, 64);
          const c = bookingClient(url, w.key, protocol);
          return measured(n(3000), 16, (i) => c.createHold(slot(w, i, 21)));
        });
        add(row(NOOP, protocol, 16, merge(sums.floor)));
        add(row(HOLDS_VS_NOOP, protocol, 16, merge(sums.holdfast)));
      }
    }

    // CreateHold on distinct slots spread over 64 resources, with how many
    // creates each write to Postgres carried (group commit).
    const createsPerWrite: Record<string, number | undefined> = {};
    for (const protocol of runs("holds") ? PROTOCOLS : []) {
      for (const concurrency of [1, 16, 64]) {
        const w = await world(url, 64);
        const c = bookingClient(url, w.key, protocol);
        const total = n(concurrency === 1 ? 1000 : 6000);
        const before = await batchWrites(url);
        add(
          row(
            HOLDS,
            protocol,
            concurrency,
            await measured(total, concurrency, (i) => c.createHold(slot(w, i, 1))),
          ),
        );
        const after = await batchWrites(url);
        createsPerWrite[`${protocol} c=${concurrency}`] =
          after.writes > before.writes
            ? round((after.creates - before.creates) / (after.writes - before.writes))
            : undefined;
      }
    }
    if (runs("holds")) extra.createsPerWrite = createsPerWrite;

    // One hot resource versus 64 spread ones, 16 clients, in alternating
    // rounds so that the machine's drift falls on both alike.
    for (const protocol of runs("hot") ? PROTOCOLS : []) {
      const sums = await alternating(["spread", "hot"], 4, async (kind) => {
        const w = await world(url, kind === "hot" ? 1 : 64);
        const c = bookingClient(url, w.key, protocol);
        return measured(n(1000), 16, (i) => c.createHold(slot(w, i, 2)));
      });
      for (const kind of ["spread", "hot"] as const) {
        add(row(kind === "hot" ? HOT : SPREAD, protocol, 16, merge(sums[kind])));
      }
    }

    // With an Idempotency-Key on every call, as the typed client sends.
    if (runs("idempotency")) {
      const w = await world(url, 64);
      const c = bookingClient(url, w.key, "grpc");
      const keyed = (i: number) =>
        c.createHold(slot(w, i, 3), { headers: { "idempotency-key": `k-${i}` } });
      add(
        row(
          "CreateHold + Idempotency-Key, 64 resources",
          "grpc",
          16,
          await measured(n(6000), 16, keyed),
        ),
      );
    }

    // What quotas cost: CreateHold on 64 resources at 16 clients for a
    // tenant with booking quotas set (each hold then counts the tenant's
    // active holds and the month's bookings under the tenant's quota lock)
    // and for one without, alternating.
    if (runs("quota")) {
      const sums = await alternating(["none", "quota"], 3, async (variant, pass) => {
        const w = await world(url, 64);
        if (variant === "quota") {
          await w.operator.setTenantQuotas({
            tenantId: w.tenantId,
            quotas: { activeHolds: 1_000_000, bookingsPerMonth: 1_000_000 },
          });
        }
        const c = bookingClient(url, w.key, "grpc");
        return drive(n(3000), 16, (i) => c.createHold(slot(w, i, 5 + pass)));
      });
      const none = perSecond(sums.none);
      const quota = perSecond(sums.quota);
      add(row("CreateHold, 64 resources, no quota (3 rounds)", "grpc", 16, merge(sums.none)));
      add(row("CreateHold, 64 resources, quotas set (3 rounds)", "grpc", 16, merge(sums.quota)));
      extra.quotaCost = {
        noQuotaPerSecond: Math.round(none),
        quotasSetPerSecond: Math.round(quota),
        lossPercent: round((1 - quota / none) * 100),
      };
    }

    // The 50-way race for one slot: time until all 50 have their answer.
    const races: Record<string, number[]> = {};
    for (const protocol of runs("race") ? PROTOCOLS : []) {
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

    // ListSlots (issue 13): one resource with 200 bookings over 7 days,
    // asked for those 7 days and for 30 days; 20 resources with 200
    // bookings each, 7 days, first page. At one client, in rounds
    // alternating with the no-op floor answering the same page (captured
    // from Holdfast) without computing it: what the framework, Node and
    // this load generator's decoding cost for an answer of that size.
    if (runs("slots")) {
      const { one, twenty } = await slotsData();
      const { noop, noopProbe } = await noopServer();
      const week = slotsRequest(one, 7);
      const month = slotsRequest(one, 30);
      const week20 = slotsRequest(twenty, 7);
      // Each page stored on the floor's server, as Holdfast answered it.
      for (const [w, req] of [
        [one, week],
        [one, month],
        [twenty, week20],
      ] as const) {
        const answer = await clientOf(AvailabilityService, url, w.key, "grpc").listSlots(req);
        const stored = await fetch(`${noop.url}/bench/slots`, {
          method: "POST",
          headers: {
            "x-request": Buffer.from(
              toBinary(ListSlotsRequestSchema, create(ListSlotsRequestSchema, req)),
            ).toString("base64"),
          },
          body: toBinary(ListSlotsResponseSchema, answer),
        });
        if (stored.status !== 204) throw new Error(`floor page not stored: ${stored.status}`);
      }
      for (const protocol of PROTOCOLS) {
        const c1 = clientOf(AvailabilityService, url, one.key, protocol);
        const c20 = clientOf(AvailabilityService, url, twenty.key, protocol);
        const onFloor = clientOf(AvailabilityService, noop.url, one.key, protocol);
        extra[`slotCounts_${protocol}`] = {
          oneResource7Days: (await c1.listSlots(week)).slots.length,
          oneResource30Days: (await c1.listSlots(month)).slots.length,
          twentyResources7DaysFirstPage: (await c20.listSlots(week20)).slots.length,
        };
        await drive(n(100), 4, () => c1.listSlots(month));
        await drive(n(50), 4, () => c20.listSlots(week20));
        for (const req of [week, month, week20])
          await drive(n(100), 4, () => onFloor.listSlots(req));
        for (const [scenario, client, req, calls] of [
          [SLOTS_1_7, c1, week, 500],
          [SLOTS_1_30, c1, month, 300],
          [SLOTS_20_7, c20, week20, 200],
        ] as const) {
          const sums = await alternating(["floor", "holdfast"], 4, (which) =>
            which === "floor"
              ? measured(n(calls / 4), 1, () => onFloor.listSlots(req), noopProbe)
              : measured(n(calls / 4), 1, () => client.listSlots(req)),
          );
          add(row(slotsFloor(scenario), protocol, 1, merge(sums.floor)));
          add(row(scenario, protocol, 1, merge(sums.holdfast)));
          add(
            row(
              scenario,
              protocol,
              16,
              await measured(n(calls * 2), 16, () => client.listSlots(req)),
            ),
          );
        }
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
      const pairs = n(1000);
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

    // Metrics on versus off: the same CreateHold load on two servers started
    // for this section alone (so neither carries what earlier sections left
    // behind), over the same database, one with HOLDFAST_METRICS=false, in
    // alternating rounds. Compared by throughput and by server CPU per call.
    if (runs("metrics")) {
      const servers = {
        on: await startHoldfast(),
        off: await startHoldfast({ HOLDFAST_METRICS: "false" }),
      };
      const load = async (which: "on" | "off", total: number) => {
        const s = servers[which];
        const w = await world(s.url, 64);
        const c = bookingClient(s.url, w.key, "grpc");
        return measured(total, 16, (i) => c.createHold(slot(w, i, 7)), {
          serverPid: s.pid,
          postmasterPid,
          backends,
        });
      };
      // Warm-up of both (JIT, connections, plan caches), not counted: long
      // enough that the rounds do not keep getting faster.
      for (const which of ["on", "off"] as const) await load(which, n(3000));
      const results = await alternating(["on", "off"], 4, async (which, i) => {
        const r = await load(which, n(2000));
        process.stderr.write(
          `  metrics ${which} round ${i + 1}: ${Math.round(r.latencies.length / r.seconds)}/s, srv ${r.cpu.server} ms/call\n`,
        );
        return r;
      });
      const merged = { on: merge(results.on), off: merge(results.off) };
      for (const which of ["on", "off"] as const) {
        add(row(`CreateHold, metrics ${which} (fresh servers)`, "grpc", 16, merged[which]));
      }
      const cpuOn = merged.on.cpu?.server;
      const cpuOff = merged.off.cpu?.server;
      extra.metricsOverhead = {
        throughputPercent: round((1 - perSecond(results.on) / perSecond(results.off)) * 100),
        serverCpuPercent:
          cpuOn === undefined || cpuOff === undefined || cpuOff === 0
            ? undefined
            : round((cpuOn / cpuOff - 1) * 100),
        serverCpuMsPerCall: { on: cpuOn, off: cpuOff },
        rounds: results.on.length,
      };
      for (const s of Object.values(servers)) await stopServer(s);
    }

    // The raw-SQL floor, no server: the minimal hold transaction (advisory
    // lock, overlap check through one index, insert, commit) in one round
    // trip on a table of its own; beside it the same statement into
    // Holdfast's bookings table and Holdfast's create_booking() called
    // directly, for how much of Holdfast's Postgres cost is the table and how
    // much the function; and CreateHold through the server (target 2).
    if (runs("sql")) {
      const w = await world(url, 64);
      const pool = new pg.Pool({ connectionString: dbUrl.toString(), max: 16 });
      await pool.query(
        `CREATE TABLE bench_floor_holds (
           id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
           tenant_id text NOT NULL, resource_id text NOT NULL,
           start_time timestamptz NOT NULL, end_time timestamptz NOT NULL,
           expire_time timestamptz);
         CREATE INDEX bench_floor_holds_occupancy
           ON bench_floor_holds (tenant_id, resource_id, start_time)`,
      );
      const floorHold = (i: number) => {
        const s = slot(w, i, 8);
        return pool.query({
          name: "bench_floor_hold",
          text: `WITH locked AS MATERIALIZED (
                   SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))),
                 taken AS MATERIALIZED (
                   SELECT count(*) AS n FROM locked, bench_floor_holds h
                   WHERE h.tenant_id = $1 AND h.resource_id = $2
                     AND h.start_time > $3::timestamptz - interval '72 hours' AND h.start_time < $4
                     AND h.end_time > $3 AND (h.expire_time IS NULL OR h.expire_time > now()))
                 INSERT INTO bench_floor_holds (tenant_id, resource_id, start_time, end_time, expire_time)
                 SELECT $1, $2, $3, $4, now() + interval '120 s' FROM taken WHERE n = 0
                 RETURNING id`,
          values: [w.tenantId, s.resourceId, timestampDate(s.startTime), timestampDate(s.endTime)],
        });
      };

      const { rows: ctx } = await pool.query(
        "SELECT s.revision AS srev, s.policy_version FROM services s WHERE s.tenant_id = $1 AND s.id = $2",
        [w.tenantId, w.serviceId],
      );
      const { srev, policy_version: version } = ctx[0];

      // The floor's statement writing Holdfast's own row into its bookings
      // table (its seven indexes and the exclusion constraint), without the
      // event or the checks: between the floor and create_booking(), how
      // much is the table and how much the function. On generic plans, as
      // Holdfast's writes run (05_booking_writes.sql): planned afresh each
      // time, as the planner otherwise chooses here, it costs a third more.
      const generic = new pg.Pool({
        connectionString: dbUrl.toString(),
        max: 16,
        options: "-c plan_cache_mode=force_generic_plan",
      });
      const tableHold = (i: number) => {
        const s = slot(w, i, 9);
        return generic.query({
          name: "bench_table_hold",
          text: `WITH locked AS MATERIALIZED (
                   SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))),
                 taken AS MATERIALIZED (
                   SELECT count(*) AS n FROM locked, bookings b
                   WHERE b.tenant_id = $1 AND b.resource_id = $2 AND b.status IN ('held', 'confirmed')
                     AND b.block_start > $4::timestamptz - interval '72 hours' AND b.block_start < $5
                     AND b.block_end > $4 AND (b.status = 'confirmed' OR b.expire_time > now()))
                 INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time,
                                       block_start, block_end, status, expire_time, policy_version,
                                       exclusive, create_time, update_time)
                 SELECT $1, $3, $2, $4, $5, $4, $5, 'held', now() + interval '1800 s', $6, true, now(), now()
                 FROM taken WHERE n = 0
                 RETURNING id`,
          values: [
            w.tenantId,
            s.resourceId,
            w.serviceId,
            timestampDate(s.startTime),
            timestampDate(s.endTime),
            version,
          ],
        });
      };
      const revs = new Map(
        (
          await pool.query("SELECT id, revision FROM resources WHERE tenant_id = $1", [w.tenantId])
        ).rows.map((r) => [r.id, r.revision]),
      );
      const hold = (i: number) => {
        const s = slot(w, i, 5);
        return pool.query({
          name: "bench_create_booking",
          text: `SELECT create_booking($1, $2, $3::text[], $4, $5::integer[], $6, $7, $8, '0 ms', '0 ms', '0 ms', NULL,
                                 '1800 s', '{}', '{}', NULL, NULL, NULL)`,
          values: [
            w.tenantId,
            w.serviceId,
            [s.resourceId],
            srev,
            [revs.get(s.resourceId)],
            version,
            timestampDate(s.startTime),
            timestampDate(s.endTime),
          ],
        });
      };

      // The floors and CreateHold through the server over each protocol, in
      // rounds that take turns, so that target 2 compares figures measured
      // under the same drift of this machine.
      const onServer = async (protocol: Protocol) => {
        const ws = await world(url, 64);
        const c = bookingClient(url, ws.key, protocol);
        return (i: number) => c.createHold(slot(ws, i, 11));
      };
      const writes = {
        floor: floorHold,
        table: tableHold,
        function: hold,
        grpc: await onServer("grpc"),
        "connect-json": await onServer("connect-json"),
      };
      const kinds = Object.keys(writes) as (keyof typeof writes)[];
      for (const k of kinds) await drive(200, 16, (i) => writes[k](i + 1_000_000));
      await analyze(dbUrl);
      const sums = await alternating(kinds, 4, (k, round) =>
        measured(n(1500), 16, (i) => writes[k](i + round * 100_000)),
      );
      add(row(SQL_FLOOR, "pg", 16, merge(sums.floor)));
      add(row(SQL_TABLE, "pg", 16, merge(sums.table)));
      add(row(SQL_FUNCTION, "pg", 16, merge(sums.function)));
      for (const protocol of PROTOCOLS) add(row(HOLDS_VS_SQL, protocol, 16, merge(sums[protocol])));
      await pool.end();
      await generic.end();
    }

    // Flat as data grows: CreateHold (64 resources, 16 clients) and ListSlots
    // (one resource, 7 days, one client), then 1,000,000 bookings over
    // 10,000 resources and 1,000,000 outbox events in a tenant of their
    // own, then the same again; with the server's memory before and after.
    // Target 6: this tree's CreateHold throughput against another checkout's,
    // each server on a fresh database of its own in the same cluster, 16
    // clients, in alternating rounds so that drift falls on both alike.
    if (baselineDir && runs("baseline")) {
      const base = await serverOfItsOwn("base", baselineDir);
      try {
        for (const protocol of PROTOCOLS) {
          const sums = await alternating(["base", "tree"], 4, async (which, pass) => {
            const series = 40 + pass;
            const at = which === "tree" ? url : base.url;
            const w = await world(at, 64);
            const c = bookingClient(at, w.key, protocol);
            await drive(n(500), 16, (i) => c.createHold(slot(w, i + 1_000_000, series)));
            if (which === "base" && pass === 0) await analyze(base.database);
            return measured(
              n(3000),
              16,
              (i) => c.createHold(slot(w, i, series)),
              which === "tree" ? probe : base.probe,
            );
          });
          add(row(THIS_TREE, protocol, 16, merge(sums.tree)));
          add(row(BASELINE, protocol, 16, merge(sums.base)));
        }
      } finally {
        await base.drop();
      }
    }
  } finally {
    extra.serverRssMiBAtEnd = round(rssMiB(server.pid) ?? Number.NaN, 1);
    await Promise.all(
      children.map((child) => {
        if (child.exitCode !== null) return undefined;
        child.kill("SIGTERM");
        return new Promise((resolve) => child.once("exit", resolve));
      }),
    );
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch(() => {});
    await admin.end();
    await stopPostgres();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  }
  const loadAtEnd = loadAverage();
  const minutes = round((Date.now() - startedAt.getTime()) / 60_000, 1);
  extra.loadAverage = { start: loadAtStart, end: loadAtEnd };
  extra.minutes = minutes;

  // Ratios to the floors, on the rows that have one.
  const vsFloor = (r: Row): string => {
    const slotsFloorRow = find(slotsFloor(r.scenario), r.protocol, r.concurrency);
    if (slotsFloorRow) {
      const p99 = ratio(r.p99, slotsFloorRow.p99);
      const server = ratio(r.cpu.server, slotsFloorRow.cpu.server);
      return `p99 ${p99}x, srv ${server}x no-op`;
    }
    if (r.scenario === SQL_TABLE || r.scenario === SQL_FUNCTION || r.scenario === HOLDS_VS_SQL) {
      return `pg ${ratio(r.cpu.backends, find(SQL_FLOOR, "pg", 16)?.cpu.backends)}x raw SQL`;
    }
    if ((r.scenario !== HOLDS && r.scenario !== HOLDS_VS_NOOP) || r.concurrency !== 16) return "";
    const server = ratio(r.cpu.server, find(NOOP, r.protocol, 16)?.cpu.server);
    return server === undefined ? "" : `srv ${server}x no-op`;
  };

  const header = [
    "scenario",
    "protocol",
    "conc",
    "calls",
    "per s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "srv ms",
    "pg ms",
    "pg be ms",
    "load ms",
    "vs floor",
  ];
  const cell = (x: number | undefined) => (x === undefined || Number.isNaN(x) ? "-" : String(x));
  const lines = rows.map((r) => [
    r.scenario,
    r.protocol,
    String(r.concurrency),
    String(r.calls),
    String(r.perSecond),
    String(r.p50),
    String(r.p95),
    String(r.p99),
    cell(r.cpu.server),
    cell(r.cpu.postgres),
    cell(r.cpu.backends),
    cell(r.cpu.client),
    vsFloor(r),
  ]);
  console.log(
    `\nHoldfast benchmark ${startedAt.toISOString()}${quick ? " (--quick)" : ""}: Postgres fsync=${fsync}, synchronous_commit=${syncCommit}; server, Postgres and load generator on this machine (${minutes} min)`,
  );
  console.log(`load average (1/5/15 min) at start ${loadAtStart}, at end ${loadAtEnd}`);
  console.log(
    "CPU per call from /proc: srv = the server process (all threads), pg = the whole Postgres cluster (background processes included), pg be = the backends of the bench's database only, load = this load generator. At low call rates the servers' own background work weighs on srv and pg\n",
  );
  printTable(header, lines, 2);

  const race = extra.race50 as Record<string, { p50: number; max: number; runs: number }>;
  if (Object.keys(race).length > 0) {
    console.log("\n50-way race for one slot, time until all 50 answered (20 races each):");
    for (const [p, r] of Object.entries(race))
      console.log(`  ${p.padEnd(12)} p50 ${r.p50} ms, max ${r.max} ms`);
  }
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
  const mo = extra.metricsOverhead as
    | {
        throughputPercent: number;
        serverCpuPercent?: number;
        serverCpuMsPerCall: { on?: number; off?: number };
        rounds: number;
      }
    | undefined;
  if (mo)
    console.log(
      `\nMetrics overhead on CreateHold (gRPC, 16 in flight, two fresh servers, ${mo.rounds} alternating rounds each): ${mo.throughputPercent}% of throughput, ${mo.serverCpuPercent ?? "n/a"}% server CPU per call (${mo.serverCpuMsPerCall.on ?? "n/a"} vs ${mo.serverCpuMsPerCall.off ?? "n/a"} ms)`,
    );
  if (extra.createsPerWrite)
    console.log(
      "\nCreates per write to Postgres in the CreateHold rows (holdfast_booking_batch_creates; 1 = no batching):",
      JSON.stringify(extra.createsPerWrite),
    );
  for (const p of PROTOCOLS) {
    if (extra[`slotCounts_${p}`])
      console.log(`\nListSlots answers (${p}):`, JSON.stringify(extra[`slotCounts_${p}`]));
  }
  const sc = extra.scale as
    | {
        loadSeconds: number;
        rssMiBEmpty: number;
        rssMiBWithData: number;
        rssRatio?: number;
        ratios: Record<Protocol, { createHoldP50?: number; listSlotsP99?: number }>;
      }
    | undefined;
  if (sc)
    console.log(
      `\nData scale: loaded in ${sc.loadSeconds} s; server RSS ${sc.rssMiBEmpty} MiB on the empty database, ${sc.rssMiBWithData} MiB with the data (medians)`,
    );

  // The targets of issue 13, from this run's figures.
  const targets: Array<{ target: string; measured: string; met: boolean | undefined }> = [];
  const each = (f: (p: Protocol) => number | undefined) => PROTOCOLS.map((p) => [p, f(p)] as const);
  const judge = (
    target: string,
    values: ReadonlyArray<readonly [string, number | undefined]>,
    ok: (v: number) => boolean,
    unit = "",
  ) => {
    const known = values.filter(([, v]) => v !== undefined) as [string, number][];
    targets.push({
      target,
      measured:
        known.length === 0 ? "not measured" : known.map(([k, v]) => `${k} ${v}${unit}`).join(", "),
      met: known.length === 0 ? undefined : known.every(([, v]) => ok(v)),
    });
  };
  judge(
    "1. server CPU per CreateHold <= 1.5x the no-op floor (16 clients)",
    each((p) => ratio(find(HOLDS_VS_NOOP, p, 16)?.cpu.server, find(NOOP, p, 16)?.cpu.server)),
    (v) => v <= 1.5,
    "x",
  );
  judge(
    "2. Postgres backend CPU per CreateHold <= 2x the raw-SQL floor (16 clients)",
    each((p) =>
      ratio(find(HOLDS_VS_SQL, p, 16)?.cpu.backends, find(SQL_FLOOR, "pg", 16)?.cpu.backends),
    ),
    (v) => v <= 2,
    "x",
  );
  judge(
    "3a. ListSlots 1 resource x 7 days: Postgres backend CPU per call <= 1 ms (16 clients)",
    each((p) => find(SLOTS_1_7, p, 16)?.cpu.backends),
    (v) => v <= 1,
    " ms",
  );
  judge(
    "3b. ListSlots 1 resource x 7 days: p99 <= 5 ms (1 client)",
    each((p) => find(SLOTS_1_7, p, 1)?.p99),
    (v) => v <= 5,
    " ms",
  );
  judge(
    "3c. ListSlots 1 resource x 30 days: p99 <= 10 ms (1 client)",
    each((p) => find(SLOTS_1_30, p, 1)?.p99),
    (v) => v <= 10,
    " ms",
  );
  judge(
    "3d. ListSlots 20 resources x 7 days: p99 <= 15 ms (1 client)",
    each((p) => find(SLOTS_20_7, p, 1)?.p99),
    (v) => v <= 15,
    " ms",
  );
  judge(
    "4. one hot resource >= 0.9x the throughput of 64 spread (16 clients)",
    each((p) => ratio(find(HOT, p, 16)?.perSecond, find(SPREAD, p, 16)?.perSecond)),
    (v) => v >= 0.9,
    "x",
  );
  judge(
    "5a. CreateHold p50 with 1M bookings + 1M events <= 1.2x empty",
    each((p) => sc?.ratios[p]?.createHoldP50),
    (v) => v <= 1.2,
    "x",
  );
  judge(
    "5b. ListSlots p99 with 1M bookings + 1M events <= 1.2x empty",
    each((p) => sc?.ratios[p]?.listSlotsP99),
    (v) => v <= 1.2,
    "x",
  );
  judge(
    "5c. server RSS with the data <= 1.2x without",
    [["rss", sc?.rssRatio]],
    (v) => v <= 1.2,
    "x",
  );
  judge(
    "6. CreateHold/s at 16 clients >= 1.5x the --baseline checkout's (alternating rounds)",
    each((p) => ratio(find(THIS_TREE, p, 16)?.perSecond, find(BASELINE, p, 16)?.perSecond)),
    (v) => v >= 1.5,
    "x",
  );
  extra.targets = targets;
  console.log("\nTargets (issue 13), from this run:\n");
  printTable(
    ["target", "measured", "met"],
    targets.map((t) => [
      t.target,
      t.measured,
      t.met === undefined ? "-" : t.met ? "met" : "NOT met",
    ]),
    2,
  );

  if (jsonFile) {
    await writeFile(jsonFile, `${JSON.stringify({ rows, ...extra }, null, 2)}\n`);
    console.log(`\nfigures written to ${jsonFile}`);
  }
}

/**
 * `rounds` rounds of `run` for each kind, each round starting one kind later
 * (a b, b a, a b, ... for two; a b c, b c a, c a b, ... for three), so that
 * the machine's drift falls on all alike.
 */
async function alternating<K extends string, R>(
  kinds: readonly K[],
  rounds: number,
  run: (kind: K, round: number) => Promise<R>,
): Promise<Record<K, R[]>> {
  const out = Object.fromEntries(kinds.map((k) => [k, []])) as unknown as Record<K, R[]>;
  for (let round = 0; round < rounds; round++) {
    for (let j = 0; j < kinds.length; j++) {
      const kind = kinds[(round + j) % kinds.length] as K;
      out[kind].push(await run(kind, round));
    }
  }
  return out;
}

/** Calls a second over several drives. */
const perSecond = (drives: Driven[]) =>
  drives.reduce((a, r) => a + r.latencies.length, 0) / drives.reduce((a, r) => a + r.seconds, 0);

/** Several drives of one kind as one: latencies pooled, time and CPU added up. */
function merge(parts: Array<Driven & { cpu?: CpuPerCall }>): Driven & { cpu?: CpuPerCall } {
  const latencies = parts.flatMap((p) => p.latencies).sort((a, b) => a - b);
  const calls = parts.map((p) => p.latencies.length);
  const total = calls.reduce((a, b) => a + b, 0);
  const weighted = (f: (c: CpuPerCall) => number | undefined) => {
    let sum = 0;
    for (const [i, p] of parts.entries()) {
      const v = p.cpu && f(p.cpu);
      if (v === undefined) return undefined;
      sum += v * (calls[i] as number);
    }
    return round(sum / Math.max(1, total), 3);
  };
  return {
    latencies,
    seconds: parts.reduce((a, p) => a + p.seconds, 0),
    failures: parts.reduce((a, p) => a + p.failures, 0),
    cpu: parts.every((p) => p.cpu)
      ? {
          server: weighted((c) => c.server),
          postgres: weighted((c) => c.postgres),
          backends: weighted((c) => c.backends),
          client: weighted((c) => c.client) ?? Number.NaN,
        }
      : undefined,
  };
}

/** Prints rows under a header, the first `textColumns` left-aligned, the rest right-aligned. */
function printTable(header: string[], lines: string[][], textColumns: number) {
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => (l[i] ?? "").length)));
  const fmt = (cells: string[]) =>
    cells
      .map((c, i) =>
        i < textColumns || i === cells.length - 1
          ? c.padEnd(widths[i] as number)
          : c.padStart(widths[i] as number),
      )
      .join("  ")
      .trimEnd();
  console.log(fmt(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const l of lines) console.log(fmt(l));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

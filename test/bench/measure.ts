/**
 * What the bench measures besides latency: CPU time of the server process
 * (all its threads) and of the whole Postgres cluster it uses, read from
 * /proc before and after each scenario, and the load generator's own CPU.
 * Linux only; elsewhere the CPU figures are left out.
 */
import { readdirSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";

/** Clock ticks per second of /proc's utime and stime (USER_HZ: 100 on every Linux build that matters). */
const TICKS_PER_SECOND = 100;

type Stat = { ppid: number; cpuTicks: number; childTicks: number };

/**
 * Fields of /proc/PID/stat. The command name (field 2) is in parentheses and
 * may hold spaces, so fields are counted from its closing parenthesis.
 */
export function parseStat(text: string): Stat {
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state): field n is rest[n - 3].
  const field = (n: number) => Number(rest[n - 3]);
  return { ppid: field(4), cpuTicks: field(14) + field(15), childTicks: field(16) + field(17) };
}

function readStat(pid: number): Stat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return undefined;
  }
}

/** utime + stime of a process, all threads, in ms; undefined when it cannot be read. */
export function processCpuMs(pid: number): number | undefined {
  const s = readStat(pid);
  return s && (s.cpuTicks * 1000) / TICKS_PER_SECOND;
}

/**
 * The pids of a process's children. Linux lists them per thread
 * (/proc/PID/task/TID/children, each thread the ones it forked); reading
 * those takes a few files where a scan of /proc reads every process's stat,
 * which on this box blocked the load generator for about 2 ms at every poll
 * (every 250 ms), long enough to show in a one-client p99. Where the kernel
 * does not list children, every process is a candidate and the callers'
 * ppid check decides.
 */
function childrenOf(pid: number): number[] {
  try {
    const children: number[] = [];
    for (const task of readdirSync(`/proc/${pid}/task`)) {
      for (const c of readFileSync(`/proc/${pid}/task/${task}/children`, "utf8").split(" ")) {
        if (c) children.push(Number(c));
      }
    }
    return children;
  } catch {
    return readdirSync("/proc")
      .filter((name) => /^\d+$/.test(name))
      .map(Number);
  }
}

/**
 * CPU of a Postgres cluster in ms: the postmaster, every live child
 * (backends, walwriter, checkpointer, autovacuum...), and the children it
 * has already reaped (their time moves into its cutime/cstime), so a backend
 * that exits between two samples is still counted.
 */
export function clusterCpuMs(postmasterPid: number): number | undefined {
  const root = readStat(postmasterPid);
  if (!root) return undefined;
  let ticks = root.cpuTicks + root.childTicks;
  for (const pid of childrenOf(postmasterPid)) {
    const s = readStat(pid);
    if (s && s.ppid === postmasterPid) ticks += s.cpuTicks;
  }
  return (ticks * 1000) / TICKS_PER_SECOND;
}

/**
 * CPU of the backends serving one database, in ms: the children of the
 * postmaster whose process title names it (`postgres: USER DB [local] ...`),
 * leaving out the cluster's background processes and other databases. A
 * backend that exits takes its figure with it, so `poll` keeps the last
 * one seen of each: call it often (every 250 ms during a scenario) and
 * at most that much of an exiting backend's work is missed.
 */
export class BackendCpu {
  private readonly seen = new Map<number, number>();
  private goneTicks = 0;

  constructor(
    private readonly postmasterPid: number,
    private readonly database: string,
  ) {}

  poll(): void {
    const now = new Map<number, number>();
    for (const pid of childrenOf(this.postmasterPid)) {
      const s = readStat(pid);
      if (!s || s.ppid !== this.postmasterPid) continue;
      let title: string;
      try {
        title = readFileSync(`/proc/${pid}/cmdline`, "utf8");
      } catch {
        continue;
      }
      if (title.includes(` ${this.database} `)) now.set(pid, s.cpuTicks);
    }
    for (const [pid, ticks] of this.seen) if (!now.has(pid)) this.goneTicks += ticks;
    this.seen.clear();
    for (const [pid, ticks] of now) this.seen.set(pid, ticks);
  }

  totalMs(): number {
    this.poll();
    let ticks = this.goneTicks;
    for (const t of this.seen.values()) ticks += t;
    return (ticks * 1000) / TICKS_PER_SECOND;
  }
}

/** Resident memory of a process in MiB (VmRSS). */
export function rssMiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : undefined;
  } catch {
    return undefined;
  }
}

export function loadAverage(): string {
  try {
    return readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
  } catch {
    return "n/a";
  }
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export const round = (n: number, digits = 2) => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

export type Driven = { latencies: number[]; seconds: number; failures: number };

/** Runs `call(i)` for i = 0..total-1 with `concurrency` in flight; latencies in ms, sorted. */
export async function drive(
  total: number,
  concurrency: number,
  call: (i: number) => Promise<unknown>,
): Promise<Driven> {
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

/** Where CPU is read during a scenario: the server under test, the Postgres cluster, its backends. */
export type Probe = { serverPid?: number; postmasterPid?: number; backends?: BackendCpu };

export type CpuPerCall = {
  /** Server process CPU per call in ms (all threads). */
  server?: number;
  /** Postgres cluster CPU per call in ms (every process of the cluster). */
  postgres?: number;
  /** CPU per call in ms of the Postgres backends serving the bench's database. */
  backends?: number;
  /** This process (the load generator) per call in ms. */
  client: number;
};

/** CPU of the server, the cluster and this process, now, in ms. */
function sample(probe: Probe) {
  const c = process.cpuUsage();
  return {
    server: probe.serverPid === undefined ? undefined : processCpuMs(probe.serverPid),
    postgres: probe.postmasterPid === undefined ? undefined : clusterCpuMs(probe.postmasterPid),
    backends: probe.backends?.totalMs(),
    client: (c.user + c.system) / 1000,
  };
}

/** Runs `run`, and divides the CPU each side spent meanwhile by the calls it made. */
export async function withCpu(
  probe: Probe,
  run: () => Promise<Driven>,
): Promise<Driven & { cpu: CpuPerCall }> {
  const before = sample(probe);
  const polling = probe.backends && setInterval(() => probe.backends?.poll(), 250);
  const r = await run().finally(() => clearInterval(polling));
  const after = sample(probe);
  const calls = Math.max(1, r.latencies.length);
  const per = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? undefined : round((b - a) / calls, 3);
  return {
    ...r,
    cpu: {
      server: per(before.server, after.server),
      postgres: per(before.postgres, after.postgres),
      backends: per(before.backends, after.backends),
      client: per(before.client, after.client) as number,
    },
  };
}

/** `ratio` to 2 decimals, or undefined when either side is missing or the floor is 0. */
export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined || b === undefined || b === 0) return undefined;
  return round(a / b);
}

// The bench's own instruments (test/bench/measure.ts, profile-top.ts): what
// they read from /proc and how they add it up. No timing is asserted.
import { spawn, spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import {
  BackendCpu,
  clusterCpuMs,
  drive,
  parseStat,
  percentile,
  processCpuMs,
  ratio,
  rssMiB,
  withCpu,
} from "./measure.js";
import { placeOf, selfSizes, selfTimes } from "./profile-top.js";

const linux = process.platform === "linux";

describe("bench instruments", () => {
  it("reads utime+stime, cutime+cstime and the parent from a stat line whose name has spaces and parentheses", () => {
    // Fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime ...
    const line =
      "4242 (node (worker) 1) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 11 0";
    expect(parseStat(line)).toEqual({ ppid: 17, cpuTicks: 300, childTicks: 10 });
  });

  it.runIf(linux)(
    "counts CPU of children that have already exited, as a cluster's reaped backends",
    () => {
      const before = clusterCpuMs(process.pid) as number;
      // A child that burns about 300 ms of CPU and is reaped before we look again.
      const r = spawnSync(process.execPath, [
        "-e",
        "const t = process.cpuUsage(); while (process.cpuUsage(t).user < 300000) {}",
      ]);
      expect(r.status).toBe(0);
      const after = clusterCpuMs(process.pid) as number;
      expect(after - before).toBeGreaterThanOrEqual(250);
      // The process's own figure leaves its children out.
      expect(processCpuMs(process.pid)).toBeLessThan(after);
      expect(rssMiB(process.pid)).toBeGreaterThan(1);
    },
  );

  it.runIf(linux)(
    "counts the CPU of the backends of one database, by process title, after they exit too",
    async () => {
      // Children of this process stand in for a postmaster's backends: one
      // whose command line names the database (as a backend's title does)
      // burns CPU and exits; one naming another database is left out.
      const burn = (title: string, ms: number) =>
        spawn(process.execPath, [
          "-e",
          `const t = process.cpuUsage(); while (process.cpuUsage(t).user < ${ms * 1000}) {} setTimeout(() => {}, 300)`,
          title,
        ]);
      const meter = new BackendCpu(process.pid, "benchdb");
      const otherMeter = new BackendCpu(process.pid, "otherdb");
      const [before, otherBefore] = [meter.totalMs(), otherMeter.totalMs()];
      const mine = burn(" benchdb [local] idle", 100);
      const other = burn(" otherdb [local] idle", 600);
      const polling = setInterval(() => {
        meter.poll();
        otherMeter.poll();
      }, 50);
      await Promise.all(
        [mine, other].map((c) => new Promise((resolve) => c.once("exit", resolve))),
      );
      clearInterval(polling);
      const spent = meter.totalMs() - before;
      const otherSpent = otherMeter.totalMs() - otherBefore;
      // Its 100 ms (plus Node's start-up), and not the other's 600.
      expect(spent).toBeGreaterThanOrEqual(80);
      expect(otherSpent - spent).toBeGreaterThanOrEqual(300);
    },
    120_000,
  );

  it("divides the CPU spent during a drive by its calls, and sorts latencies", async () => {
    const r = await withCpu({}, () =>
      drive(20, 4, async (i) => {
        const t = process.cpuUsage();
        while (process.cpuUsage(t).user < 2000) {}
        if (i === 7) throw new Error("one failure");
      }),
    );
    expect(r.failures).toBe(1);
    expect(r.latencies).toHaveLength(20);
    expect([...r.latencies].sort((a, b) => a - b)).toEqual(r.latencies);
    // About 2 ms of this process's CPU per call; server and Postgres were not asked for.
    expect(r.cpu.client).toBeGreaterThanOrEqual(1.5);
    expect(r.cpu.server).toBeUndefined();
    expect(r.cpu.postgres).toBeUndefined();
  });

  it("takes percentiles and ratios as the tables print them", () => {
    const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
    expect(percentile(sorted, 50)).toBe(51);
    expect(percentile(sorted, 99)).toBe(100);
    expect(percentile([], 50)).toBeNaN();
    expect(ratio(3, 2)).toBe(1.5);
    expect(ratio(3, 0)).toBeUndefined();
    expect(ratio(undefined, 2)).toBeUndefined();
  });

  it("sums a CPU profile's self time per node and names places by package or source file", () => {
    const self = selfTimes({
      nodes: [],
      samples: [1, 2, 1, 1],
      timeDeltas: [0, 1000, 2000, 3000],
    });
    // Each sample lasts until the next one; the last has no end.
    expect(self.get(1)).toBe(1 + 3);
    expect(self.get(2)).toBe(2);
    expect(placeOf("file:///w/node_modules/@connectrpc/connect/dist/esm/x.js")).toBe(
      "@connectrpc/connect",
    );
    expect(placeOf("file:///w/node_modules/pg/lib/client.js")).toBe("pg");
    expect(placeOf("file:///w/src/rpc/http.ts")).toBe("src/rpc/http.ts");
    expect(placeOf("node:internal/http2/core")).toBe("node:internal/http2/core");
    expect(placeOf("")).toBe("(native)");
  });

  it("sums an allocation profile's bytes per function over every place in the call tree it appears", () => {
    const frame = (functionName: string, url: string, lineNumber = 0) => ({
      functionName,
      url,
      lineNumber,
    });
    const leaf = (f: ReturnType<typeof frame>, selfSize: number) => ({
      callFrame: f,
      selfSize,
      children: [],
    });
    const encode = frame("encode", "file:///w/node_modules/@bufbuild/protobuf/x.js", 9);
    const sizes = selfSizes({
      head: {
        callFrame: frame("(root)", ""),
        selfSize: 0,
        children: [
          {
            callFrame: frame("handle", "file:///w/src/rpc/http.ts"),
            selfSize: 100,
            children: [leaf(encode, 30)],
          },
          leaf(encode, 12),
        ],
      },
    });
    expect(sizes.get("encode  @bufbuild/protobuf:10")?.bytes).toBe(42);
    expect(sizes.get("handle  src/rpc/http.ts:1")?.bytes).toBe(100);
    expect(sizes.get("(root)  (native):1")?.bytes).toBe(0);
  });
});

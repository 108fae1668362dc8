/**
 * `node --import tsx test/bench/profile-top.ts FILE [N]`: where a V8
 * profile spends, the N functions with the most and the sums by package or
 * source file:
 * - a CPU profile (`.cpuprofile`, from BENCH_SERVER_FLAGS="--cpu-prof
 *   --cpu-prof-dir=DIR" on `npm run bench`): self time, as shares of the
 *   time the thread was not idle. V8 samples wall time: a thread taken off
 *   the CPU inside a system call (a socket write that wakes Postgres, on a
 *   busy machine) counts as time in that call (`writev`, `writeBuffer`);
 * - an allocation profile (`.heapprofile`, from test/bench/allocations.ts):
 *   bytes allocated by each function itself, garbage included.
 */
import { readFileSync } from "node:fs";

type Node = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[] };
type CallFrame = Node["callFrame"];
type HeapNode = { callFrame: CallFrame; selfSize: number; children: HeapNode[] };
type HeapProfile = { head: HeapNode };

/** Self time in ms per profile node id. */
export function selfTimes(p: Profile): Map<number, number> {
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i] as number;
    // A sample's delta is the time until the next one.
    const dt = (p.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  return self;
}

/** node_modules/<package> or the path inside the repository. */
export function placeOf(url: string): string {
  if (!url) return "(native)";
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    return `${rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]}`;
  }
  if (url.startsWith("node:")) return url;
  const src = url.search(/\/(src|gen|test)\//);
  return src >= 0 ? url.slice(src + 1) : url;
}

/** Bytes each function allocated itself, summed over the call tree, by name and place. */
export function selfSizes(p: HeapProfile): Map<string, { frame: CallFrame; bytes: number }> {
  const out = new Map<string, { frame: CallFrame; bytes: number }>();
  const stack = [p.head];
  for (let n = stack.pop(); n; n = stack.pop()) {
    const key = frameName(n.callFrame);
    const seen = out.get(key);
    if (seen) seen.bytes += n.selfSize;
    else out.set(key, { frame: n.callFrame, bytes: n.selfSize });
    stack.push(...n.children);
  }
  return out;
}

const frameName = (f: CallFrame) =>
  `${f.functionName || "(anonymous)"}  ${placeOf(f.url)}:${f.lineNumber + 1}`;

/** The top entries of each map, as shares of `total`, in `unit`s. */
function show(
  tables: [title: string, Map<string, number>][],
  total: number,
  top: number,
  unit: (v: number) => string,
) {
  for (const [title, m] of tables) {
    console.log(`\n${title}`);
    for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${unit(v).padStart(10)}  ${k}`);
    }
  }
}

function add(m: Map<string, number>, k: string, v: number) {
  m.set(k, (m.get(k) ?? 0) + v);
}

function main() {
  const file = process.argv[2];
  if (!file) throw new Error("usage: profile-top.ts FILE.cpuprofile|FILE.heapprofile [N]");
  const top = Number(process.argv[3] ?? 30);
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile | HeapProfile;
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  if ("head" in p) {
    let total = 0;
    for (const [name, { frame, bytes }] of selfSizes(p)) {
      total += bytes;
      add(byFunction, name, bytes);
      add(byPlace, placeOf(frame.url), bytes);
    }
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
    console.log(`${file}: ${mib(total)} allocated (sampled)`);
    show(
      [
        ["bytes allocated by function", byFunction],
        ["bytes allocated by package or file", byPlace],
      ],
      total,
      top,
      mib,
    );
    return;
  }
  const self = selfTimes(p);
  const idle = p.nodes
    .filter((n) => n.callFrame.functionName === "(idle)")
    .reduce((a, n) => a + (self.get(n.id) ?? 0), 0);
  const total = [...self.values()].reduce((a, b) => a + b, 0) - idle;
  for (const n of p.nodes) {
    if (n.callFrame.functionName === "(idle)") continue;
    const ms = self.get(n.id) ?? 0;
    add(byFunction, frameName(n.callFrame), ms);
    add(byPlace, placeOf(n.callFrame.url), ms);
  }
  console.log(
    `${file}: ${(total / 1000).toFixed(1)} s busy (shares below), ${(idle / 1000).toFixed(1)} s idle`,
  );
  show(
    [
      ["self time by function", byFunction],
      ["self time by package or file", byPlace],
    ],
    total,
    top,
    (ms) => `${ms.toFixed(0)} ms`,
  );
}

if (process.argv[1]?.endsWith("profile-top.ts")) main();

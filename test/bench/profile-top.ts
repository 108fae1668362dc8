/**
 * `node --import tsx test/bench/profile-top.ts FILE.cpuprofile [N]`: where a
 * V8 CPU profile (from BENCH_SERVER_FLAGS="--cpu-prof --cpu-prof-dir=DIR"
 * on `npm run bench`) spends its time: the N functions with the most self
 * time, and self time summed by package or source file, as shares of the
 * time the thread was not idle. V8 samples wall time: a thread taken off
 * the CPU inside a system call (a socket write that wakes Postgres, on a
 * busy machine) counts as time in that call (`writev`, `writeBuffer`).
 */
import { readFileSync } from "node:fs";

type Node = {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
};
type Profile = { nodes: Node[]; samples: number[]; timeDeltas: number[] };

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

function main() {
  const file = process.argv[2];
  if (!file) throw new Error("usage: profile-top.ts FILE.cpuprofile [N]");
  const top = Number(process.argv[3] ?? 30);
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const self = selfTimes(p);
  const idle = p.nodes
    .filter((n) => n.callFrame.functionName === "(idle)")
    .reduce((a, n) => a + (self.get(n.id) ?? 0), 0);
  const total = [...self.values()].reduce((a, b) => a + b, 0) - idle;
  const byFunction = new Map<string, number>();
  const byPlace = new Map<string, number>();
  for (const n of p.nodes) {
    if (n.callFrame.functionName === "(idle)") continue;
    const ms = self.get(n.id) ?? 0;
    const place = placeOf(n.callFrame.url);
    const name = `${n.callFrame.functionName || "(anonymous)"}  ${place}:${n.callFrame.lineNumber + 1}`;
    byFunction.set(name, (byFunction.get(name) ?? 0) + ms);
    byPlace.set(place, (byPlace.get(place) ?? 0) + ms);
  }
  const show = (title: string, m: Map<string, number>) => {
    console.log(`\n${title}`);
    for (const [k, ms] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
      console.log(
        `${((ms / total) * 100).toFixed(1).padStart(5)}%  ${ms.toFixed(0).padStart(7)} ms  ${k}`,
      );
    }
  };
  console.log(
    `${file}: ${(total / 1000).toFixed(1)} s busy (shares below), ${(idle / 1000).toFixed(1)} s idle`,
  );
  show("self time by function", byFunction);
  show("self time by package or file", byPlace);
}

if (process.argv[1]?.endsWith("profile-top.ts")) main();

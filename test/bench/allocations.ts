/**
 * What a server allocates, for `npm run bench`:
 * `BENCH_SERVER_FLAGS="--import ./test/bench/allocations.ts"` (or
 * BENCH_NOOP_FLAGS for the no-op floor) samples every allocation while the
 * process runs, and writes `allocations.<pid>.heapprofile` into
 * BENCH_ALLOCATIONS_DIR (default: the working directory) as it exits. Read
 * it with `node --import tsx test/bench/profile-top.ts FILE [N]`.
 *
 * Node's own `--heap-prof` keeps only what is still live at exit; this asks
 * V8's sampling heap profiler to keep what the garbage collector took too,
 * which is what a server's per-call garbage is. V8 has the option
 * (`includeObjectsCollectedByMajorGC`, `…MinorGC`); Node has no flag for
 * it, so the hook sets it through the inspector protocol.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector";
import { join } from "node:path";

const session = new Session();
session.connect();
session.post("HeapProfiler.startSampling", {
  samplingInterval: 4096,
  includeObjectsCollectedByMajorGC: true,
  includeObjectsCollectedByMinorGC: true,
});
process.on("exit", () => {
  // An in-process session answers synchronously, so this runs before exit.
  session.post("HeapProfiler.stopSampling", (err, result) => {
    if (err) return console.error("allocation profile not written:", err.message);
    const dir = process.env.BENCH_ALLOCATIONS_DIR ?? ".";
    writeFileSync(
      join(dir, `allocations.${process.pid}.heapprofile`),
      JSON.stringify(result.profile),
    );
  });
});

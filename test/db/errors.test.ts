import { readdirSync, readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  mustRetry,
  rejectionFromDatabase,
  rejectionOfOutcome,
  SQLSTATE_RETRY,
} from "../../src/db/errors.js";
import { DATABASE_REASONS, REASONS } from "../../src/domain/rejection.js";

/**
 * The one channel from SQL to a client (src/db/errors.ts) only works if the
 * reason strings typed inside SQL are ones the TypeScript list knows: an
 * unknown one would reach clients as INTERNAL. These tests read the
 * function files themselves.
 */

const dir = new URL("../../src/db/functions/", import.meta.url);
const sql = readdirSync(dir)
  .filter((f) => f.endsWith(".sql"))
  .map((f) => ({ file: f, text: readFileSync(new URL(f, dir), "utf8") }));

/** Every `rejection(...)` call in the function files, with its first argument as written. */
function rejectionCalls(): { file: string; argument: string }[] {
  return sql.flatMap(({ file, text }) =>
    [...text.matchAll(/\brejection\(\s*([^,)]*)/g)]
      .map((m) => ({ file, argument: (m[1] as string).trim() }))
      // The function's own definition.
      .filter((c) => !c.argument.startsWith("p_reason")),
  );
}

describe("reasons decided in SQL", () => {
  it("are named as literals, so they can be checked", () => {
    const calls = rejectionCalls();
    expect(calls.length).toBeGreaterThan(0);
    for (const c of calls)
      expect(c, c.file).toMatchObject({ argument: expect.stringMatching(/^'[A-Z_]+'$/) });
  });

  it("are exactly DATABASE_REASONS, each one a reason src/domain/rejection.ts knows", () => {
    const named = new Set(rejectionCalls().map((c) => c.argument.slice(1, -1)));
    expect([...named].sort()).toEqual([...DATABASE_REASONS].sort());
    for (const reason of named) expect(Object.keys(REASONS)).toContain(reason);
  });

  it("reach the client with their own reason, never as INTERNAL", () => {
    for (const reason of DATABASE_REASONS) {
      expect(rejectionOfOutcome({ reason, message: "m" }).reason).toBe(reason);
    }
    expect(rejectionOfOutcome({ reason: "NOT_A_REASON", message: "m" }).reason).toBe("INTERNAL");
  });
});

describe("SQLSTATEs the writes raise to be retried", () => {
  it("are exactly the ones mustRetry knows", () => {
    const raised = new Set(
      sql.flatMap(({ text }) =>
        [...text.matchAll(/ERRCODE\s*=\s*'([0-9A-Z]{5})'/g)].map((m) => m[1] as string),
      ),
    );
    expect([...raised].sort()).toEqual([...SQLSTATE_RETRY.keys()].sort());
    for (const code of raised)
      expect(mustRetry(Object.assign(new Error("x"), { code }))).toBe(true);
  });

  it("reach a client whose retries ran out as UNAVAILABLE, never as INTERNAL", () => {
    // serviceChanged() (HF001) from a ListSlots read under catalog churn, say.
    for (const code of SQLSTATE_RETRY.keys()) {
      const r = rejectionFromDatabase(Object.assign(new Error("changed"), { code }));
      expect(r?.reason, code).toBe("UNAVAILABLE");
    }
  });
});

import { describe, expect, it } from "vitest";
import { TenantWrites } from "../../src/booking/tenant-writes.js";
import { Rejection } from "../../src/domain/rejection.js";

/** A write that runs until `finish` is called, recording when it started. */
function pending(started: string[], name: string) {
  let finish = () => {};
  const write = () =>
    new Promise<string>((resolve) => {
      started.push(name);
      finish = () => resolve(name);
    });
  return { write, finish: () => finish() };
}

describe("TenantWrites", () => {
  it("runs at most `lanes` of a tenant's writes at once, the rest in order of arrival; other tenants apart", async () => {
    const turns = new TenantWrites(2, 60_000);
    const started: string[] = [];
    const w = ["a1", "a2", "a3", "a4"].map((n) => pending(started, n));
    const runs = w.map((p) => turns.run("a", undefined, p.write));
    const b = pending(started, "b1");
    const other = turns.run("b", undefined, b.write);
    await Promise.resolve();
    expect(started).toEqual(["a1", "a2", "b1"]);
    w[1]?.finish();
    await runs[1];
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(["a1", "a2", "b1", "a3"]);
    w[0]?.finish();
    await runs[0];
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(["a1", "a2", "b1", "a3", "a4"]);
    for (const p of [...w, b]) p.finish();
    expect(await Promise.all([...runs, other])).toEqual(["a1", "a2", "a3", "a4", "b1"]);
  });

  it("gives a write's turn back when it fails", async () => {
    const turns = new TenantWrites(1, 60_000);
    await expect(
      turns.run("a", undefined, () => Promise.reject(new Error("boom"))),
    ).rejects.toThrow("boom");
    expect(await turns.run("a", undefined, async () => "next")).toBe("next");
  });

  it("drops a waiting write whose call ended, and answers UNAVAILABLE to one that waited too long; neither runs", async () => {
    const turns = new TenantWrites(1, 50);
    const started: string[] = [];
    const first = pending(started, "first");
    const running = turns.run("a", undefined, first.write);
    const cancelled = new AbortController();
    const dropped = turns.run("a", cancelled.signal, async () => {
      started.push("dropped");
    });
    cancelled.abort(new Error("caller went away"));
    await expect(dropped).rejects.toThrow("caller went away");
    const late = turns.run("a", undefined, async () => {
      started.push("late");
    });
    await expect(late).rejects.toBeInstanceOf(Rejection);
    await expect(late).rejects.toMatchObject({ reason: "UNAVAILABLE" });
    first.finish();
    await running;
    expect(started).toEqual(["first"]);
    // The lane is free again.
    expect(await turns.run("a", undefined, async () => "after")).toBe("after");
  });
});

import { describe, expect, it } from "vitest";
import { Turns } from "../src/turns.js";

/** Whether `p` has settled by the time the microtasks queued now have run, and with what. */
async function settled<T>(p: Promise<T>): Promise<{ value: T } | "pending"> {
  const pending = Symbol();
  const first = await Promise.race([
    p,
    new Promise<typeof pending>((r) => setImmediate(r, pending)),
  ]);
  return first === pending ? "pending" : { value: first as T };
}

describe("Turns (as the calendar feeds render: two at once, two waiting)", () => {
  it("lets two render at once, queues the rest first come first served, and turns away a full queue", async () => {
    const slots = new Turns(2, 2);
    expect(await slots.acquire()).toBe(true);
    expect(await slots.acquire()).toBe(true);
    const third = slots.acquire();
    const fourth = slots.acquire();
    expect(await settled(third)).toBe("pending");
    // The queue is full: answered at once, without a turn.
    expect(await slots.acquire()).toBe(false);
    slots.release();
    expect(await settled(third)).toEqual({ value: true });
    expect(await settled(fourth)).toBe("pending");
    slots.release();
    expect(await settled(fourth)).toEqual({ value: true });
    // Each slot is handed over, never freed in between: two run, none more.
    const fifth = slots.acquire();
    expect(await settled(fifth)).toBe("pending");
    // The third and the fourth end: the fifth renders, one slot is free.
    slots.release();
    slots.release();
    expect(await settled(fifth)).toEqual({ value: true });
    expect(await slots.acquire()).toBe(true);
    expect(await settled(slots.acquire())).toBe("pending");
  });
});

import { describe, expect, it } from "vitest";
import {
  BEGINNING,
  decodeCursor,
  encodeCursor,
  isAfter,
  isEventType,
} from "../../src/domain/events.js";

describe("event cursors", () => {
  it("round-trip opaque positions, including large transaction ids", () => {
    for (const p of [
      BEGINNING,
      { xid: 54341n, seq: 600n },
      { xid: 2n ** 40n + 7n, seq: 2n ** 50n },
    ]) {
      const c = encodeCursor(p);
      expect(c).toMatch(/^ev1_[0-9a-z]+_[0-9a-z]+$/);
      expect(decodeCursor(c)).toEqual(p);
    }
  });

  it("refuse anything else", () => {
    for (const c of [
      "",
      "ev1_",
      "ev1_1",
      "ev2_1_1",
      "ev1_1_1_1",
      "ev1_-1_2",
      "ev1_ZZ_1",
      `ev1_${"z".repeat(15)}_1`,
      // Fourteen digits fit the pattern but not the 64-bit columns.
      `ev1_${"z".repeat(14)}_1`,
      `ev1_1_${"z".repeat(14)}`,
    ]) {
      expect(decodeCursor(c)).toBeUndefined();
    }
  });

  it("order by transaction, then sequence", () => {
    expect(isAfter({ xid: 2n, seq: 1n }, { xid: 1n, seq: 99n })).toBe(true);
    expect(isAfter({ xid: 1n, seq: 99n }, { xid: 2n, seq: 1n })).toBe(false);
    expect(isAfter({ xid: 1n, seq: 2n }, { xid: 1n, seq: 1n })).toBe(true);
    expect(isAfter({ xid: 1n, seq: 1n }, { xid: 1n, seq: 1n })).toBe(false);
  });

  it("know the event types", () => {
    expect(isEventType("booking.rescheduled")).toBe(true);
    expect(isEventType("webhook.disabled")).toBe(true);
    expect(isEventType("booking.exploded")).toBe(false);
  });
});

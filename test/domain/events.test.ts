import { describe, expect, it } from "vitest";
import {
  BEGINNING,
  cursorPosition,
  decodeCursor,
  encodeCursor,
  isAfter,
  isEventType,
} from "../../src/domain/events.js";
import type { Rejection } from "../../src/domain/rejection.js";

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

  it("are refused ahead of the outbox's head, and expired before what retention deleted", () => {
    const head = { xid: 1000n, seq: 0n };
    const lastSeq = 200_000n;
    const at = (cursor: string, pruned?: { xid: bigint; seq: bigint }) => {
      try {
        return cursorPosition(cursor, { head, lastSeq, pruned });
      } catch (e) {
        return (e as Rejection).reason;
      }
    };
    // Issued: an event's (its transaction is before the head), or the head itself.
    expect(at(encodeCursor({ xid: 999n, seq: 123456n }))).toEqual({ xid: 999n, seq: 123456n });
    expect(at(encodeCursor(head))).toEqual(head);
    expect(at(encodeCursor(BEGINNING))).toEqual(BEGINNING);
    // Never issued: nothing of the head's transaction or later is readable yet.
    expect(at(encodeCursor({ xid: 1000n, seq: 1n }))).toBe("INVALID_CURSOR");
    expect(at(encodeCursor({ xid: 1001n, seq: 0n }))).toBe("INVALID_CURSOR");
    expect(at(`ev1_${"z".repeat(12)}_0`)).toBe("INVALID_CURSOR");
    // A real transaction, but a sequence number not handed out yet.
    expect(at(encodeCursor({ xid: 999n, seq: lastSeq }))).toEqual({ xid: 999n, seq: lastSeq });
    expect(at(encodeCursor({ xid: 999n, seq: lastSeq + 1n }))).toBe("INVALID_CURSOR");
    expect(at(`ev1_rr_${"z".repeat(12)}`)).toBe("INVALID_CURSOR");
    expect(at("garbage")).toBe("INVALID_CURSOR");
    const pruned = { xid: 500n, seq: 7n };
    expect(at(encodeCursor({ xid: 500n, seq: 6n }), pruned)).toBe("CURSOR_EXPIRED");
    expect(at(encodeCursor(pruned), pruned)).toEqual(pruned);
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

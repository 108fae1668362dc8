import { describe, expect, it } from "vitest";
import { BEGINNING, cursorPosition, isAfter, isEventType } from "../../src/domain/events.js";
import type { Rejection } from "../../src/domain/rejection.js";
import { cursorCipher, decodeCursor, encodeCursor } from "../../src/events/cursors.js";

const secret = Buffer.alloc(32, 7);
const cipher = cursorCipher(secret, "ten_a");
const encode = (p: { xid: bigint; seq: bigint }) => encodeCursor(p, cipher);

describe("event cursors", () => {
  it("round-trip opaque positions, including large transaction ids", () => {
    for (const p of [
      BEGINNING,
      { xid: 54341n, seq: 600n },
      { xid: 2n ** 40n + 7n, seq: 2n ** 50n },
      { xid: 2n ** 63n - 1n, seq: 2n ** 63n - 1n },
    ]) {
      const c = encode(p);
      expect(c).toMatch(/^ev2_[A-Za-z0-9_-]{22}$/);
      expect(decodeCursor(c, cipher)).toEqual(p);
      // The same position, the same cursor, on every instance.
      expect(encodeCursor(p, cursorCipher(secret, "ten_a"))).toBe(c);
    }
  });

  it("show nothing of the position, and name nothing for another tenant", () => {
    // Consecutive positions share no visible part.
    const a = encode({ xid: 1000n, seq: 41n }).slice(4);
    const b = encode({ xid: 1000n, seq: 42n }).slice(4);
    expect([...a].filter((ch, i) => ch === b[i]).length).toBeLessThan(8);
    const other = cursorCipher(secret, "ten_b");
    const p = { xid: 1000n, seq: 42n };
    expect(encodeCursor(p, other)).not.toBe(encode(p));
    expect(decodeCursor(encode(p), other)).not.toEqual(p);
    // Another secret (another deployment): another cursor.
    expect(encodeCursor(p, cursorCipher(Buffer.alloc(32, 8), "ten_a"))).not.toBe(encode(p));
  });

  it("refuse anything else", () => {
    const issued = encode({ xid: 54341n, seq: 600n });
    // The last character carries 4 unused bits: only the canonical form is taken.
    const last = issued.at(-1) as string;
    const sibling = issued.slice(0, -1) + String.fromCharCode(last.charCodeAt(0) ^ 1);
    for (const c of [
      "",
      "ev2_",
      "ev1_1_1",
      "ev1_2bc_4",
      `${issued}A`,
      issued.slice(0, -1),
      `ev2_${"*".repeat(22)}`,
      sibling,
    ]) {
      expect(decodeCursor(c, cipher)).toBeUndefined();
    }
  });

  it("are refused ahead of the outbox's head, and expired before what retention deleted", () => {
    const head = { xid: 1000n, seq: 0n };
    const lastSeq = 200_000n;
    const at = (cursor: string, pruned?: { xid: bigint; seq: bigint }) => {
      try {
        return cursorPosition(decodeCursor(cursor, cipher), {
          head,
          lastSeq,
          pruned,
          own: BEGINNING,
        });
      } catch (e) {
        return (e as Rejection).reason;
      }
    };
    // Issued: an event's (its transaction is before the head), or the head itself.
    expect(at(encode({ xid: 999n, seq: 123456n }))).toEqual({ xid: 999n, seq: 123456n });
    expect(at(encode(head))).toEqual(head);
    expect(at(encode(BEGINNING))).toEqual(BEGINNING);
    // Never issued: nothing of the head's transaction or later is readable yet.
    expect(at(encode({ xid: 1000n, seq: 1n }))).toBe("INVALID_CURSOR");
    expect(at(encode({ xid: 1001n, seq: 0n }))).toBe("INVALID_CURSOR");
    expect(at("ev1_zzzzzzzzzzzz_0")).toBe("INVALID_CURSOR");
    // Another tenant's cursor, even for a position this one could read.
    expect(at(encodeCursor({ xid: 999n, seq: 1n }, cursorCipher(secret, "ten_b")))).toBe(
      "INVALID_CURSOR",
    );
    // A real transaction, but a sequence number not handed out yet.
    expect(at(encode({ xid: 999n, seq: lastSeq }))).toEqual({ xid: 999n, seq: lastSeq });
    expect(at(encode({ xid: 999n, seq: lastSeq + 1n }))).toBe("INVALID_CURSOR");
    expect(at("garbage")).toBe("INVALID_CURSOR");
    const pruned = { xid: 500n, seq: 7n };
    expect(at(encode({ xid: 500n, seq: 6n }), pruned)).toBe("CURSOR_EXPIRED");
    expect(at(encode(pruned), pruned)).toEqual(pruned);
    // The beginning means "from the oldest event kept": retention never passes it.
    expect(at(encode(BEGINNING), pruned)).toEqual(BEGINNING);
    expect(at(encode({ xid: 0n, seq: 1n }), pruned)).toBe("CURSOR_EXPIRED");
    // Text of any length that is not a cursor is refused as one.
    expect(at(`ev2_${"A".repeat(97)}`)).toBe("INVALID_CURSOR");
    expect(at("ev2_".repeat(10_000))).toBe("INVALID_CURSOR");
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

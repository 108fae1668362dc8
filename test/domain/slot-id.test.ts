import { describe, expect, it } from "vitest";
import { type SlotRef, SlotSigner } from "../../src/domain/slot-id.js";

const signer = new SlotSigner(Buffer.alloc(32, 7));
const slot: SlotRef = {
  serviceId: "svc_01a2086f3c1e0c8f1d2e3a4b5c6d",
  resourceId: "rsc_01a2086f3c1e0c8f1d2e3a4b5c6e",
  startMs: Date.UTC(2031, 0, 6, 9),
  endMs: Date.UTC(2031, 0, 6, 10),
  policyVersion: 3,
};

describe("slot ids", () => {
  it("round-trip, URL-safe and short", () => {
    const id = signer.encode("ten_a", slot);
    expect(id).toMatch(/^slot_[A-Za-z0-9_-]+$/);
    expect(id.length).toBeLessThan(80);
    expect(signer.decode("ten_a", id)).toEqual(slot);
  });

  it("keep their format, so ids already handed out stay valid", () => {
    // Made by the code before ids were built in one buffer per batch.
    const issued =
      "slot_AQABoghvPB4Mjx0uOktcbQABoghvPB4Mjx0uOktcbgAAAAMAAAHATiUOgAA27oDqwKTqCiyEYQ";
    expect(signer.encode("ten_a", slot)).toBe(issued);
    expect(signer.decode("ten_a", issued)).toEqual(slot);
  });

  it("make a batch that each decode to their own slot", () => {
    const slots = Array.from({ length: 50 }, (_, i) => ({
      startMs: slot.startMs + i * 900_000,
      endMs: slot.startMs + i * 900_000 + 1_800_000,
    }));
    const ids = signer.idsFor("ten_a", slot.serviceId, slot.resourceId, 3, slots);
    expect(new Set(ids).size).toBe(50);
    ids.forEach((id, i) => {
      expect(signer.decode("ten_a", id)).toEqual({ ...slot, ...slots[i] });
    });
  });

  it("carry ids of any shape", () => {
    const odd = { ...slot, serviceId: "svc_a", resourceId: "room-7" };
    expect(signer.decode("ten_a", signer.encode("ten_a", odd))).toEqual(odd);
  });

  it("refuse another tenant, another key, and any change to the text", () => {
    const id = signer.encode("ten_a", slot);
    expect(signer.decode("ten_b", id)).toBeUndefined();
    expect(new SlotSigner(Buffer.alloc(32, 8)).decode("ten_a", id)).toBeUndefined();
    for (let i = 5; i < id.length; i++) {
      const c = id[i] === "A" ? "B" : "A";
      expect(signer.decode("ten_a", id.slice(0, i) + c + id.slice(i + 1))).toBeUndefined();
    }
    // A stray trailing character decodes to the same bytes in base64: still refused.
    for (const bad of [`${id}x`, `${id}.x`, "slot_", "slot_AA", "nonsense", id.slice(0, -4)]) {
      expect(signer.decode("ten_a", bad)).toBeUndefined();
    }
  });
});

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { ListSlotsResponseSchema, type Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { slotOf } from "../../src/rpc/convert.js";
import { encodeSlots } from "../../src/rpc/slot-wire.js";

/** toBinary's bytes for a response holding only these slots. */
const reference = (slots: Slot[]) =>
  toBinary(ListSlotsResponseSchema, create(ListSlotsResponseSchema, { slots }));

const slot = (over: Partial<Parameters<typeof slotOf>[0]> = {}) =>
  slotOf({
    resourceId: "rsc_0123456789abcdef0123456789ab",
    startMs: Date.UTC(2032, 0, 5, 9),
    endMs: Date.UTC(2032, 0, 5, 9, 30),
    remaining: 1,
    slotId: "slot_AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    timeZone: "Europe/Berlin",
    ...over,
  });

describe("encodeSlots", () => {
  it("writes the bytes toBinary writes", () => {
    const slots = [
      slot(),
      slot({ remaining: 0, timeZone: "" }),
      slot({ remaining: 300, startMs: 1234, endMs: 999_999 }),
      slot({ startMs: 0, endMs: 1000, remaining: -1 }),
      slot({ startMs: -1500, endMs: -1, resourceId: "", slotId: "" }),
      slot({ resourceId: "ünïcödé ☃ 𝄞", timeZone: "America/Argentina/ComodRivadavia" }),
      slot({ slotId: "x".repeat(200), startMs: 253402300799999, endMs: 253402300799999 }),
    ];
    expect(Buffer.from(encodeSlots(slots))).toEqual(Buffer.from(reference(slots)));
    for (const s of slots) {
      expect(Buffer.from(encodeSlots([s]))).toEqual(Buffer.from(reference([s])));
    }
    expect(encodeSlots([]).length).toBe(0);
  });

  it("writes random slots as toBinary does", () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const slots = Array.from({ length: 500 }, () => {
      const startMs = rnd(2 ** 31) * 1000 + rnd(1000) * rnd(2);
      return slot({
        startMs,
        endMs: startMs + rnd(10 ** 9),
        remaining: rnd(3) === 0 ? 0 : rnd(2 ** 20),
        slotId: "s".repeat(rnd(300)),
        resourceId: "é".repeat(rnd(70)),
      });
    });
    expect(Buffer.from(encodeSlots(slots))).toEqual(Buffer.from(reference(slots)));
  });

  it("goes out as unknown fields that decode to the same slots", () => {
    const slots = [slot(), slot({ remaining: 2, startMs: Date.UTC(2032, 0, 6) })];
    const answer = create(ListSlotsResponseSchema, { nextPageToken: "t" });
    answer.$unknown = [
      { no: 1, wireType: WireType.LengthDelimited, data: encodeSlots(slots).subarray(1) },
    ];
    const decoded = fromBinary(ListSlotsResponseSchema, toBinary(ListSlotsResponseSchema, answer));
    expect(decoded.nextPageToken).toBe("t");
    expect(decoded.$unknown).toBeUndefined();
    expect(decoded.slots).toEqual(slots);
  });
});

import { describe, expect, it } from "vitest";
import { z } from "zod";
import { type FieldViolation, Rejection } from "../../src/domain/rejection.js";
import * as v from "../../src/rpc/validate.js";

/** What parseRequest says of `message`: its reason and field violations, or the parsed value. */
function parsed(
  schema: z.ZodType,
  message: unknown,
): { value?: unknown; reason?: string; violations: FieldViolation[] } {
  try {
    return { value: v.parseRequest(schema, message), violations: [] };
  } catch (err) {
    if (!(err instanceof Rejection)) throw err;
    return { reason: err.reason, violations: err.details.fieldViolations ?? [] };
  }
}

describe("metadata", () => {
  const schema = z.object({ metadata: v.metadata });

  it.each([
    [{ a: Number.NaN }, "metadata.a"],
    [{ a: 1, b: Number.POSITIVE_INFINITY }, "metadata.b"],
    [{ list: [1, [2, Number.NEGATIVE_INFINITY]] }, "metadata.list[1][1]"],
    [{ deep: { "a key": { x: Number.NaN } } }, 'metadata.deep["a key"].x'],
    [{ camelCase: Number.NaN }, "metadata.camelCase"],
  ])("refuses a number JSON cannot write, naming where it is: %o", (metadata, field) => {
    const got = parsed(schema, { metadata });
    expect(got.reason).toBe("VALIDATION_ERROR");
    expect(got.violations.map((x) => x.field)).toEqual([field]);
    expect(got.violations[0]?.description).toContain("finite");
  });

  it("keeps nulls, strings that say null, and finite numbers as sent", () => {
    const metadata = { a: null, b: "null", c: [1.5, -0, 1e308], d: { e: null } };
    expect(parsed(schema, { metadata })).toEqual({ value: { metadata }, violations: [] });
  });

  it("counts 16 KiB in UTF-8 bytes, as stored, not in UTF-16 characters", () => {
    const size = (text: string) => Buffer.byteLength(JSON.stringify({ a: text }));
    const ascii = "y".repeat(16_384 - size(""));
    expect(parsed(schema, { metadata: { a: ascii } }).value).toBeDefined();
    expect(parsed(schema, { metadata: { a: `${ascii}y` } }).violations).toHaveLength(1);
    // 16,370 CJK characters: under 16 Ki in UTF-16, 49 KB in UTF-8.
    const got = parsed(schema, { metadata: { a: "字".repeat(16_370) } });
    expect(got.reason).toBe("VALIDATION_ERROR");
    expect(got.violations).toEqual([
      { field: "metadata", description: "must be at most 16 KiB (16384 bytes) as UTF-8 JSON" },
    ]);
    expect(parsed(schema, { metadata: { a: "字".repeat(5_000) } }).value).toBeDefined();
  });
});

describe("timestamps", () => {
  const schema = z.object({ startTime: v.timestampMs, endTime: v.optionalTimestampMs });
  const T = 1_900_000_000n;
  const at = (seconds: bigint, nanos: number) => ({ seconds, nanos });

  it.each([
    1_000_000_000, 2_000_000_000, -1, -1_000_000_000,
  ])("refuses nanos %i rather than move the time", (nanos) => {
    const got = parsed(schema, { startTime: at(T - 1n, nanos), endTime: at(T, nanos) });
    expect(got.reason).toBe("VALIDATION_ERROR");
    expect(got.violations).toEqual([
      { field: "start_time", description: "nanos must be from 0 to 999999999" },
      { field: "end_time", description: "nanos must be from 0 to 999999999" },
    ]);
  });

  it("reads nanos within their range, to the millisecond", () => {
    expect(parsed(schema, { startTime: at(T, 999_999_999), endTime: undefined }).value).toEqual({
      startTime: Number(T) * 1000 + 999,
      endTime: null,
    });
  });
});

describe("nulViolations", () => {
  it("names every text with a NUL character: fields, oneofs, maps and Struct keys as sent", () => {
    const message = {
      $typeName: "x.Request",
      displayName: "ok",
      attendee: { $typeName: "x.Attendee", name: "a\u0000" },
      tags: ["x", "\u0000"],
      choice: { case: "slotId", value: "\u0000" },
      metadata: { note: "\u0000", "a b": { c: ["\u0000"] }, "k\u0000": "v" },
      bytes: new Uint8Array([0]),
    };
    expect(v.nulViolations(message).map((x) => x.field)).toEqual([
      "attendee.name",
      "tags[1]",
      "slot_id",
      "metadata.note",
      'metadata["a b"].c[0]',
      "metadata",
    ]);
    expect(v.nulViolations({ $typeName: "x.Request", name: "fine" })).toEqual([]);
    // A plain object of a message's fields (an Update's), under its field.
    expect(v.nulViolations({ timeZone: "\u0000" }, "resource", true)[0]?.field).toBe(
      "resource.time_zone",
    );
  });

  it("finds a NUL character wherever it is alone: a key, a list item, a oneof, deep in a Struct", () => {
    const base = { $typeName: "x.Request", name: "fine", tags: ["a"], metadata: { a: { b: [1] } } };
    const alone: Array<[Record<string, unknown>, string]> = [
      [{ ...base, metadata: { "k\u0000": 1 } }, "metadata"],
      [{ ...base, tags: ["a", "b\u0000"] }, "tags[1]"],
      [{ ...base, choice: { case: "slotId", value: "\u0000" } }, "slot_id"],
      [{ ...base, metadata: { a: { b: [1, { c: "\u0000" }] } } }, "metadata.a.b[1].c"],
    ];
    for (const [message, field] of alone) {
      expect(v.nulViolations(message).map((x) => x.field)).toEqual([field]);
    }
    expect(v.nulViolations(base)).toEqual([]);
  });
});

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

describe("zod's own checks", () => {
  /** What parseRequest says of `value` as the field `f` of a request. */
  const said = (schema: z.ZodType, value: unknown) =>
    parsed(z.object({ f: schema }), value === undefined ? {} : { f: value }).violations.map(
      (v) => v.description,
    );

  it.each<[string, z.ZodType, unknown, string]>([
    ["a minimum", z.number().min(0), -1, "must be at least 0"],
    ["a maximum", z.number().int().max(50), 51, "must be at most 50"],
    ["a positive number", z.number().positive(), 0, "must be greater than 0"],
    ["a bound below", z.number().lt(5), 5, "must be less than 5"],
    ["a whole number", z.number().int(), 1.5, "must be a whole number"],
    ["a multiple", z.number().multipleOf(5), 7, "must be a multiple of 5"],
    ["a number, not text", z.number(), "abc", "must be a number"],
    ["a number, not NaN", z.coerce.number(), "abc", "must be a number"],
    ["a finite number", z.number(), Number.POSITIVE_INFINITY, "must be a finite number"],
    ["a string", z.string(), 5, "must be a string"],
    ["a boolean", z.boolean(), "yes", "must be true or false"],
    ["a list", z.array(z.string()), "a", "must be a list"],
    ["an object", z.object({}), 1, "must be an object"],
    ["a required field", z.string(), undefined, "is required"],
    ["a shortest text", z.string().min(3), "ab", "must be at least 3 characters"],
    ["a non-empty text", z.string().min(1), "", "must not be empty"],
    ["a longest text", z.string().max(2), "abc", "must be at most 2 characters"],
    ["an exact length", z.string().length(2), "abc", "must be exactly 2 characters"],
    ["a longest list", z.array(z.number()).max(1), [1, 2], "must list at most 1 item"],
    ["a shortest list", z.array(z.number()).min(2), [1], "must list at least 2 items"],
    ["a non-empty list", z.array(z.number()).min(1), [], "must not be empty"],
    ["one of some values", z.enum(["a", "b", "c"]), "d", 'must be one of "a", "b" or "c"'],
    ["one value", z.literal("a"), "b", 'must be "a"'],
    ["a pattern", z.string().regex(/^x+$/), "y", "must match /^x+$/"],
    ["a prefix", z.string().startsWith("hf_"), "x", 'must start with "hf_"'],
    ["an email address", z.string().email(), "x", "must be an email address"],
    ["a URL", z.string().url(), "x", "must be a URL"],
    [
      "known keys only",
      z.strictObject({ a: z.number().optional() }),
      { b: 1 },
      'must not have the key "b"',
    ],
    ["a message of its own", z.number().max(10, "must be ten or less"), 11, "must be ten or less"],
  ])("say what %s must be, in the house style", (_, schema, value, message) => {
    expect(said(schema, value)).toEqual([message]);
  });
});

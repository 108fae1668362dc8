import { type DescMessage, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ListSlotsRequestSchema } from "../../gen/holdfast/v1/availability_pb.js";
import { CreateHoldRequestSchema } from "../../gen/holdfast/v1/booking_pb.js";
import { explainJsonError, rolledOverTimestamp } from "../../src/rpc/json-errors.js";

/** What the edge makes of a JSON body that protobuf-es decodes: [reason, field] or "ok". */
function check(desc: DescMessage, text: string) {
  const json = JSON.parse(text) as JsonValue;
  fromJson(desc, json);
  const r = rolledOverTimestamp(desc, text, json);
  return r ? [r.reason, r.details.fieldViolations?.[0]?.field, r.message] : "ok";
}

describe("Timestamps that protobuf-es would roll over", () => {
  it.each([
    ['{"startTime": "2026-11-31T16:00:00Z"}', "start_time", "2026-11 has 30 days"],
    ['{"serviceId": "s", "end_time": "2026-02-29T16:00:00+01:00"}', "end_time", "has 28 days"],
    ['{"startTime": "2028-02-30T00:00:00Z"}', "start_time", "2028-02 has 29 days"],
    ['{"startTime": "2026-04-30T10:00:00Z", "endTime": "2026-04-31T10:00:00Z"}', "end_time", ""],
    ['{"startTime": "2026-03-01T24:00:00Z"}', "start_time", "hours run from 00 to 23"],
    ['{"startTime": "2026-11-3\\u0031T16:00:00Z"}', "start_time", "30 days"],
  ])("%s is MALFORMED_REQUEST naming the field", (body, field, why) => {
    const [reason, named, message] = check(CreateHoldRequestSchema, body);
    expect([reason, named]).toEqual(["MALFORMED_REQUEST", field]);
    expect(message).toContain(`${field}: expected an RFC 3339 time`);
    expect(message).toContain(why);
  });

  it.each([
    '{"startTime": "2026-12-31T16:00:00Z", "endTime": "2028-02-29T23:59:59.5Z"}',
    '{"startTime": "2026-01-30T00:00:00-05:00"}',
    '{"slotId": "2026-11-31T16:00:00Z", "metadata": {"when": "2026-02-30T24:00:00Z"}}',
    '{"attendee": {"name": "Zo\\u00eb"}}',
  ])("real times, and text that only looks like a time, pass: %s", (body) => {
    expect(check(CreateHoldRequestSchema, body)).toBe("ok");
  });

  it("are found in every request", () => {
    const body = '{"serviceId": "s", "startTime": "2026-06-31T00:00:00Z"}';
    expect(check(ListSlotsRequestSchema, body)[1]).toBe("start_time");
  });
});

describe("a JSON value nested beyond protobuf-es's recursion limit", () => {
  it("is said to be nested too deeply, with the limit", () => {
    const deep = (n: number): JsonValue => (n === 0 ? 1 : [deep(n - 1)]);
    const json = { slotId: "x", metadata: { a: deep(99) } };
    let err: unknown;
    try {
      fromJson(CreateHoldRequestSchema, json);
    } catch (e) {
      err = e;
    }
    const r = explainJsonError(CreateHoldRequestSchema, json, err);
    expect(r.reason).toBe("MALFORMED_REQUEST");
    expect(r.details.fieldViolations).toEqual([
      {
        field: "metadata",
        description:
          "is nested too deeply: a request may nest objects and arrays at most 100 levels deep",
      },
    ]);
  });

  it("still says what was expected of a value of the wrong kind", () => {
    const json = { metadata: [1] };
    const r = explainJsonError(CreateHoldRequestSchema, json, new Error("x"));
    expect(r.details.fieldViolations?.[0]?.description).toBe(
      "expected a JSON object, got a JSON array",
    );
  });
});

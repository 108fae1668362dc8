import { equals, fromJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BookingSchema,
  CancelBookingResponseSchema,
  CreateHoldResponseSchema,
  ListBookingsResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import { answerOfJson, bookingOfJson } from "../../src/rpc/booking-json.js";
import { freshDatabase } from "../support/database.js";

/**
 * bookingOfJson reads booking_json's documents without fromJson, and must
 * give exactly what fromJson gives: here on documents the SQL itself writes
 * for rows of every status and shape, and on documents of other shapes
 * (which it hands to fromJson).
 */

let pool: pg.Pool;
beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await freshDatabase(), max: 2 });
});
afterAll(async () => {
  await pool.end();
});

/** booking_json of a bookings row with these columns (not stored: no tenant, service or resource is needed). */
async function documentOf(columns: Record<string, unknown>): Promise<JsonObject> {
  const row = {
    tenant_id: "ten_0123456789abcdef0123456789ab",
    id: "bkg_0123456789abcdef0123456789ab",
    service_id: "svc_0123456789abcdef0123456789ab",
    resource_id: "rsc_0123456789abcdef0123456789ab",
    start_time: "2031-03-04T09:00:00Z",
    end_time: "2031-03-04T09:30:00Z",
    block_start: "2031-03-04T09:00:00Z",
    block_end: "2031-03-04T09:30:00Z",
    status: "confirmed",
    expire_time: null,
    attendee: {},
    metadata: {},
    policy_version: 1,
    cancel_reason: "",
    exclusive: true,
    create_time: "2031-03-01T08:00:00.123456Z",
    update_time: "2031-03-01T08:00:00.5Z",
    ...columns,
  };
  const { rows } = await pool.query<{ doc: JsonObject }>(
    "SELECT booking_json(jsonb_populate_record(NULL::bookings, $1::jsonb)) AS doc",
    [JSON.stringify(row)],
  );
  return (rows[0] as { doc: JsonObject }).doc;
}

const rows: Record<string, unknown>[] = [
  {},
  { status: "held", expire_time: "2999-01-01T00:02:00.000001Z" },
  // A lapsed hold reads as expired, and keeps its expire_time.
  { status: "held", expire_time: "2020-01-01T00:00:00Z" },
  { status: "expired", expire_time: "2020-01-01T00:00:00.999999Z" },
  { status: "cancelled", cancel_reason: 'caller changed plans ☃ "quoted" \\ back' },
  { status: "cancelled", cancel_reason: "" },
  { status: "completed", policy_version: 2_147_483_647 },
  { status: "no_show" },
  { attendee: { name: "Ada Lovelace", email: "ada@example.com", phone: "+44 20 7946 0000" } },
  { attendee: { email: "only@example.com" } },
  {
    metadata: {
      n: 1.5,
      big: 1e300,
      neg: -0.25,
      t: true,
      f: false,
      z: null,
      s: "ünïcödé 𝄞",
      list: [1, "two", [3], { four: 4 }, null],
      nested: { a: { b: { c: [] } } },
      "": "empty key",
    },
  },
  {
    start_time: "0001-01-01T00:00:00Z",
    end_time: "0001-01-01T00:30:00Z",
    block_start: "0001-01-01T00:00:00Z",
    block_end: "0001-01-01T00:30:00Z",
  },
  {
    start_time: "1960-07-01T23:59:59.999999Z",
    end_time: "1960-07-02T00:29:59.000001Z",
    block_start: "1960-07-01T23:00:00Z",
    block_end: "1960-07-02T01:00:00Z",
    create_time: "1969-12-31T23:59:59.5Z",
  },
  {
    start_time: "9999-12-31T23:00:00Z",
    end_time: "9999-12-31T23:59:59.999999Z",
    block_start: "9999-12-31T23:00:00Z",
    block_end: "9999-12-31T23:59:59.999999Z",
  },
];

describe("bookingOfJson", () => {
  it("reads every document booking_json writes as fromJson does, without fromJson", async () => {
    for (const columns of rows) {
      const doc = await documentOf(columns);
      const fast = bookingOfJson(doc);
      const reference = fromJson(BookingSchema, doc);
      expect(equals(BookingSchema, fast, reference), JSON.stringify(doc)).toBe(true);
      expect(fast).toEqual(reference);
      // Read directly: the metadata is the document's own object, where
      // fromJson builds a new one.
      expect(fast.metadata).toBe(doc.metadata);
    }
  });

  it("hands documents of any other shape to fromJson: the same message, or the same error", async () => {
    const doc = await documentOf({ status: "held", expire_time: "2999-01-01T00:00:00Z" });
    const variants: JsonValue[] = [
      { ...doc, localStartTime: "2031-03-04T10:00:00" },
      { ...doc, startTime: "2031-03-04T10:00:00+01:00" },
      { ...doc, startTime: "2031-03-04T09:00:00Z", endTime: "2031-03-04T09:30:00.5Z" },
      { ...doc, status: 2 },
      { ...doc, metadata: null },
      { ...doc, attendee: null },
      { ...doc, policyVersion: "7" },
      { ...doc, status: "BOOKING_STATUS_NOT_A_STATUS" },
      { ...doc, startTime: "2031-02-30T09:00:00.000000Z" },
      { ...doc, startTime: "0000-12-31T23:00:00.000000Z" },
      { ...doc, attendee: { name: "x", nickname: "y" } },
      { ...doc, policyVersion: 2 ** 31 },
      { ...doc, id: 12 },
      { ...doc, unknown: true },
      [doc],
      "booking",
      null,
    ];
    for (const v of variants) {
      let reference: unknown;
      let referenceError: string | undefined;
      try {
        reference = fromJson(BookingSchema, v);
      } catch (err) {
        referenceError = (err as Error).message;
      }
      if (referenceError !== undefined) {
        expect(() => bookingOfJson(v), JSON.stringify(v)).toThrow(referenceError);
      } else {
        expect(bookingOfJson(v), JSON.stringify(v)).toEqual(reference);
      }
    }
  });
});

describe("answerOfJson", () => {
  it("reads booking answers, and any other message, as fromJson does", async () => {
    const doc = await documentOf({ status: "cancelled", cancel_reason: "no" });
    for (const schema of [CreateHoldResponseSchema, CancelBookingResponseSchema]) {
      const answer = answerOfJson(schema, { booking: doc });
      expect(answer).toEqual(fromJson(schema, { booking: doc }));
      expect(answer.booking?.metadata).toBe(doc.metadata);
    }
    expect(answerOfJson(CreateHoldResponseSchema, {})).toEqual(
      fromJson(CreateHoldResponseSchema, {}),
    );
    const page = { bookings: [doc], nextPageToken: "t" };
    expect(answerOfJson(ListBookingsResponseSchema, page)).toEqual(
      fromJson(ListBookingsResponseSchema, page),
    );
    expect(() => answerOfJson(CreateHoldResponseSchema, { booking: doc, extra: 1 })).toThrow(
      /extra/,
    );
  });
});

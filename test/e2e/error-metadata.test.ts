import { fromJson, toJson } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { at, bookingWorld, DAY, MINUTE, minutes } from "../support/booking.js";
import { rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The instants in ErrorInfo metadata are written one way, whichever path
 * refused: as protobuf JSON writes a Timestamp (RFC 3339 in UTC, no
 * fraction at a whole second, else 3, 6 or 9 digits), as every message of
 * a refusal writes one (ts_text in SQL, instantText in src/zod-messages.ts)
 * and as the API's Timestamps read.
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

/** `text` as protobuf JSON writes the Timestamp it names: written again, it is unchanged. */
function expectCanonicalInstant(text: string | undefined): void {
  expect(text).toBeTypeOf("string");
  const written = toJson(TimestampSchema, fromJson(TimestampSchema, text as string));
  expect(text).toBe(written);
}

describe("instants in ErrorInfo metadata", () => {
  it("CAPACITY_BELOW_BOOKINGS (checked in TypeScript) writes start_time and end_time as Timestamps read", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const base = { serviceId: w.serviceId, resourceId: w.resourceId };
    await w.bookings.createBooking({ ...base, ...at(2, 10, 0, 60) });
    await w.bookings.createBooking({ ...base, ...at(2, 10, 30, 60) });
    const err = await rejected(
      w.resources.updateResource({ resource: { id: w.resourceId, capacity: 1 } }),
      Code.FailedPrecondition,
      "CAPACITY_BELOW_BOOKINGS",
    );
    const metadata = err.findDetails(ErrorInfoSchema)[0]?.metadata ?? {};
    const day = new Date(at(2, 0).startMs).toISOString().slice(0, 10);
    // Whole seconds: no fraction, as protobuf JSON and the messages write them.
    expect([metadata.start_time, metadata.end_time]).toEqual([
      `${day}T10:30:00Z`,
      `${day}T11:00:00Z`,
    ]);
    expectCanonicalInstant(metadata.start_time);
    expectCanonicalInstant(metadata.end_time);
  });

  it("TOO_SOON and TOO_FAR_AHEAD (checked in SQL) write earliest_start and latest_start the same way", async () => {
    const w = await bookingWorld(server.url, {
      policy: { durations: [minutes(30)], minNotice: minutes(60), maxAdvance: minutes(7 * 1440) },
    });
    const base = { serviceId: w.serviceId, resourceId: w.resourceId };
    const soon = Math.ceil((Date.now() + MINUTE) / (30 * MINUTE)) * 30 * MINUTE;
    const tooSoon = await rejected(
      w.bookings.createHold({
        ...base,
        startTime: timestampFromMs(soon),
        endTime: timestampFromMs(soon + 30 * MINUTE),
      }),
      Code.FailedPrecondition,
      "TOO_SOON",
    );
    expectCanonicalInstant(tooSoon.findDetails(ErrorInfoSchema)[0]?.metadata.earliest_start);
    const tooFar = await rejected(
      w.bookings.createHold({ ...base, ...at(9, 9) }),
      Code.FailedPrecondition,
      "TOO_FAR_AHEAD",
    );
    expectCanonicalInstant(tooFar.findDetails(ErrorInfoSchema)[0]?.metadata.latest_start);
  });

  it("the SQL clock rules write whole seconds without a fraction and milliseconds with 3 digits", async () => {
    // Postgres's now() cannot be chosen through the API: the function that
    // writes the refusal is called with chosen instants, on the server's database.
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    try {
      const metadataOf = async (now: string, start: string) => {
        const { rows } = await db.query<{ r: { error: { metadata: Record<string, string> } } }>(
          "SELECT notice_rejection($1::timestamptz, $2::timestamptz, interval '1 hour', interval '7 days') AS r",
          [start, now],
        );
        return rows[0]?.r.error.metadata;
      };
      expect(await metadataOf("2030-03-04T09:00:00Z", "2030-03-04T09:30:00Z")).toEqual({
        earliest_start: "2030-03-04T10:00:00Z",
      });
      expect(await metadataOf("2030-03-04T09:00:00.250Z", "2030-03-04T09:30:00Z")).toEqual({
        earliest_start: "2030-03-04T10:00:00.250Z",
      });
      expect(await metadataOf("2030-03-04T09:00:00.000001Z", "2030-03-04T09:30:00Z")).toEqual({
        earliest_start: "2030-03-04T10:00:00.000001Z",
      });
      const far = new Date(Date.parse("2030-03-04T09:00:00Z") + 8 * DAY).toISOString();
      expect(await metadataOf("2030-03-04T09:00:00Z", far)).toEqual({
        latest_start: "2030-03-11T09:00:00Z",
      });
    } finally {
      await db.end();
    }
  });
});

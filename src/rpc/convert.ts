import { type Duration, durationFromMs, type Timestamp } from "@bufbuild/protobuf/wkt";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { type BookingStatus, BookingStatusSchema } from "../../gen/holdfast/v1/booking_pb.js";
import type { OfferedSlot } from "../domain/rejection.js";
import { localDateTime } from "../domain/time.js";
import { enumNames } from "./enum-names.js";

/**
 * Conversions between protobuf well-known types and the plain numbers the
 * domain works in (milliseconds since the epoch, milliseconds of duration).
 */

export function timestampOfMs(ms: number): Timestamp {
  // As timestampFromMs, written out: a page of slots makes two thousand.
  const seconds = Math.floor(ms / 1000);
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(seconds),
    nanos: (ms - seconds * 1000) * 1_000_000,
  };
}

export function timestampOfDate(d: Date): Timestamp {
  return timestampOfMs(d.getTime());
}

export function durationOfMs(ms: number): Duration {
  return durationFromMs(ms);
}

/**
 * Milliseconds of a Timestamp; sub-millisecond precision is dropped. Nanos
 * outside 0..999,999,999 are not refused here: a request's Timestamps are
 * checked by validate.ts (timestampMs, optionalTimestampMs).
 */
export function msOfTimestamp(t: Timestamp): number {
  return Number(t.seconds) * 1000 + Math.floor(t.nanos / 1_000_000);
}

/** Milliseconds of a Duration, or NaN when it is negative or has mixed signs. */
export function msOfDuration(d: Duration): number {
  if (d.seconds < 0n || d.nanos < 0) return Number.NaN;
  return Number(d.seconds) * 1000 + d.nanos / 1_000_000;
}

/** Booking statuses as the database stores them ("held", "no_show"). */
export const BOOKING_STATUS = enumNames<BookingStatus>(BookingStatusSchema);

/** A Slot message, built as the plain object protobuf-es's create would make. */
export function slotOf(s: OfferedSlot): Slot {
  return {
    $typeName: "holdfast.v1.Slot",
    slotId: s.slotId,
    resourceId: s.resourceId,
    startTime: timestampOfMs(s.startMs),
    endTime: timestampOfMs(s.endMs),
    remaining: s.remaining,
    ...localTimesOf(s.startMs, s.endMs, s.timeZone),
  };
}

/** The local wall-clock fields that slots and bookings carry; empty without a zone. */
export function localTimesOf(
  startMs: number,
  endMs: number,
  timeZone: string,
): { localStartTime: string; localEndTime: string; timeZone: string } {
  if (timeZone === "") return { localStartTime: "", localEndTime: "", timeZone };
  return {
    localStartTime: localDateTime(startMs, timeZone),
    localEndTime: localDateTime(endMs, timeZone),
    timeZone,
  };
}

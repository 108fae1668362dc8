import { StructSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import {
  BookingSchema,
  CreateHoldRequestSchema,
  ListBookingsResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import { ListEventsResponseSchema } from "../../gen/holdfast/v1/event_pb.js";
import { messageOf, schemaSearch } from "../../src/rpc/schema-search.js";

describe("schemaSearch", () => {
  const holdsList = schemaSearch(
    (_, f) => f.fieldKind === "list",
    (desc) => desc.typeName.startsWith("google."),
  );
  const holdsBooking = schemaSearch((_, f) => messageOf(f)?.typeName === BookingSchema.typeName);

  it("finds a field at any depth, through lists and singular messages", () => {
    expect(holdsBooking(ListBookingsResponseSchema)).toBe(true);
    // Event -> payload -> Booking, inside a list of events.
    expect(holdsBooking(ListEventsResponseSchema)).toBe(true);
    expect(holdsList(ListBookingsResponseSchema)).toBe(true);
  });

  it("answers false where nothing matches, and does not look into skipped types", () => {
    // CreateHoldRequest's only lists are inside google.protobuf.Struct (metadata).
    expect(holdsList(CreateHoldRequestSchema)).toBe(false);
    expect(holdsList(StructSchema)).toBe(false);
    expect(holdsBooking(CreateHoldRequestSchema)).toBe(false);
  });

  it("ends on types that contain each other (Struct and Value)", () => {
    const holdsBool = schemaSearch((_, f) => f.fieldKind === "scalar" && f.name === "never");
    expect(holdsBool(StructSchema)).toBe(false);
    // Without the skip, Struct's ListValue is found through Value.
    expect(schemaSearch((_, f) => f.fieldKind === "list")(StructSchema)).toBe(true);
  });

  it("keeps each type's answer", () => {
    let looked = 0;
    const counted = schemaSearch(() => {
      looked++;
      return false;
    });
    counted(BookingSchema);
    const once = looked;
    counted(BookingSchema);
    expect(looked).toBe(once);
    expect(once).toBeGreaterThan(0);
  });
});

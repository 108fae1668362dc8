import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { OverrideKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, rejected } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { startTestServer } from "../support/server.js";

/**
 * The free times a SLOT_UNAVAILABLE offers reflect availability when the
 * answer is given: what another instance booked, and a rule changed, just
 * before the caller asked are never offered.
 */

const startOf = (s: Slot) => Number(s.startTime?.seconds) * 1000;

describe("alternatives", () => {
  it("never offer a time booked through another instance, or blocked, just before they were asked for", async () => {
    const databaseUrl = await freshDatabase();
    const here = await startTestServer({}, databaseUrl);
    const there = await startTestServer({}, databaseUrl);
    const w = await bookingWorld(here.url);
    const elsewhere = clientFor(BookingService, there.url, w.key);
    const taken = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(5, 10) };
    await w.bookings.createHold(taken);
    const offered = async () => {
      const refused = await rejected(
        w.bookings.createHold(taken),
        Code.Aborted,
        "SLOT_UNAVAILABLE",
      );
      return refused.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    };

    for (let round = 0; round < 5; round++) {
      // Asked for twice in a row here: the second asks right after the first was answered.
      const [first] = await offered();
      expect(first).toBeDefined();
      await elsewhere.createHold({ slotId: first?.slotId as string });
      const next = await offered();
      expect(next.map(startOf)).not.toContain(startOf(first as Slot));
    }

    const [blocked] = await offered();
    const startTime = new Date(startOf(blocked as Slot)).toISOString().slice(11, 16);
    const endMs = Number(blocked?.endTime?.seconds) * 1000;
    await clientFor(ResourceService, there.url, w.key).createOverride({
      resourceId: w.resourceId,
      kind: OverrideKind.BLOCK,
      title: "Closed",
      startDate: new Date(startOf(blocked as Slot)).toISOString().slice(0, 10),
      startTime,
      endTime: new Date(endMs).toISOString().slice(11, 16),
    });
    const after = await offered();
    expect(after.map(startOf)).not.toContain(startOf(blocked as Slot));
    // And every time offered can be held (each alone: offers may overlap).
    for (const slot of after) {
      const { booking } = await w.bookings.createHold({ slotId: slot.slotId });
      await w.bookings.cancelBooking({ bookingId: booking?.id as string });
    }
  });
});

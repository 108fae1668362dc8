import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { DAY, dayStart, HOUR, minutes } from "../support/booking.js";
import { clientFor, newTenant, rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

// The free times offered when a move is refused are times the booking
// could move to: its own blocks do not count as taken, as they do not for
// the move itself.

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

/** The next Monday at least two days from now, 00:00 UTC. */
function nextMonday(): number {
  let d = dayStart(2);
  while (new Date(d).getUTCDay() !== 1) d += DAY;
  return d;
}

const monday = nextMonday();
/** An hour on the Monday from `h` (9.5 is 09:30), UTC. */
const hourAt = (h: number) => ({
  startTime: timestampFromMs(monday + h * HOUR),
  endTime: timestampFromMs(monday + h * HOUR + HOUR),
});
const clock = (s: Slot) =>
  new Date(Number(s.startTime?.seconds) * 1000).toISOString().slice(11, 16);

/**
 * A room worked Monday to Friday 09:00-17:00 UTC, one-hour visits on a
 * half-hour grid, and two confirmed bookings on the Monday: `first` at
 * `firstAt` and `second` at `secondAt`.
 */
async function room(firstAt: number, secondAt: number) {
  const { key } = await newTenant(server.url);
  const { resource } = await clientFor(ResourceService, server.url, key).createResource({
    name: "Room",
    timeZone: "UTC",
    weeklySchedule: {
      windows: [1, 2, 3, 4, 5].map((weekday) => ({
        weekday,
        startTime: "09:00",
        endTime: "17:00",
      })),
    },
  });
  const resourceId = resource?.id as string;
  const { service } = await clientFor(CatalogService, server.url, key).createService({
    name: "Visit",
    resourceIds: [resourceId],
    policy: { durations: [minutes(60)], slotInterval: minutes(30) },
  });
  const serviceId = service?.id as string;
  const bookings = clientFor(BookingService, server.url, key);
  const book = async (h: number) =>
    (await bookings.createBooking({ serviceId, resourceId, ...hourAt(h) })).booking?.id as string;
  return {
    bookings,
    serviceId,
    resourceId,
    first: await book(firstAt),
    second: await book(secondAt),
  };
}

/**
 * Moves `bookingId` to each offered slot by its id, then back to `homeAt`:
 * every offer must be a move that succeeds.
 */
async function moveToEach(
  r: Awaited<ReturnType<typeof room>>,
  bookingId: string,
  offered: Slot[],
  homeAt: number,
) {
  for (const slot of offered) {
    const moved = await r.bookings.rescheduleBooking({ bookingId, slotId: slot.slotId });
    expect(moved.booking?.status, `move to ${clock(slot)}`).toBe(BookingStatus.CONFIRMED);
    expect(Number(moved.booking?.startTime?.seconds)).toBe(Number(slot.startTime?.seconds));
    await r.bookings.rescheduleBooking({ bookingId, resourceId: r.resourceId, ...hourAt(homeAt) });
  }
}

describe("alternatives to a refused RescheduleBooking", () => {
  it("include the free times that overlap the booking's own, and each is a move that succeeds", async () => {
    // C at 10:00-11:00, D at 11:30-12:30; C asked to 11:00 runs into D.
    const r = await room(10, 11.5);
    const refused = await rejected(
      r.bookings.rescheduleBooking({ bookingId: r.first, resourceId: r.resourceId, ...hourAt(11) }),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    const offered = refused.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    // 10:30 is the nearest: free but for C itself. Then 09:30 and 12:30
    // after D; never 10:00, where C is now.
    expect(offered.map(clock)).toEqual(["10:30", "09:30", "12:30"]);
    expect(offered.every((s) => s.resourceId === r.resourceId && s.slotId !== "")).toBe(true);
    await moveToEach(r, r.first, offered, 10);
  });

  it("include them when the time asked for is outside working hours", async () => {
    // C at 09:00-10:00, D at 10:30-11:30; C asked to 08:30, before the day starts.
    const r = await room(9, 10.5);
    const refused = await rejected(
      r.bookings.rescheduleBooking({
        bookingId: r.first,
        resourceId: r.resourceId,
        ...hourAt(8.5),
      }),
      Code.FailedPrecondition,
      "OUTSIDE_WORKING_HOURS",
    );
    const offered = refused.findDetails(SlotConflictSchema)[0]?.alternatives ?? [];
    // 09:30 overlaps C; 09:00, where C is now, is no move.
    expect(offered.map(clock)).toEqual(["09:30", "11:30", "12:00"]);
    await moveToEach(r, r.first, offered, 9);
  });

  it("are not those of a refused CreateHold at the same time, nor theirs these, asked for right after", async () => {
    const r = await room(10, 11.5);
    const hold = () =>
      rejected(
        r.bookings.createHold({ serviceId: r.serviceId, resourceId: r.resourceId, ...hourAt(11) }),
        Code.Aborted,
        "SLOT_UNAVAILABLE",
      );
    const move = () =>
      rejected(
        r.bookings.rescheduleBooking({
          bookingId: r.first,
          resourceId: r.resourceId,
          ...hourAt(11),
        }),
        Code.Aborted,
        "SLOT_UNAVAILABLE",
      );
    const offeredBy = async (call: () => ReturnType<typeof hold>) =>
      ((await call()).findDetails(SlotConflictSchema)[0]?.alternatives ?? []).map(clock);
    // A new booking has nothing to leave out: C and D both block, as before.
    const holdFirst = await offeredBy(hold);
    const moveAfter = await offeredBy(move);
    const moveFirst = await offeredBy(move);
    const holdAfter = await offeredBy(hold);
    expect({ holdFirst, moveAfter, moveFirst, holdAfter }).toEqual({
      holdFirst: ["12:30", "09:00", "13:00"],
      moveAfter: ["10:30", "09:30", "12:30"],
      moveFirst: ["10:30", "09:30", "12:30"],
      holdAfter: ["12:30", "09:00", "13:00"],
    });
  });
});

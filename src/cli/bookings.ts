import { create, type DescMessage, type MessageShape, toJson } from "@bufbuild/protobuf";
import { durationFromMs, type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Command } from "commander";
import { ListSlotsResponseSchema, type Slot } from "../../gen/holdfast/v1/availability_pb.js";
import {
  type Booking,
  BookingStatus,
  CancelBookingResponseSchema,
  ConfirmBookingResponseSchema,
  CreateHoldResponseSchema,
  ListBookingsResponseSchema,
  RescheduleBookingResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import { DAY_MS, HOUR_MS } from "../domain/time.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { type Api, connect, explainApiError } from "./api.js";
import { calendarDate, count, duration, instant, list } from "./arguments.js";
import { UsageError } from "./failure.js";
import type { FlagNames } from "./flags.js";
import {
  localDate,
  localRange,
  printJson,
  printMessage,
  printTable,
  terminal,
  zoneLabel,
} from "./output.js";

/**
 * The commands a person at a terminal uses to find, hold and manage
 * bookings, over the API with HOLDFAST_URL and HOLDFAST_KEY.
 */

type Globals = { json: boolean; url: string };

/**
 * Runs `work` with a client; errors of the API become a readable
 * CommandFailed that names each field by the flag in `flags` that gave it.
 */
async function withApi(
  cmd: Command,
  flags: FlagNames,
  work: (api: Api, globals: Globals) => Promise<void>,
) {
  const globals = cmd.optsWithGlobals<Globals>();
  const api = connect(globals.url);
  try {
    await work(api, globals);
  } catch (err) {
    throw await explainApiError(err, api, flags);
  }
}

const ms = (t: Timestamp | undefined) => (t ? msOfTimestamp(t) : 0);

function statusName(status: BookingStatus): string {
  return BookingStatus[status] ?? String(status);
}

function untilExpiry(b: Booking): string {
  if (b.status !== BookingStatus.HELD || !b.expireTime) return "";
  const left = Math.round((ms(b.expireTime) - Date.now()) / 1000);
  return left > 0 ? `in ${left}s` : "lapsing";
}

function printBookings(bookings: readonly Booking[]): void {
  const zone = (b: Booking) => b.timeZone || "UTC";
  printTable(bookings, [
    { header: "BOOKING", value: (b) => b.id },
    { header: "STATUS", value: (b) => statusName(b.status) },
    { header: "WHEN (LOCAL)", value: (b) => localRange(ms(b.startTime), ms(b.endTime), zone(b)) },
    { header: "ZONE", value: (b) => zoneLabel(ms(b.startTime), zone(b)) },
    { header: "RESOURCE", value: (b) => b.resourceId },
    { header: "SERVICE", value: (b) => b.serviceId },
    { header: "ATTENDEE", value: (b) => b.attendee?.name ?? "" },
    { header: "HOLD EXPIRES", value: untilExpiry },
  ]);
}

/** Prints the booking of a write's answer, as a table row or as the answer's JSON. */
function printAnswer<S extends DescMessage>(
  globals: Globals,
  schema: S,
  answer: MessageShape<S> & { booking?: Booking },
): void {
  if (globals.json) printJson(toJson(schema, answer));
  else printBookings(answer.booking ? [answer.booking] : []);
}

/**
 * The time a hold or move asks for: a slot id, or a start with an end or a
 * duration. Exactly one of the two ways.
 */
type TimeOptions = { slot?: string; start?: number; end?: number; duration?: number };

/**
 * The flags that gave a hold's or move's time. Its end is `--end`, or the
 * start plus `--duration`: a refused length names the one given.
 */
function timeFlags(o: TimeOptions): FlagNames {
  return {
    slot_id: "--slot",
    start_time: "--start",
    end_time:
      o.end !== undefined
        ? "--end"
        : o.duration !== undefined
          ? "--duration"
          : "--end or --duration",
  };
}

function requestedTime(o: TimeOptions, lengthMs?: number) {
  if (o.slot !== undefined) {
    if (o.start !== undefined || o.end !== undefined || o.duration !== undefined) {
      throw new UsageError("give either --slot or --start (with --end or --duration), not both");
    }
    return { slotId: o.slot };
  }
  if (o.start === undefined)
    throw new UsageError("give --slot, or --start with --end or --duration");
  if (o.end !== undefined && o.duration !== undefined) {
    throw new UsageError("give --end or --duration, not both");
  }
  const length = o.duration ?? lengthMs;
  const end = o.end ?? (length === undefined ? undefined : o.start + length);
  if (end === undefined) throw new UsageError("give --end or --duration with --start");
  return { startTime: timestampFromMs(o.start), endTime: timestampFromMs(end) };
}

/** Every write: `--idempotency-key`, so a command run again after a lost answer is not done twice. */
function write(cmd: Command): Command {
  return cmd.option(
    "--idempotency-key <key>",
    "send this key: running the command again with it returns the first answer",
  );
}

function timeOptions(cmd: Command): Command {
  return cmd
    .option("--slot <slot-id>", "a slot id from `holdfast slots`")
    .option("--start <time>", 'start, with an offset: "2030-03-04T09:00-05:00"', instant)
    .option("--end <time>", "end, with an offset", instant)
    .option("--duration <duration>", 'length instead of --end: "30m"', duration);
}

export function bookingCommands(program: Command): void {
  program
    .command("slots")
    .description("free times of a service, on each resource's local clock")
    .requiredOption("--service <service-id>", "the service to book")
    .option("--resource <resource-id...>", "only these resources (comma-separated)", list)
    .option(
      "--date <date>",
      "one local day, e.g. 2030-03-04 (default: the next 7 days)",
      calendarDate,
    )
    .option("--from <time>", "start of the range, with an offset (default: now)", instant)
    .option("--to <time>", "end of the range (default: 7 days after --from)", instant)
    .option(
      "--duration <duration>",
      'booking length, e.g. "30m" (default: the policy\'s first)',
      duration,
    )
    .option("--limit <n>", "show at most this many slots", count(5000), 20)
    .action(async (o, cmd: Command) => {
      if (o.date !== undefined && (o.from !== undefined || o.to !== undefined)) {
        throw new UsageError("give --date or --from/--to, not both");
      }
      const range =
        o.date === undefined ? { from: "--from", to: "--to" } : { from: "--date", to: "--date" };
      const flags = {
        service_id: "--service",
        resource_ids: "--resource",
        start_time: range.from,
        end_time: range.to,
        duration: "--duration",
      };
      await withApi(cmd, flags, async (api, globals) => {
        // A local day lies between its midnight at UTC+14 and its end at UTC-12.
        const day = o.date === undefined ? undefined : Date.parse(`${o.date}T00:00:00Z`);
        const from: number = day === undefined ? (o.from ?? Date.now()) : day - 14 * HOUR_MS;
        const to: number =
          day === undefined ? (o.to ?? from + 7 * DAY_MS) : day + DAY_MS + 12 * HOUR_MS;
        // A call's work is bounded: a page may come short with a token, so
        // read on until the page size is reached or the range is searched.
        const pageSize = day === undefined ? o.limit : 5000;
        const answer = create(ListSlotsResponseSchema);
        do {
          const page = await api.client.availability.listSlots({
            serviceId: o.service,
            resourceIds: o.resource ?? [],
            startTime: timestampFromMs(from),
            endTime: timestampFromMs(to),
            duration: o.duration === undefined ? undefined : durationFromMs(o.duration),
            pageSize: pageSize - answer.slots.length,
            pageToken: answer.nextPageToken,
          });
          answer.slots.push(...page.slots);
          answer.timeZones = page.timeZones;
          answer.nextPageToken = page.nextPageToken;
        } while (answer.nextPageToken && answer.slots.length < pageSize);
        const zone = (s: Slot) => s.timeZone || "UTC";
        const inRange =
          o.date === undefined
            ? answer.slots
            : answer.slots.filter((s) => localDate(ms(s.startTime), zone(s)) === o.date);
        const shown = inRange.slice(0, o.limit);
        if (globals.json) {
          printJson(toJson(ListSlotsResponseSchema, { ...answer, slots: shown }));
          return;
        }
        printTable(shown, [
          {
            header: "WHEN (LOCAL)",
            value: (s) => localRange(ms(s.startTime), ms(s.endTime), zone(s)),
          },
          { header: "ZONE", value: (s) => zoneLabel(ms(s.startTime), zone(s)) },
          { header: "RESOURCE", value: (s) => s.resourceId },
          { header: "LEFT", value: (s) => String(s.remaining) },
          { header: "SLOT", value: (s) => s.slotId },
        ]);
        if (inRange.length > shown.length || (o.date === undefined && answer.nextPageToken)) {
          process.stderr.write("(more slots: narrow the range or raise --limit)\n");
        }
      });
    });

  timeOptions(
    write(program.command("hold")).description(
      "hold a time while the caller decides; confirm it before the hold lapses",
    ),
  )
    .option("--service <service-id>", "the service (not needed with --slot)")
    .option("--resource <resource-id>", "the resource (default: any free one of the service)")
    .option(
      "--ttl <duration>",
      'how long to hold, e.g. "10m" (default: the policy\'s hold_ttl)',
      duration,
    )
    .option("--name <name>", "attendee name")
    .option("--email <email>", "attendee email")
    .option("--phone <phone>", "attendee phone")
    .action(async (o, cmd: Command) => {
      const time = requestedTime(o);
      if (!("slotId" in time) && o.service === undefined) {
        throw new UsageError("give --service with --start, or use --slot");
      }
      const flags = {
        ...timeFlags(o),
        service_id: "--service",
        resource_id: "--resource",
        ttl: "--ttl",
        "attendee.name": "--name",
        "attendee.email": "--email",
        "attendee.phone": "--phone",
      };
      await withApi(cmd, flags, async (api, globals) => {
        const answer = await api.client.bookings.createHold(
          {
            ...time,
            serviceId: o.service ?? "",
            resourceId: o.resource ?? "",
            ttl: o.ttl === undefined ? undefined : durationFromMs(o.ttl),
            attendee: { name: o.name ?? "", email: o.email ?? "", phone: o.phone ?? "" },
          },
          { headers: idempotencyHeader(o.idempotencyKey) },
        );
        printAnswer(globals, CreateHoldResponseSchema, answer);
      });
    });

  write(program.command("confirm"))
    .description("confirm a held booking")
    .argument("<booking-id>")
    .action(async (bookingId: string, o, cmd: Command) => {
      await withApi(cmd, { booking_id: "<booking-id>" }, async (api, globals) => {
        const answer = await api.client.bookings.confirmBooking(
          { bookingId },
          { headers: idempotencyHeader(o.idempotencyKey) },
        );
        printAnswer(globals, ConfirmBookingResponseSchema, answer);
      });
    });

  write(program.command("cancel"))
    .description("cancel a held or confirmed booking; its time is free at once")
    .argument("<booking-id>")
    .option("--reason <text>", "why, kept with the booking")
    .action(async (bookingId: string, o, cmd: Command) => {
      const flags = { booking_id: "<booking-id>", reason: "--reason" };
      await withApi(cmd, flags, async (api, globals) => {
        const answer = await api.client.bookings.cancelBooking(
          { bookingId, reason: o.reason ?? "" },
          { headers: idempotencyHeader(o.idempotencyKey) },
        );
        printAnswer(globals, CancelBookingResponseSchema, answer);
      });
    });

  timeOptions(
    write(program.command("reschedule"))
      .description("move a booking to another time (and resource); it keeps its id and status")
      .argument("<booking-id>"),
  )
    .option("--resource <resource-id>", "move to this resource of the service")
    .action(async (bookingId: string, o, cmd: Command) => {
      const flags = { ...timeFlags(o), booking_id: "<booking-id>", resource_id: "--resource" };
      await withApi(cmd, flags, async (api, globals) => {
        let length: number | undefined;
        if (o.start !== undefined && o.end === undefined && o.duration === undefined) {
          // Only a new start: keep the booking's length.
          const { booking } = await api.client.bookings.getBooking({ bookingId });
          length = booking ? ms(booking.endTime) - ms(booking.startTime) : undefined;
        }
        const answer = await api.client.bookings.rescheduleBooking(
          { bookingId, resourceId: o.resource ?? "", ...requestedTime(o, length) },
          { headers: idempotencyHeader(o.idempotencyKey) },
        );
        printAnswer(globals, RescheduleBookingResponseSchema, answer);
      });
    });

  program
    .command("bookings")
    .description("list bookings, by start time")
    .option("--resource <resource-id>", "only this resource")
    .option("--service <service-id>", "only this service")
    .option(
      "--status <status...>",
      "only these statuses: held, confirmed, cancelled, expired, completed, no_show",
      list,
    )
    .option("--from <time>", "starting at or after this time", instant)
    .option("--to <time>", "starting before this time", instant)
    .option("--limit <n>", "show at most this many bookings", count(1000), 50)
    .action(async (o, cmd: Command) => {
      const statuses = ((o.status ?? []) as string[]).map(bookingStatus);
      const flags = {
        resource_id: "--resource",
        service_id: "--service",
        statuses: "--status",
        start_time_from: "--from",
        start_time_to: "--to",
      };
      await withApi(cmd, flags, async (api, globals) => {
        const bookings: Booking[] = [];
        let pageToken = "";
        do {
          const page = await api.client.bookings.listBookings({
            resourceId: o.resource ?? "",
            serviceId: o.service ?? "",
            statuses,
            startTimeFrom: o.from === undefined ? undefined : timestampFromMs(o.from),
            startTimeTo: o.to === undefined ? undefined : timestampFromMs(o.to),
            pageSize: Math.min(100, o.limit - bookings.length),
            pageToken,
          });
          bookings.push(...page.bookings);
          pageToken = page.nextPageToken;
        } while (pageToken !== "" && bookings.length < o.limit);
        if (globals.json) {
          printMessage(ListBookingsResponseSchema, { bookings, nextPageToken: pageToken });
          return;
        }
        printBookings(bookings);
        if (pageToken !== "")
          process.stderr.write("(more bookings: narrow the filter or raise --limit)\n");
      });
    });
}

function idempotencyHeader(key: string | undefined): Record<string, string> {
  return key === undefined ? {} : { "idempotency-key": key };
}

function bookingStatus(name: string): BookingStatus {
  const status = BookingStatus[name.toUpperCase() as keyof typeof BookingStatus];
  if (status === undefined || status === BookingStatus.UNSPECIFIED) {
    throw new UsageError(
      terminal`unknown status "${name}": use held, confirmed, cancelled, expired, completed or no_show`,
    );
  }
  return status;
}

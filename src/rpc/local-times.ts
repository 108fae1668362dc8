import {
  type DescMessage,
  fromJson,
  type JsonObject,
  type MessageShape,
  toJson,
} from "@bufbuild/protobuf";
import { type ReflectMessage, reflect } from "@bufbuild/protobuf/reflect";
import type { Interceptor } from "@connectrpc/connect";
import { type Booking, BookingSchema } from "../../gen/holdfast/v1/booking_pb.js";
import type { CatalogCache } from "../db/catalog-cache.js";
import { callerIn } from "./auth.js";
import { localTimesOf, msOfTimestamp } from "./convert.js";
import { messageOf, schemaSearch } from "./schema-search.js";

/**
 * Bookings carry their times in their resource's zone too (local_start_time
 * "2030-03-04T09:00:00-05:00", local_end_time, time_zone). They are stored
 * and written by SQL without them, so they are added on the way out, in the
 * resource's current zone: by an interceptor for every RPC answer (booking
 * writes and reads, their idempotent replays, events), and by the event
 * stream and webhooks through the same functions. Slots get theirs where
 * they are made (see slotOf), since their zones are known there.
 */

/** The time zones of a tenant's resources among `ids`, by id. */
export type ZoneLookup = (
  tenantId: string,
  resourceIds: readonly string[],
) => Promise<Map<string, string>>;

/** Zones from the catalog cache: no round trip for resources a request just used. */
export function zonesOf(catalog: CatalogCache): ZoneLookup {
  return async (tenantId, ids) => {
    const found = await catalog.resources(tenantId, ids);
    return new Map([...found].map(([id, r]) => [id, r.timeZone]));
  };
}

/** Fills the local times of every Booking inside `message`, a message of type `desc`. */
export async function localizeBookings<D extends DescMessage>(
  desc: D,
  message: MessageShape<D>,
  tenantId: string,
  zones: ZoneLookup,
): Promise<void> {
  if (!reachesBooking(desc)) return;
  const bookings: Booking[] = [];
  collect(reflect(desc, message), bookings);
  if (bookings.length === 0) return;
  const byId = await zones(tenantId, [...new Set(bookings.map((b) => b.resourceId))]);
  for (const b of bookings) {
    if (!b.startTime || !b.endTime) continue;
    Object.assign(
      b,
      localTimesOf(
        msOfTimestamp(b.startTime),
        msOfTimestamp(b.endTime),
        byId.get(b.resourceId) ?? "",
      ),
    );
  }
}

/**
 * A webhook body `{"type", "timestamp", "data"}` whose `data.booking` (when
 * there is one) carries its local times.
 */
export async function localizeDeliveryBody(
  body: string,
  tenantId: string,
  zones: ZoneLookup,
): Promise<string> {
  const parsed = JSON.parse(body) as { data?: { booking?: JsonObject } };
  const json = parsed.data?.booking;
  if (!parsed.data || !json) return body;
  const booking = fromJson(BookingSchema, json, { ignoreUnknownFields: true });
  await localizeBookings(BookingSchema, booking, tenantId, zones);
  parsed.data.booking = toJson(BookingSchema, booking) as JsonObject;
  return JSON.stringify(parsed);
}

/** Adds local times to the bookings in every answer (and every streamed message) of an RPC. */
export function localTimesInterceptor(zones: ZoneLookup): Interceptor {
  return (next) => async (req) => {
    const res = await next(req);
    const tenantId = callerIn(req.contextValues)?.tenantId;
    const output = req.method.output;
    if (tenantId === undefined || !reachesBooking(output)) return res;
    if (!res.stream) {
      await localizeBookings(output, res.message, tenantId, zones);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        for await (const m of messages) {
          await localizeBookings(output, m, tenantId, zones);
          yield m;
        }
      })(),
    };
  };
}

const containsBooking = schemaSearch((_, f) => messageOf(f)?.typeName === BookingSchema.typeName);

/** Whether a message of this type is or can contain a Booking. */
function reachesBooking(desc: DescMessage): boolean {
  return desc.typeName === BookingSchema.typeName || containsBooking(desc);
}

function collect(r: ReflectMessage, out: Booking[]): void {
  if (r.desc.typeName === BookingSchema.typeName) {
    out.push(r.message as Booking);
    return;
  }
  for (const f of r.fields) {
    const m = messageOf(f);
    if (!m || !reachesBooking(m) || !r.isSet(f)) continue;
    if (f.fieldKind === "message") collect(r.get(f), out);
    else if (f.fieldKind === "list") for (const x of r.get(f)) collect(x as ReflectMessage, out);
    else if (f.fieldKind === "map") for (const [, x] of r.get(f)) collect(x as ReflectMessage, out);
  }
}

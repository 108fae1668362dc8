import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService, type PolicySchema } from "../../gen/holdfast/v1/catalog_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { clientFor, newTenant, type Protocol } from "./clients.js";

export const MINUTE = 60_000;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

export const minutes = (n: number) => ({ seconds: BigInt(n * 60), nanos: 0 });
export const seconds = (n: number) => ({ seconds: BigInt(n), nanos: 0 });

/** Midnight UTC, `days` after today. */
export function dayStart(days: number): number {
  const now = new Date();
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + days * DAY;
}

/** A range on day `days` from `hour`:`minute` UTC, `length` minutes long. */
export function at(days: number, hour: number, minute = 0, length = 30) {
  const startMs = dayStart(days) + hour * HOUR + minute * MINUTE;
  return {
    startTime: timestampFromMs(startMs),
    endTime: timestampFromMs(startMs + length * MINUTE),
    startMs,
  };
}

export type BookingWorld = Awaited<ReturnType<typeof bookingWorld>>;

/**
 * A fresh tenant with resources (UTC, no schedule: bookable at any hour)
 * and one service over all of them.
 */
export async function bookingWorld(
  url: string,
  opts: {
    capacity?: number;
    resources?: number;
    policy?: MessageInitShape<typeof PolicySchema>;
    protocol?: Protocol;
  } = {},
) {
  const { key, tenantId } = await newTenant(url);
  const resources = clientFor(ResourceService, url, key);
  const resourceIds: string[] = [];
  for (let i = 0; i < (opts.resources ?? 1); i++) {
    const { resource } = await resources.createResource({
      name: `R${i}`,
      timeZone: "UTC",
      capacity: opts.capacity ?? 1,
    });
    resourceIds.push(resource?.id as string);
  }
  const catalog = clientFor(CatalogService, url, key);
  const { service } = await catalog.createService({
    name: "Consultation",
    resourceIds,
    policy: opts.policy ?? { durations: [minutes(30), minutes(60)], slotInterval: minutes(15) },
  });
  return {
    key,
    tenantId,
    resourceId: resourceIds[0] as string,
    resourceIds,
    serviceId: service?.id as string,
    resources,
    catalog,
    bookings: clientFor(BookingService, url, key, opts.protocol ?? "grpc"),
  };
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export { create };

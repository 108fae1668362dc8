import { Code, ConnectError } from "@connectrpc/connect";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
// The one place the command names where the typed client lives.
import { createHoldfastClient, type HoldfastClient } from "../client/index.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { CommandFailed, UsageError } from "./failure.js";
import { localRange, zoneLabel } from "./output.js";

/**
 * The API side of the `holdfast` command: a typed client for the server in
 * HOLDFAST_URL with the key in HOLDFAST_KEY (the key is read from the
 * environment only, so it never shows in a process list or shell history).
 */
export type Api = { client: HoldfastClient; zones: ResourceZones; url: string };

export function connect(url: string): Api {
  const apiKey = process.env.HOLDFAST_KEY;
  if (!apiKey) {
    throw new UsageError(
      "set HOLDFAST_KEY to an API key (hf_...); an operator makes one with `holdfast keys create`",
    );
  }
  if (!/^https?:\/\/[^/\s]+\/?$/.test(url)) {
    throw new UsageError(
      `HOLDFAST_URL (or --url) must look like http://127.0.0.1:8080, not "${url}"`,
    );
  }
  const client = createHoldfastClient({ baseUrl: url, apiKey, protocol: "grpc" });
  return { client, zones: new ResourceZones(client), url };
}

/**
 * Each resource's time zone, so times show on the wall clock of the place
 * they happen. Read once per resource; a key without `catalog.read` (or a
 * resource it cannot see) gets UTC.
 */
export class ResourceZones {
  private readonly known = new Map<string, Promise<string>>();

  constructor(private readonly client: HoldfastClient) {}

  learn(zones: Record<string, string>): void {
    for (const [id, zone] of Object.entries(zones)) this.known.set(id, Promise.resolve(zone));
  }

  of(resourceId: string): Promise<string> {
    let zone = this.known.get(resourceId);
    if (!zone) {
      zone = this.client.resources.getResource({ resourceId }).then(
        (r) => r.resource?.timeZone || "UTC",
        () => "UTC",
      );
      this.known.set(resourceId, zone);
    }
    return zone;
  }
}

/** A slot's time on its resource's clock: "Mon 2030-03-04 09:00-09:30  America/New_York (-05:00)". */
export async function describeSlot(slot: Slot, zones: ResourceZones): Promise<string> {
  const zone = await zones.of(slot.resourceId);
  const start = slot.startTime ? msOfTimestamp(slot.startTime) : 0;
  const end = slot.endTime ? msOfTimestamp(slot.endTime) : 0;
  return `${localRange(start, end, zone)}  ${zoneLabel(start, zone)}  ${slot.resourceId}  ${slot.slotId}`;
}

/**
 * Turns an error of the API into what a person needs: the stable reason,
 * the server's message, the fields to fix, and for a taken time the free
 * ones nearby. Errors that did not come from the server say where it was
 * looked for.
 */
export async function explainApiError(err: unknown, api: Api): Promise<CommandFailed> {
  if (!(err instanceof ConnectError)) return new CommandFailed(String(err));
  const info = err.findDetails(ErrorInfoSchema)[0];
  if (!info) {
    const unreachable = [Code.Unavailable, Code.Unknown, Code.Canceled, Code.Internal];
    return new CommandFailed(
      unreachable.includes(err.code)
        ? `cannot reach Holdfast at ${api.url}: ${err.rawMessage}`
        : err.rawMessage,
    );
  }
  const lines = [`${info.reason}: ${err.rawMessage}`];
  for (const bad of err.findDetails(BadRequestSchema)) {
    for (const v of bad.fieldViolations) lines.push(`  ${v.field}: ${v.description}`);
  }
  for (const conflict of err.findDetails(SlotConflictSchema)) {
    for (const taken of conflict.conflicts) {
      const start = taken.startTime ? msOfTimestamp(taken.startTime) : 0;
      const end = taken.endTime ? msOfTimestamp(taken.endTime) : 0;
      lines.push(
        `in the way: ${new Date(start).toISOString()} - ${new Date(end).toISOString()} (${BookingStatus[taken.status]})`,
      );
    }
    if (conflict.alternatives.length > 0) lines.push("free instead:");
    for (const slot of conflict.alternatives)
      lines.push(`  ${await describeSlot(slot, api.zones)}`);
  }
  return new CommandFailed(lines.join("\n"));
}

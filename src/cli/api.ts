import { Code, ConnectError } from "@connectrpc/connect";
// The one place the command names where the typed client lives.
import { createHoldfastClient, type HoldfastClient } from "../../clients/typescript/src/index.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { badInput, CommandFailed, UsageError } from "./failure.js";
import { type FlagNames, inFlagWords, violationsInFlagWords } from "./flags.js";
import { localRange, terminal, visible, zoneLabel } from "./output.js";

/**
 * The API side of the `holdfast` command: a typed client for the server in
 * HOLDFAST_URL with the key in HOLDFAST_KEY (the key is read from the
 * environment only, so it never shows in a process list or shell history).
 */
export type Api = { client: HoldfastClient; url: string };

export function connect(url: string): Api {
  const { apiKey } = apiSettings(url);
  const client = createHoldfastClient({ baseUrl: url, apiKey, protocol: "grpc" });
  return { client, url };
}

/** HOLDFAST_KEY, and `url` once checked; refuses with a usage error what cannot work. */
export function apiSettings(url: string): { url: string; apiKey: string } {
  const apiKey = process.env.HOLDFAST_KEY;
  if (!apiKey) {
    throw new UsageError(
      "set HOLDFAST_KEY to an API key (hf_...); an operator makes one with `holdfast keys create`",
    );
  }
  if (!/^https?:\/\/[^/\s]+\/?$/.test(url)) {
    throw new UsageError(
      terminal`HOLDFAST_URL (or --url) must look like http://127.0.0.1:8080, not "${url}"`,
    );
  }
  return { url, apiKey };
}

/** A slot's time on its resource's clock: "Mon 2030-03-04 09:00-09:30  America/New_York (-05:00)". */
export function describeSlot(slot: Slot): string {
  const zone = slot.timeZone || "UTC";
  const start = slot.startTime ? msOfTimestamp(slot.startTime) : 0;
  const end = slot.endTime ? msOfTimestamp(slot.endTime) : 0;
  return terminal`${localRange(start, end, zone)}  ${zoneLabel(start, zone)}  ${slot.resourceId}  ${slot.slotId}`;
}

/**
 * Turns an error of the API into what a person needs: the stable reason,
 * the server's message, the fields to fix, and for a taken time the free
 * ones nearby, every field named by the flag that gave it (`flags`: the
 * command's own; the API's field path where no flag gave it). Errors that
 * did not come from the server say where it was looked for. A UsageError raised while talking to the server (arguments
 * checked mid-command) passes through unchanged, and a refusal of a value
 * as invalid (badInput) becomes one: both get the usage and exit code 2.
 */
export async function explainApiError(
  err: unknown,
  api: Api,
  flags: FlagNames = {},
): Promise<CommandFailed | UsageError> {
  if (err instanceof UsageError) return err;
  if (!(err instanceof ConnectError)) return new CommandFailed(visible(String(err)));
  const Failure = badInput(err) ? UsageError : CommandFailed;
  const info = err.findDetails(ErrorInfoSchema)[0];
  if (!info) {
    const unreachable = [Code.Unavailable, Code.Unknown, Code.Canceled, Code.Internal];
    return new Failure(
      unreachable.includes(err.code)
        ? terminal`cannot reach Holdfast at ${api.url}: ${err.rawMessage}`
        : visible(err.rawMessage),
    );
  }
  const message = inFlagWords(err.rawMessage, flags);
  const lines = [`${info.reason}: ${message}`];
  for (const bad of err.findDetails(BadRequestSchema)) {
    for (const v of violationsInFlagWords(bad.fieldViolations, flags)) {
      // Most messages already say "invalid request: <field>: <description>".
      const line = `${v.field}: ${v.description}`;
      if (!message.includes(line)) lines.push(`  ${line}`);
    }
  }
  for (const conflict of err.findDetails(SlotConflictSchema)) {
    for (const taken of conflict.conflicts) {
      const start = taken.startTime ? msOfTimestamp(taken.startTime) : 0;
      const end = taken.endTime ? msOfTimestamp(taken.endTime) : 0;
      // Each range names its resource's zone (UTC for an answer stored
      // under an Idempotency-Key before ranges carried one).
      const zone = taken.timeZone || "UTC";
      lines.push(
        `in the way: ${localRange(start, end, zone)}  ${zoneLabel(start, zone)} (${BookingStatus[taken.status]})`,
      );
    }
    if (conflict.alternatives.length > 0) lines.push("free instead:");
    for (const slot of conflict.alternatives) lines.push(`  ${describeSlot(slot)}`);
  }
  // The server's words, and every field and name in them, shown line by line.
  return new Failure(lines.map(visible).join("\n"));
}

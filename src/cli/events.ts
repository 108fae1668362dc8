import { setTimeout as sleep } from "node:timers/promises";
import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Command } from "commander";
import { ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { type Event, EventSchema } from "../../gen/holdfast/v1/event_pb.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { connect, explainApiError } from "./api.js";
import { count, list } from "./arguments.js";
import { UsageError } from "./failure.js";
import { localRange, printJson, terminal, visible, zoneLabel } from "./output.js";

const MAX_BACKOFF_MS = 5_000;

/** What a refusal of the stream calls the options `events tail` took. */
const FLAGS = {
  "filter.types": "--type",
  "filter.resource_ids": "--resource",
  "filter.service_ids": "--service",
  after: "--after",
};

/**
 * `holdfast events tail`: follows the event stream (WatchEvents) until
 * Ctrl-C, or until `--limit` events have come (to wait for one). It rides
 * out server restarts and CONSUMER_TOO_SLOW by resuming from the cursor the
 * error that ended the stream carries (ErrorInfo metadata `cursor`): past
 * the last event it printed and past the events its filter skipped since,
 * so nothing is skipped or printed twice, a tail that printed nothing resumes
 * too, and retention deleting the skipped events meanwhile does not make
 * its cursor expire. A stream broken without one resumes from the last
 * cursor the stream sent, an event's or a heartbeat's (or from where it
 * started, unless that was "now" and no cursor came yet).
 */
export function eventCommands(program: Command): void {
  const events = program.command("events").description("booking events");
  events
    .command("tail")
    .description("follow events as they commit (Ctrl-C to stop)")
    .option("--type <type...>", "only these types, e.g. booking.confirmed (comma-separated)", list)
    .option("--resource <resource-id...>", "only bookings of these resources", list)
    .option("--service <service-id...>", "only bookings of these services", list)
    .option("--after <cursor>", "resume after this event cursor")
    .option("--from-beginning", "start from the oldest kept event instead of now")
    .option(
      "--limit <n>",
      "stop after this many events (default: follow until Ctrl-C)",
      count(1_000_000),
    )
    .action(async (o, cmd: Command) => {
      if (o.after !== undefined && o.fromBeginning) {
        throw new UsageError("give --after or --from-beginning, not both");
      }
      const globals = cmd.optsWithGlobals<{ json: boolean; url: string }>();
      const api = connect(globals.url);
      const stop = new AbortController();
      for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => stop.abort());
      const filter = {
        types: o.type ?? [],
        resourceIds: o.resource ?? [],
        serviceIds: o.service ?? [],
      };
      let after: string = o.after ?? "";
      let fromBeginning = Boolean(o.fromBeginning);
      let received = 0;
      let backoffMs = 250;
      while (!stop.signal.aborted) {
        try {
          const stream = api.client.events.watchEvents(
            { after, fromBeginning, filter, heartbeats: true },
            { signal: stop.signal },
          );
          for await (const { event, cursor } of stream) {
            // A heartbeat's cursor is past events the filter skipped: resume
            // from there if the connection drops without an error to say.
            if (cursor !== "") {
              after = cursor;
              fromBeginning = false;
            }
            if (!event) continue;
            if (globals.json) printJson(toJson(EventSchema, event));
            else process.stdout.write(`${eventLine(event)}\n`);
            after = event.cursor;
            fromBeginning = false;
            received++;
            backoffMs = 250;
            if (received === o.limit) {
              stop.abort();
              break;
            }
          }
        } catch (err) {
          if (stop.signal.aborted) break;
          const resumeFrom = cursorOf(err);
          if (resumeFrom !== undefined) {
            after = resumeFrom;
            fromBeginning = false;
          }
          // Started from now and given no cursor since: resuming would start
          // from a later now, skipping what committed meanwhile.
          const placed = after !== "" || fromBeginning;
          if (!(placed && resumable(err))) throw await explainApiError(err, api, FLAGS);
          process.stderr.write(
            terminal`(stream interrupted: ${ConnectError.from(err).rawMessage}; resuming)\n`,
          );
        }
        await sleep(backoffMs, undefined, { signal: stop.signal }).catch(() => {});
        backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
      }
    });
}

/** The stream broke in a way that resuming from the last cursor mends. */
function resumable(err: unknown): boolean {
  const ce = ConnectError.from(err);
  const reason = ce.findDetails(ErrorInfoSchema)[0]?.reason;
  if (reason === "CONSUMER_TOO_SLOW" || reason === "UNAVAILABLE") return true;
  return (
    reason === undefined &&
    [Code.Unavailable, Code.Canceled, Code.Unknown, Code.Internal].includes(ce.code)
  );
}

/** The cursor an error that ended a stream says to resume from (ErrorInfo metadata), if any. */
function cursorOf(err: unknown): string | undefined {
  const cursor = ConnectError.from(err).findDetails(ErrorInfoSchema)[0]?.metadata.cursor;
  return cursor === undefined || cursor === "" ? undefined : cursor;
}

/** An event on one line; what the server sent (a webhook's `detail` above all) shown with visible(). */
function eventLine(e: Event): string {
  const occurred = e.occurTime ? new Date(msOfTimestamp(e.occurTime)).toISOString() : "";
  const b = e.booking;
  if (!b) return visible([occurred, e.type, e.webhookId, e.detail].join("  "));
  const zone = b.timeZone || "UTC";
  const start = b.startTime ? msOfTimestamp(b.startTime) : 0;
  const end = b.endTime ? msOfTimestamp(b.endTime) : 0;
  return visible(
    [
      occurred,
      e.type.padEnd(21),
      b.id,
      (BookingStatus[b.status] ?? "").padEnd(9),
      localRange(start, end, zone),
      zoneLabel(start, zone),
      b.resourceId,
    ].join("  "),
  );
}

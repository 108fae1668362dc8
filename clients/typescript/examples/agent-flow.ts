/**
 * An agent's booking flow with the installed package:
 *   node agent-flow.js URL KEY SERVICE_ID grpc|connect|web
 * Prints what happened as JSON. test/client/package.test.ts packs the
 * package, installs it outside the repository and runs this.
 */
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import { BookingStatus, HoldfastError, createHoldfastClient as nodeClient } from "@holdfast/client";
import { createHoldfastClient as webClient } from "@holdfast/client/web";

const [baseUrl = "", apiKey = "", serviceId = "", transport = "grpc"] = process.argv.slice(2);
const hf =
  transport === "web"
    ? webClient({ baseUrl, apiKey })
    : nodeClient({ baseUrl, apiKey, protocol: transport === "connect" ? "connect" : "grpc" });
const DAY = 24 * 60 * 60 * 1000;

const { slots } = await hf.availability.listSlots({
  serviceId,
  startTime: timestampFromMs(Date.now() + DAY),
  endTime: timestampFromMs(Date.now() + 8 * DAY),
  pageSize: 3,
});
const slotId = slots[0]?.slotId ?? "";

// The agent picks the key, so a retry after its own crash is the same request.
const key = crypto.randomUUID();
const held = await hf.bookings.createHold(
  { slotId, attendee: { name: "Ada" } },
  { headers: { "idempotency-key": key } },
);
let replayed = false;
const again = await hf.bookings.createHold(
  { slotId, attendee: { name: "Ada" } },
  {
    headers: { "idempotency-key": key },
    onHeader: (h) => {
      replayed = h.get("idempotent-replayed") === "true";
    },
  },
);

let conflict: Record<string, unknown> = {};
try {
  await hf.bookings.createHold({ slotId, attendee: { name: "Bob" } });
} catch (err) {
  if (!(err instanceof HoldfastError)) throw err;
  conflict = {
    reason: err.reason,
    isConnectError: err instanceof ConnectError,
    alternatives: err.alternatives.map((s) => s.slotId),
  };
}

let invalid: Record<string, unknown> = {};
try {
  await hf.resources.createResource({ name: "Room", timeZone: "Mars/Olympus_Mons" });
} catch (err) {
  if (!(err instanceof HoldfastError)) throw err;
  invalid = { reason: err.reason, fields: err.fieldViolations.map((v) => v.field) };
}

const bookingId = held.booking?.id ?? "";
const confirmed = await hf.bookings.confirmBooking({ bookingId });
const cancelled = await hf.bookings.cancelBooking({ bookingId, reason: "plans changed" });

// Follow the events: two, then resume after the second's cursor for the third.
const giveUp = new AbortController();
const timer = setTimeout(() => giveUp.abort(), 20_000);
const signal = giveUp.signal;
const events: string[] = [];
let cursor = "";
for await (const { event } of hf.events.watchEvents({ fromBeginning: true }, { signal })) {
  if (!event) continue; // a heartbeat: only a cursor
  events.push(event.type);
  cursor = event.cursor;
  if (events.length === 2) break;
}
for await (const { event } of hf.events.watchEvents({ after: cursor }, { signal })) {
  if (!event) continue;
  events.push(event.type);
  break;
}
// Ends what the streams left open, so the process can exit.
clearTimeout(timer);
giveUp.abort();

console.log(
  JSON.stringify({
    slotId,
    held: held.booking?.id,
    again: again.booking?.id,
    replayed,
    conflict,
    invalid,
    confirmed: BookingStatus[confirmed.booking?.status ?? 0],
    cancelled: BookingStatus[cancelled.booking?.status ?? 0],
    events,
  }),
);

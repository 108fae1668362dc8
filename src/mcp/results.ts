import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { type Booking, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { localDateTime } from "../domain/time.js";
import { BOOKING_STATUS, msOfTimestamp } from "../rpc/convert.js";
import { instantText } from "../zod-messages.js";

/**
 * What the MCP tools answer: every answer, success or failure, is a tool
 * result a model can read (a summary sentence, then the data as JSON) and
 * a program can parse (`structuredContent`). Failures are never protocol
 * errors: they carry the API's stable reason, the message, a one-line hint
 * of what to do next, the arguments to fix, and free slots to offer instead.
 */

export function iso(t: Timestamp | undefined): string | undefined {
  return t ? new Date(msOfTimestamp(t)).toISOString() : undefined;
}

export type SlotView = {
  slot_id: string;
  resource_id: string;
  start_time: string | undefined;
  end_time: string | undefined;
  local_start_time: string;
  local_end_time: string;
  time_zone: string;
  remaining: number;
};

export function slotView(s: Slot): SlotView {
  return {
    slot_id: s.slotId,
    resource_id: s.resourceId,
    start_time: iso(s.startTime),
    end_time: iso(s.endTime),
    local_start_time: s.localStartTime,
    local_end_time: s.localEndTime,
    time_zone: s.timeZone,
    remaining: s.remaining,
  };
}

/**
 * A booking for a model. `hold_seconds_left` is counted on this process's
 * clock, for display only: the database decides when a hold has lapsed.
 */
export function bookingView(b: Booking, nowMs = Date.now()): Record<string, unknown> {
  const view: Record<string, unknown> = {
    booking_id: b.id,
    status: BOOKING_STATUS.nameOf(b.status) ?? "unknown",
    service_id: b.serviceId,
    resource_id: b.resourceId,
    start_time: iso(b.startTime),
    end_time: iso(b.endTime),
    local_start_time: b.localStartTime,
    local_end_time: b.localEndTime,
    time_zone: b.timeZone,
  };
  if (b.status === BookingStatus.HELD && b.expireTime) {
    view.hold_expires_at = iso(b.expireTime);
    if (b.timeZone)
      view.local_hold_expires_at = localDateTime(msOfTimestamp(b.expireTime), b.timeZone);
    view.hold_seconds_left = Math.max(0, Math.round((msOfTimestamp(b.expireTime) - nowMs) / 1000));
  }
  const a = b.attendee;
  if (a && (a.name || a.email || a.phone)) {
    view.attendee = Object.fromEntries(
      Object.entries({ name: a.name, email: a.email, phone: a.phone }).filter(([, v]) => v),
    );
  }
  if (b.metadata && Object.keys(b.metadata).length > 0) view.metadata = b.metadata;
  if (b.cancelReason) view.cancel_reason = b.cancelReason;
  return view;
}

/** "2030-03-04T09:00:00-05:00" -> "2030-03-04 09:00". */
function wall(local: string): string {
  return local.slice(0, 16).replace("T", " ");
}

/** One sentence about a booking: its status, its local and UTC times, and a hold's time left. */
export function describeBooking(b: Booking, nowMs = Date.now()): string {
  const status = (BOOKING_STATUS.nameOf(b.status) ?? "unknown").toUpperCase();
  const local = b.localStartTime
    ? `${wall(b.localStartTime)}-${b.localEndTime.slice(11, 16)} ${b.timeZone}`
    : "";
  const utc = `${iso(b.startTime)?.slice(0, 16).replace("T", " ")}-${iso(b.endTime)?.slice(11, 16)} UTC`;
  let text = `Booking ${b.id} is ${status} for ${local ? `${local} (${utc})` : utc}`;
  if (b.status === BookingStatus.HELD && b.expireTime) {
    const left = Math.max(0, Math.round((msOfTimestamp(b.expireTime) - nowMs) / 1000));
    const expires = msOfTimestamp(b.expireTime);
    const at = b.timeZone
      ? `${wall(localDateTime(expires, b.timeZone))} ${b.timeZone}, ${instantText(b.expireTime)}`
      : instantText(b.expireTime);
    text += `; the hold lapses in ${left} s (at ${at}): confirm_booking before then`;
  }
  return `${text}.`;
}

export function ok(summary: string, data: Record<string, unknown>): CallToolResult {
  return {
    content: [{ type: "text", text: `${summary}\n${JSON.stringify(data)}` }],
    structuredContent: data,
  };
}

/** A failure the tools found themselves (bad arguments), with the API's reasons. */
export class ToolFailure extends Error {
  constructor(
    readonly reason: string,
    message: string,
    readonly fieldViolations: { field: string; description: string }[] = [],
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** A bad argument, named. */
export function badArgument(field: string, description: string): ToolFailure {
  return new ToolFailure("VALIDATION_ERROR", `${field}: ${description}`, [{ field, description }]);
}

const HINTS: Record<string, string> = {
  SLOT_UNAVAILABLE:
    "That time was just taken: offer the caller one of `alternatives` (hold it by its slot_id), or call find_slots.",
  OUTSIDE_WORKING_HOURS:
    "That time is not bookable for this resource: offer one of `alternatives`, or call find_slots.",
  SCHEDULE_BLOCKED:
    "That time is blocked on the resource's calendar: offer one of `alternatives`, or call find_slots.",
  OFF_GRID:
    "Bookings start only on the service's grid: use a start time from find_slots or `alternatives`.",
  INVALID_DURATION:
    "Use one of the service's durations, or leave duration_minutes out: find_slots offers only lengths the service has.",
  TOO_SOON: "Too close to now for this service's notice period: pick a later slot (find_slots).",
  TOO_FAR_AHEAD: "Further ahead than this service books: pick an earlier slot (find_slots).",
  HOLD_EXPIRED: "The hold lapsed and its time may be gone: call find_slots, then hold_slot again.",
  INVALID_STATE:
    "The booking's status does not allow this: call get_booking and tell the caller its status.",
  BOOKING_NOT_FOUND: "No such booking for this API key: check booking_id (list_bookings).",
  SERVICE_NOT_FOUND:
    "No such service: check service_id (list_services, where this key has it; else the id you were given).",
  RESOURCE_NOT_FOUND:
    "No such resource: check resource_id, or leave it out and let find_slots pick a free one.",
  RESOURCE_INACTIVE:
    "That resource takes no bookings now: leave resource_id out and let find_slots offer another.",
  SERVICE_INACTIVE:
    "That service takes no bookings now: choose another (list_services, where this key has it).",
  RESOURCE_NOT_IN_SERVICE:
    "That resource does not offer this service: leave resource_id out and let find_slots offer one that does.",
  INVALID_SLOT_ID:
    "slot_id must be copied exactly from find_slots or `alternatives`: call find_slots again.",
  INVALID_PAGE_TOKEN: "Start the listing again without page_token.",
  VALIDATION_ERROR: "Fix the arguments named in `field_violations` and call again.",
  MALFORMED_REQUEST: "Fix the arguments named in `field_violations` and call again.",
  IDEMPOTENCY_KEY_REUSED:
    "This idempotency_key was used with other arguments: use a new key for a new request.",
  IDEMPOTENCY_KEY_REQUIRED:
    "Call again with an idempotency_key of your own (new for a new request, the same for a retry).",
  IDEMPOTENCY_KEY_INVALID: "idempotency_key must be 1 to 255 printable ASCII characters.",
  UNAUTHENTICATED:
    "The API key is not valid or was revoked: ask the user to configure a valid key; do not retry.",
  MISSING_SCOPE: "This API key may not do this: tell the user; do not retry.",
  UNAVAILABLE: "A temporary failure: retry the same call (same idempotency_key) in a few seconds.",
  DEADLINE_EXCEEDED:
    "It took too long: retry the same call (same idempotency_key); it will not book twice.",
  INTERNAL: "The server failed: retry once with the same arguments, then tell the user.",
  RATE_LIMITED:
    "Too many calls for this API key or tenant right now: wait retry_delay_ms, then retry the same call (same idempotency_key).",
  LIMIT_REACHED:
    "The tenant's plan allows no more of this (see `quota`, `limit`, `usage`): tell the user; do not retry until something is freed (e.g. a hold cancelled) or the quota raised.",
};

/** TOO_SOON for a time already begun, which no notice period explains. */
export const PAST_HINT =
  "That time has already begun (it is in the past): pick a time from now on (find_slots), and check the date and time zone you gave.";

export function hintOf(reason: string, message = ""): string {
  if (reason === "TOO_SOON" && message.includes("already begun")) return PAST_HINT;
  return HINTS[reason] ?? "Tell the user what failed; do not retry with the same arguments.";
}

export type FailureView = {
  reason: string;
  message: string;
  hint: string;
  field_violations?: { field: string; description: string }[];
  conflicts?: {
    start_time?: string;
    end_time?: string;
    local_start_time?: string;
    local_end_time?: string;
    time_zone?: string;
    resource_id?: string;
    status: string;
  }[];
  alternatives?: SlotView[];
  /** LIMIT_REACHED: the quota used up, its limit and what is in use. */
  quota?: { quota: string; limit: number; usage: number };
  /** RATE_LIMITED (once the tool's own retries gave up): how long to wait. */
  retry_delay_ms?: number;
};

/** The API's error (or the tools' own) as data a model can act on. */
export function failureOf(err: unknown): FailureView {
  if (err instanceof ToolFailure) {
    const view: FailureView = {
      reason: err.reason,
      message: err.message,
      hint: hintOf(err.reason),
      ...(err.extra as object),
    };
    if (err.fieldViolations.length > 0) view.field_violations = err.fieldViolations;
    return view;
  }
  const e = ConnectError.from(err);
  const info = e.findDetails(ErrorInfoSchema)[0];
  const reason = info?.reason ?? (e.code === Code.Unavailable ? "UNAVAILABLE" : "INTERNAL");
  const view: FailureView = { reason, message: e.rawMessage, hint: hintOf(reason, e.rawMessage) };
  const meta = info?.metadata ?? {};
  if (reason === "LIMIT_REACHED" && meta.quota !== undefined) {
    view.quota = { quota: meta.quota, limit: Number(meta.limit), usage: Number(meta.usage) };
  }
  if (reason === "RATE_LIMITED" && meta.retry_delay_ms !== undefined) {
    view.retry_delay_ms = Number(meta.retry_delay_ms);
  }
  const violations = e.findDetails(BadRequestSchema).flatMap((b) => b.fieldViolations);
  if (violations.length > 0) {
    view.field_violations = violations.map((v) => ({ field: v.field, description: v.description }));
  }
  for (const c of e.findDetails(SlotConflictSchema)) {
    view.conflicts = c.conflicts.map((r) => ({
      start_time: iso(r.startTime),
      end_time: iso(r.endTime),
      // Empty in answers stored under an Idempotency-Key before the API gave them.
      ...(r.timeZone && {
        local_start_time: r.localStartTime,
        local_end_time: r.localEndTime,
        time_zone: r.timeZone,
      }),
      ...(r.resourceId && { resource_id: r.resourceId }),
      status: BOOKING_STATUS.nameOf(r.status) ?? "unknown",
    }));
    view.alternatives = c.alternatives.map(slotView);
  }
  return view;
}

export function failed(view: FailureView): CallToolResult {
  const offers = (view.alternatives ?? [])
    .map((s) => `${wall(s.local_start_time)} ${s.time_zone} (slot_id ${s.slot_id})`)
    .join("; ");
  const text = [
    `${view.reason}: ${view.message}`,
    `Hint: ${view.hint}`,
    ...(offers ? [`Free instead: ${offers}`] : []),
    JSON.stringify({ error: view }),
  ].join("\n");
  return {
    content: [{ type: "text", text }],
    structuredContent: { error: view },
    isError: true,
  };
}

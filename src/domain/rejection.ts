/**
 * Why a request was refused, in the booking domain's own terms. Each stable
 * reason has exactly one status class here; the RPC layer turns a Rejection
 * into a Connect error with the same reason in a google.rpc.ErrorInfo.
 * Clients branch on the reason, never on the message.
 */
export const REASONS = {
  // Bad input.
  VALIDATION_ERROR: "invalid_argument",
  MALFORMED_REQUEST: "invalid_argument",
  REQUEST_TOO_LARGE: "invalid_argument",
  UNSUPPORTED_CONTENT_TYPE: "invalid_argument",
  INVALID_PAGE_TOKEN: "invalid_argument",
  INVALID_SLOT_ID: "invalid_argument",
  INVALID_CURSOR: "invalid_argument",
  IDEMPOTENCY_KEY_INVALID: "invalid_argument",
  IDEMPOTENCY_KEY_REUSED: "invalid_argument",
  // Who is calling.
  UNAUTHENTICATED: "unauthenticated",
  MISSING_SCOPE: "permission_denied",
  // What the request names.
  RESOURCE_NOT_FOUND: "not_found",
  SERVICE_NOT_FOUND: "not_found",
  BOOKING_NOT_FOUND: "not_found",
  OVERRIDE_NOT_FOUND: "not_found",
  API_KEY_NOT_FOUND: "not_found",
  TENANT_NOT_FOUND: "not_found",
  CALENDAR_FEED_NOT_FOUND: "not_found",
  WEBHOOK_NOT_FOUND: "not_found",
  DELIVERY_NOT_FOUND: "not_found",
  POLICY_VERSION_NOT_FOUND: "not_found",
  HEALTH_SERVICE_NOT_FOUND: "not_found",
  TENANT_NAME_TAKEN: "already_exists",
  // Booking rules.
  SLOT_UNAVAILABLE: "aborted",
  HOLD_EXPIRED: "failed_precondition",
  INVALID_STATE: "failed_precondition",
  NOT_STARTED: "failed_precondition",
  RESOURCE_INACTIVE: "failed_precondition",
  SERVICE_INACTIVE: "failed_precondition",
  RESOURCE_NOT_IN_SERVICE: "failed_precondition",
  // A capacity lowered below the live bookings that overlap on the resource.
  CAPACITY_BELOW_BOOKINGS: "failed_precondition",
  INVALID_DURATION: "failed_precondition",
  OUTSIDE_WORKING_HOURS: "failed_precondition",
  SCHEDULE_BLOCKED: "failed_precondition",
  OFF_GRID: "failed_precondition",
  TOO_SOON: "failed_precondition",
  TOO_FAR_AHEAD: "failed_precondition",
  CURSOR_EXPIRED: "failed_precondition",
  // Webhook deliveries.
  DELIVERY_IN_FLIGHT: "failed_precondition",
  WEBHOOK_DISABLED: "failed_precondition",
  // Capacity of the server or of a consumer.
  CONSUMER_TOO_SLOW: "resource_exhausted",
  // A tenant has as many event streams open on an instance as it may (ErrorInfo metadata limit).
  TOO_MANY_STREAMS: "resource_exhausted",
  // Over a rate limit (of the API key or its tenant): retry after the delay given.
  RATE_LIMITED: "resource_exhausted",
  // A tenant quota is used up (ErrorInfo metadata quota, limit, usage; a QuotaFailure detail).
  LIMIT_REACHED: "resource_exhausted",
  // Everything else.
  METHOD_NOT_FOUND: "unimplemented",
  DEADLINE_EXCEEDED: "deadline_exceeded",
  CANCELLED: "canceled",
  UNAVAILABLE: "unavailable",
  INTERNAL: "internal",
} as const;

export type Reason = keyof typeof REASONS;
export type RejectionCode = (typeof REASONS)[Reason];

/**
 * The reasons the SQL functions (src/db/functions/*.sql) decide under the
 * lock and return as `rejection('REASON', ...)`; src/db/errors.ts turns them
 * into Rejections. test/db/errors.test.ts fails when a function file names a
 * reason not listed here, or this lists one no function names.
 */
export const DATABASE_REASONS = [
  "BOOKING_NOT_FOUND",
  "HOLD_EXPIRED",
  "IDEMPOTENCY_KEY_REUSED",
  "INVALID_STATE",
  "LIMIT_REACHED",
  "NOT_STARTED",
  "SLOT_UNAVAILABLE",
  "TOO_FAR_AHEAD",
  "TOO_SOON",
] as const satisfies readonly Reason[];

/** One bad field of a request, named by its proto path (`policy.durations[0]`). */
export type FieldViolation = { field: string; description: string };

/**
 * A booked range in the way of a request, on `resourceId` (whose IANA zone
 * its local times are given in); never carries another caller's data.
 */
export type ConflictingRange = {
  startMs: number;
  endMs: number;
  status: string;
  resourceId: string;
  timeZone: string;
};

/** A free time offered instead of a taken one. */
export type OfferedSlot = {
  resourceId: string;
  startMs: number;
  endMs: number;
  remaining: number;
  slotId: string;
  /** The resource's IANA zone, for the slot's local wall-clock times. */
  timeZone: string;
};

export type RejectionDetails = {
  fieldViolations?: FieldViolation[];
  conflicts?: ConflictingRange[];
  alternatives?: OfferedSlot[];
  /** When to try again, sent as a google.rpc.RetryInfo. */
  retryDelayMs?: number;
  /** Extra ErrorInfo metadata (string values), e.g. a resume cursor. */
  metadata?: Record<string, string>;
};

export class Rejection extends Error {
  readonly code: RejectionCode;
  constructor(
    readonly reason: Reason,
    message: string,
    readonly details: RejectionDetails = {},
  ) {
    super(message);
    this.name = "Rejection";
    this.code = REASONS[reason];
  }
}

/** At most this many field violations are reported, in a message and in its details. */
export const MAX_VIOLATIONS = 20;

/**
 * A VALIDATION_ERROR naming the bad fields at once: the first
 * MAX_VIOLATIONS of them, and how many more there are, so that an answer
 * never grows with the request.
 */
export function invalid(violations: FieldViolation[]): Rejection {
  return new Rejection("VALIDATION_ERROR", summary("invalid request", violations), {
    fieldViolations: bounded(violations),
  });
}

/** The NOT_FOUND answers for what a request names, with the field that named it. */
export function serviceNotFound(id: string, field = "service_id"): Rejection {
  return new Rejection("SERVICE_NOT_FOUND", `no service with id "${id}"`, {
    fieldViolations: [{ field, description: "no such service" }],
  });
}

export function resourceNotFound(id: string, field = "resource_id"): Rejection {
  return new Rejection("RESOURCE_NOT_FOUND", `no resource with id "${id}"`, {
    fieldViolations: [{ field, description: "no such resource" }],
  });
}

export function bookingNotFound(id: string): Rejection {
  return new Rejection("BOOKING_NOT_FOUND", `no booking with id "${id}"`, {
    fieldViolations: [{ field: "booking_id", description: "no such booking" }],
  });
}

/** The first MAX_VIOLATIONS violations, with descriptions of reasonable length. */
export function bounded(violations: readonly FieldViolation[]): FieldViolation[] {
  return violations.slice(0, MAX_VIOLATIONS).map((v) => ({
    field: clipText(v.field, 200),
    description: clipText(v.description, 500),
  }));
}

/** "<prefix>: a: ...; b: ...", naming the first violations and how many more there are. */
export function summary(prefix: string, violations: readonly FieldViolation[]): string {
  const shown = bounded(violations);
  const more = violations.length - shown.length;
  const text = shown.map((v) => `${v.field}: ${v.description}`).join("; ");
  return `${prefix}: ${text}${more > 0 ? `; and ${more} more` : ""}`;
}

/** At most `n` characters of a text that may echo what a caller sent. */
export function clipText(text: string, n: number): string {
  return text.length > n ? `${text.slice(0, n)}…` : text;
}

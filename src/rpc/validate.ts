import type { DescEnum, JsonObject } from "@bufbuild/protobuf";
import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { z } from "zod";
import { MAX_QUOTA, type Quotas } from "../domain/quota.js";
import { MAX_RATE, type RateLimit } from "../domain/rate-limit.js";
import { type FieldViolation, invalid } from "../domain/rejection.js";
import { freeTextProblem, lineProblem } from "../domain/text.js";
import { canonicalTimeZone, EARLIEST_MS, LATEST_MS } from "../domain/time.js";
import { msOfDuration, msOfTimestamp } from "./convert.js";
import "../zod-messages.js";

/**
 * Request validation with zod, for what protobuf types cannot express
 * (lengths, ranges, formats, time zones). Violations name fields by their
 * proto path, e.g. `policy.durations[0]`, whatever the wire format.
 */

/**
 * Parses `message` with `schema`, or throws VALIDATION_ERROR naming every bad
 * field. NUL characters were refused before any handler ran (checkRequest
 * in src/rpc/limits.ts).
 */
export function parseRequest<T>(schema: z.ZodType<T>, message: unknown): T {
  const result = schema.safeParse(message);
  if (result.success) return result.data;
  throw invalid(result.error.issues.map(violationOf));
}

const NUL_MESSAGE = "must not contain a NUL character (U+0000)";

/**
 * Every text a request carries, checked once for every request: Postgres
 * stores no NUL character in text or JSON, so one would otherwise be refused
 * only at the write, without naming the field. Names the field (a map's or
 * a Struct's key as sent: `metadata.note`, `metadata["a b"]`).
 */
export function nulViolations(message: unknown): FieldViolation[] {
  // Nearly every request has none: look without naming fields first.
  if (!carriesNul(message)) return [];
  const found: FieldViolation[] = [];
  const visit = (value: unknown, path: string): void => {
    if (typeof value === "string") {
      if (value.includes("\0")) found.push({ field: path || "request", description: NUL_MESSAGE });
      return;
    }
    if (value === null || typeof value !== "object" || value instanceof Uint8Array) return;
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) visit(item, `${path}[${i}]`);
      return;
    }
    const isMessage = "$typeName" in value;
    for (const [key, v] of Object.entries(value)) {
      if (isMessage) {
        if (key.startsWith("$")) continue;
        if (isOneof(v)) {
          // The set field of a oneof is named as a field of the message.
          if (typeof v.case === "string") visit(v.value, join(path, snake(v.case)));
        } else visit(v, join(path, snake(key)));
      } else {
        // A map or a Struct: the key is the caller's own.
        if (key.includes("\0")) {
          found.push({ field: path || "request", description: `its keys ${NUL_MESSAGE}` });
          continue;
        }
        const step = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
        visit(v, path + step);
      }
    }
  };
  visit(message, "");
  return found;
}

/** Whether any text in `value`, or any key of its objects, holds a NUL character. */
function carriesNul(value: unknown): boolean {
  if (typeof value === "string") return value.includes("\0");
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return false;
  if (Array.isArray(value)) {
    for (const item of value) if (carriesNul(item)) return true;
    return false;
  }
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (key.includes("\0") || carriesNul(record[key])) return true;
  }
  return false;
}

/** protobuf-es's form of a oneof: `{ case, value }` (or `{ case: undefined }`). */
function isOneof(v: unknown): v is { case: unknown; value: unknown } {
  if (v === null || typeof v !== "object" || Array.isArray(v) || "$typeName" in v) return false;
  const keys = Object.keys(v);
  return keys.includes("case") && keys.every((k) => k === "case" || k === "value");
}

const snake = (name: string) => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const join = (path: string, name: string) => (path ? `${path}.${name}` : name);

function violationOf(issue: z.core.$ZodIssue): FieldViolation {
  // A place inside a JSON value (a Struct's keys are the caller's own, kept as written).
  const inside = issue.code === "custom" ? (issue.params?.jsonPath ?? "") : "";
  return { field: protoPath(issue.path) + inside, description: issue.message };
}

/**
 * Reports violations found by a domain check (fields named like
 * `windows[0].start_time`) as issues of the zod value being parsed, so their
 * paths are prefixed with where that value sits in the request.
 */
export function reportViolations(
  ctx: z.core.$RefinementCtx,
  violations: readonly FieldViolation[],
): void {
  for (const violation of violations) {
    const path = violation.field
      .split(/[.[\]]+/)
      .filter(Boolean)
      .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    ctx.addIssue({ code: "custom", message: violation.description, path });
  }
}

/** ["policy", "holdTtl"] -> "policy.hold_ttl"; array indexes become [i]. */
export function protoPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += `${out ? "." : ""}${String(part).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
  }
  return out || "request";
}

/**
 * A message-typed field, which protobuf leaves undefined when unset. Marked
 * optional so that zod hands `undefined` to the transform that follows,
 * which decides whether it is allowed.
 */
export function message<T>() {
  return z.custom<T>().optional();
}

/**
 * A one-line value a person reads (a name, a title): no control, line break
 * or bidi override character (lineProblem in src/domain/text.ts).
 */
function checkLine(text: string, ctx: z.core.$RefinementCtx): void {
  const problem = lineProblem(text);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
}

/** A tenant's, resource's or service's name. */
export const name = z
  .string()
  .trim()
  .min(1, "must not be empty")
  .max(200, "must be at most 200 characters")
  .superRefine(checkLine);

/** An override's title: a name that may be left empty. */
export const title = z
  .string()
  .trim()
  .max(200, "must be at most 200 characters")
  .superRefine(checkLine);

/**
 * Free text: the description of an API key, a calendar feed or a webhook,
 * a cancellation's reason. It may run over lines (tabs and line breaks are
 * kept) but holds no other control or bidi override character
 * (freeTextProblem in src/domain/text.ts).
 */
export const freeText = z
  .string()
  .max(500, "must be at most 500 characters")
  .superRefine((text, ctx) => {
    const problem = freeTextProblem(text);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });

/** No id Holdfast makes is longer (they are about 32 characters); see also limits.ts. */
export const MAX_ID_CHARS = 64;
export const NOT_AN_ID = "is not a valid id";

export const id = z.string().min(1, "must not be empty").max(MAX_ID_CHARS, NOT_AN_ID);

export const optionalId = z.string().max(MAX_ID_CHARS, NOT_AN_ID);

export const timeZone = z
  .string()
  .min(1, "must not be empty")
  .transform((tz, ctx) => {
    const canonical = canonicalTimeZone(tz);
    if (canonical === undefined) {
      ctx.addIssue({
        code: "custom",
        message: `"${tz}" is not an IANA time zone name (e.g. Europe/London)`,
      });
      return z.NEVER;
    }
    return canonical;
  });

const MAX_METADATA_BYTES = 16 * 1024;

/**
 * Caller metadata (a google.protobuf.Struct): at most 16 KiB as UTF-8 JSON
 * (as stored), and only numbers JSON can write. NaN and ±Infinity (a binary request's
 * doubles, or a JSON number such as 1e400) are refused, naming where they
 * are (`metadata.a[2]`): stored, they would turn into null.
 */
export const metadata = message<JsonObject>().transform((m, ctx) => {
  const value = m ?? {};
  const json = JSON.stringify(value);
  // JSON.stringify writes NaN and ±Infinity as null: look for them only then.
  const bad = json.includes("null") ? nonFiniteAt(value) : undefined;
  if (bad !== undefined) {
    ctx.addIssue({
      code: "custom",
      message: "must be a finite number (JSON has no NaN or Infinity)",
      params: { jsonPath: bad },
    });
    return z.NEVER;
  }
  if (Buffer.byteLength(json) > MAX_METADATA_BYTES) {
    ctx.addIssue({ code: "custom", message: "must be at most 16 KiB (16384 bytes) as UTF-8 JSON" });
    return z.NEVER;
  }
  return value;
});

/** Where in a JSON value a non-finite number sits (`.a[2]`, `["a b"]`), or undefined. */
export function nonFiniteAt(value: unknown): string | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? undefined : "";
  if (value === null || typeof value !== "object") return undefined;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const at = nonFiniteAt(value[i]);
      if (at !== undefined) return `[${i}]${at}`;
    }
    return undefined;
  }
  for (const [key, v] of Object.entries(value)) {
    const at = nonFiniteAt(v);
    if (at !== undefined) {
      const step = /^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
      return step + at;
    }
  }
  return undefined;
}

const MAX_DURATION_SECONDS = 315_576_000_000n;

/**
 * Every Timestamp of every request is read here. A binary request's nanos
 * are not checked on the wire, and out of their range they would move the
 * time (seconds T-1 with nanos 1e9 would read as T).
 */
function checkedMs(t: Timestamp, ctx: z.core.$RefinementCtx): number {
  if (!(t.nanos >= 0 && t.nanos <= 999_999_999)) {
    ctx.addIssue({ code: "custom", message: "nanos must be from 0 to 999999999" });
    return z.NEVER;
  }
  const ms = msOfTimestamp(t);
  if (!Number.isFinite(ms) || ms < EARLIEST_MS || ms >= LATEST_MS) {
    ctx.addIssue({ code: "custom", message: "must be between 2000-01-01 and 2200-01-01" });
    return z.NEVER;
  }
  return ms;
}

/** A required google.protobuf.Timestamp, as epoch milliseconds. */
export const timestampMs = message<Timestamp>().transform((t, ctx) => {
  if (t !== undefined) return checkedMs(t, ctx);
  ctx.addIssue({ code: "custom", message: "is required" });
  return z.NEVER;
});

/** An optional google.protobuf.Timestamp, as epoch milliseconds or null. */
export const optionalTimestampMs = message<Timestamp>().transform((t, ctx) =>
  t === undefined ? null : checkedMs(t, ctx),
);

/**
 * A booking's start or end: an optional Timestamp as epoch milliseconds or
 * null. Booking times are on a grid of whole minutes, so one with a part
 * below a millisecond is off it; read to the millisecond it would book
 * another instant than the one asked for. Such a time is read as the middle
 * of its millisecond (a double cannot hold a nanosecond beside today's
 * epoch milliseconds), which no grid or duration holds: the time rules
 * refuse it as they refuse a time a millisecond off (OFF_GRID for a start,
 * INVALID_DURATION for an end). Other Timestamps (list ranges, windows) are
 * read to the millisecond.
 */
export const optionalBookingTimeMs = message<Timestamp>().transform((t, ctx) => {
  if (t === undefined) return null;
  const ms = checkedMs(t, ctx);
  return t.nanos % 1_000_000 === 0 || typeof ms !== "number" ? ms : ms + 0.5;
});

/** An optional non-negative google.protobuf.Duration, as milliseconds or null. */
export const durationMs = message<Duration>().transform((d, ctx) => {
  if (d === undefined) return null;
  const ms = msOfDuration(d);
  if (!Number.isFinite(ms)) {
    ctx.addIssue({ code: "custom", message: "must not be negative" });
    return z.NEVER;
  }
  // google.protobuf.Duration's own range; binary requests are not checked
  // against it before they reach here.
  if (d.seconds > MAX_DURATION_SECONDS || d.nanos > 999_999_999) {
    ctx.addIssue({ code: "custom", message: "is out of range for a Duration" });
    return z.NEVER;
  }
  return ms;
});

/**
 * A protobuf enum value that the schema defines. Binary requests may carry
 * numbers the schema does not know; those, and UNSPECIFIED unless a default
 * is given, are refused.
 */
export function enumValue<T extends number>(desc: DescEnum, defaultValue?: T) {
  return z.number().transform((v, ctx) => {
    if (v === 0 && defaultValue !== undefined) return defaultValue;
    if (v === 0 || !desc.values.some((e) => e.number === v)) {
      const names = desc.values.filter((e) => e.number !== 0).map((e) => e.name);
      ctx.addIssue({ code: "custom", message: `must be one of ${names.join(", ")}` });
      return z.NEVER;
    }
    return v as T;
  });
}

/** page_size is checked by readPage (src/rpc/paging.ts), the one rule for every list. */
export const pageFields = {
  pageToken: z.string().max(1024, "is not a valid page token"),
};

/**
 * The fields an Update call changes, per AIP-134: the paths of
 * `update_mask` when given, else every allowed field that is set (non-empty,
 * non-zero) in the message. Unknown paths are refused.
 */
export function updatePaths(
  mask: { paths: string[] } | undefined,
  message: object,
  allowed: readonly string[],
): Set<string> {
  if (mask && mask.paths.length > 0) {
    const unknown = mask.paths.filter((p) => !allowed.includes(p));
    if (unknown.length > 0) {
      throw invalid([
        {
          field: "update_mask",
          description: `unknown path ${unknown.join(", ")}; allowed: ${allowed.join(", ")}`,
        },
      ]);
    }
    return new Set(mask.paths);
  }
  const set = new Set<string>();
  for (const path of allowed) {
    const value = (message as Record<string, unknown>)[camelCase(path)];
    if (isPopulated(value)) set.add(path);
  }
  return set;
}

function camelCase(snake: string): string {
  return snake.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
}

function isPopulated(value: unknown): boolean {
  if (value === undefined || value === null || value === "" || value === 0 || value === false)
    return false;
  if (Array.isArray(value)) return value.length > 0;
  return true;
}

/**
 * The changes of an Update call, checked: each field named in `paths` (see
 * updatePaths) goes through its schema in `fields`, and fields not named are
 * left out. A field named but unset goes through too, per AIP-134: its schema
 * clears it to its empty value (metadata becomes {}) or refuses it where no
 * empty value is allowed (a service's policy), naming `field.path`. The
 * schemas are therefore not `.optional()`; this is the one place that
 * decides what an Update leaves alone.
 */
export function parseUpdate<Fields extends Record<string, z.ZodType>>(
  field: string,
  fields: Fields,
  message: object,
  paths: Set<string>,
): Partial<{ [K in keyof Fields]: z.output<Fields[K]> }> {
  const shape: Record<string, z.ZodType> = {};
  const values: Record<string, unknown> = {};
  for (const path of paths) {
    const key = camelCase(path);
    const schema = fields[key];
    if (!schema) throw new Error(`no schema for update path ${path}`);
    shape[key] = schema;
    values[key] = (message as Record<string, unknown>)[key];
  }
  const parsed = parseRequest(z.object({ [field]: z.object(shape) }), { [field]: values });
  return parsed[field] as Partial<{ [K in keyof Fields]: z.output<Fields[K]> }>;
}

const rateNumber = z
  .number()
  .int("must be a whole number")
  .min(1, "must be at least 1")
  .max(MAX_RATE, `must be at most ${MAX_RATE}`);

/** A RateLimit message, or undefined when unset (the configured default). */
export const rateLimit = message<{ requestsPerSecond: number; burst: number }>().pipe(
  z
    .object({ requestsPerSecond: rateNumber, burst: rateNumber })
    .optional()
    .transform((r): RateLimit | undefined =>
      r ? { perSecond: r.requestsPerSecond, burst: r.burst } : undefined,
    ),
);

const quota = z
  .number()
  .int("must be a whole number")
  .min(1, "must be at least 1 (leave it unset for no limit)")
  .max(MAX_QUOTA, `must be at most ${MAX_QUOTA}`)
  .optional();

/** A Quotas message; each unset quota is unlimited, and so is an unset message. */
export const quotas = message<Record<string, number | undefined>>().pipe(
  z
    .object({
      bookingsPerMonth: quota,
      activeHolds: quota,
      resources: quota,
      services: quota,
      webhooks: quota,
      apiKeys: quota,
    })
    .optional()
    .transform(
      (q): Quotas => ({
        bookings_per_month: q?.bookingsPerMonth,
        active_holds: q?.activeHolds,
        resources: q?.resources,
        services: q?.services,
        webhooks: q?.webhooks,
        api_keys: q?.apiKeys,
      }),
    ),
);

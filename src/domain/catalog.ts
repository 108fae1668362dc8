import type { FieldViolation } from "./rejection.js";
import { DAY_MS, formatClockTime, HOUR_MS, MINUTE_MS, parseClockTime } from "./time.js";

/**
 * Working time and booking policy, as plain values. Times of day are minutes
 * since local midnight; durations are milliseconds.
 */

/** The most resources a service may name (its `resource_ids`). */
export const MAX_SERVICE_RESOURCES = 500;

/** A weekday window; weekday 1 = Monday ... 7 = Sunday; end may be 1440 (24:00). */
export type WeeklyWindow = { weekday: number; start: number; end: number };

export type WeeklyWindowInput = { weekday: number; startTime: string; endTime: string };

export type Policy = {
  durationsMs: number[];
  /** Grid of start times from local midnight; null: the booking's duration. */
  slotIntervalMs: number | null;
  bufferBeforeMs: number;
  bufferAfterMs: number;
  minNoticeMs: number;
  /** null: no limit. */
  maxAdvanceMs: number | null;
  /** Empty: no limit beyond each resource's own schedule. */
  businessHours: WeeklyWindow[];
  holdTtlMs: number;
  maxHoldTtlMs: number;
};

/**
 * A policy as a caller gives it: null where a field was left out. A
 * negative duration may come as a negative number or as NaN (a wire
 * Duration with negative or mixed signs, see msOfDuration); both are
 * refused as negative.
 */
export type PolicyInput = {
  durationsMs: number[];
  slotIntervalMs: number | null;
  bufferBeforeMs: number | null;
  bufferAfterMs: number | null;
  minNoticeMs: number | null;
  maxAdvanceMs: number | null;
  businessHours: WeeklyWindowInput[];
  holdTtlMs: number | null;
  maxHoldTtlMs: number | null;
};

export const DEFAULT_HOLD_TTL_MS = 120_000;
export const DEFAULT_MAX_HOLD_TTL_MS = 30 * MINUTE_MS;
const MIN_HOLD_TTL_MS = 5_000;
const MAX_HOLD_TTL_MS = DAY_MS;
const MAX_ADVANCE_LIMIT_MS = 5 * 366 * DAY_MS;

type Checked<T> = { value: T; violations: FieldViolation[] };

/**
 * Validates weekly windows and returns them sorted by weekday and start,
 * with overlapping or touching windows of a day merged.
 */
export function checkWeeklyWindows(
  input: readonly WeeklyWindowInput[],
  field: string,
): Checked<WeeklyWindow[]> {
  const violations: FieldViolation[] = [];
  const windows: WeeklyWindow[] = [];
  input.forEach((w, i) => {
    const at = `${field}[${i}]`;
    if (!Number.isInteger(w.weekday) || w.weekday < 1 || w.weekday > 7) {
      violations.push({ field: `${at}.weekday`, description: "must be 1 (Monday) to 7 (Sunday)" });
    }
    const start = parseClockTime(w.startTime, false);
    const end = parseClockTime(w.endTime, true);
    if (start === undefined) {
      violations.push({
        field: `${at}.start_time`,
        description: 'must be "HH:MM" from 00:00 to 23:59',
      });
    }
    if (end === undefined) {
      violations.push({
        field: `${at}.end_time`,
        description: 'must be "HH:MM" from 00:01 to 24:00',
      });
    }
    if (start !== undefined && end !== undefined) {
      if (end <= start)
        violations.push({ field: `${at}.end_time`, description: "must be after start_time" });
      else windows.push({ weekday: w.weekday, start, end });
    }
  });
  return { value: mergeWindows(windows), violations };
}

function mergeWindows(windows: WeeklyWindow[]): WeeklyWindow[] {
  const sorted = [...windows].sort((a, b) => a.weekday - b.weekday || a.start - b.start);
  const merged: WeeklyWindow[] = [];
  for (const w of sorted) {
    const last = merged[merged.length - 1];
    if (last && last.weekday === w.weekday && w.start <= last.end)
      last.end = Math.max(last.end, w.end);
    else merged.push({ ...w });
  }
  return merged;
}

export function weeklyWindowsForDisplay(windows: readonly WeeklyWindow[]): WeeklyWindowInput[] {
  return windows.map((w) => ({
    weekday: w.weekday,
    startTime: formatClockTime(w.start),
    endTime: formatClockTime(w.end),
  }));
}

/**
 * A duration of whole `unit`s (MINUTE_MS or 1000) from `min` to `max`. A
 * negative one is named as such first: "-60s" is a whole number of
 * minutes, and NaN (a negative wire Duration) is no number at all.
 */
function checkDuration(
  ms: number,
  field: string,
  unit: number,
  min: number,
  max: number,
  violations: FieldViolation[],
): void {
  if (!(ms >= 0)) violations.push({ field, description: "must not be negative" });
  else if (ms % unit !== 0) {
    const unitName = unit === MINUTE_MS ? "minutes" : "seconds";
    violations.push({ field, description: `must be a whole number of ${unitName}` });
  } else if (ms < min || ms > max) {
    violations.push({
      field,
      description: `must be between ${describe(min)} and ${describe(max)}`,
    });
  }
}

/** Whether a given duration can stand in for another's default. */
function usable(ms: number | null): ms is number {
  return ms !== null && ms >= 0;
}

function describe(ms: number): string {
  if (ms === 0) return "0";
  if (ms % DAY_MS === 0) return `${ms / DAY_MS} d`;
  if (ms % HOUR_MS === 0) return `${ms / HOUR_MS} h`;
  if (ms % MINUTE_MS === 0) return `${ms / MINUTE_MS} min`;
  return `${ms / 1000} s`;
}

/** Validates a policy and fills in defaults. `field` prefixes violation paths. */
export function checkPolicy(input: PolicyInput, field: string): Checked<Policy> {
  const violations: FieldViolation[] = [];
  const f = (name: string) => (field ? `${field}.${name}` : name);

  if (input.durationsMs.length === 0) {
    violations.push({
      field: f("durations"),
      description: "must list at least one allowed duration",
    });
  }
  if (input.durationsMs.length > 20) {
    violations.push({ field: f("durations"), description: "must list at most 20 durations" });
  }
  input.durationsMs.forEach((ms, i) => {
    checkDuration(ms, `${f("durations")}[${i}]`, MINUTE_MS, MINUTE_MS, DAY_MS, violations);
  });
  const durationsMs = [...new Set(input.durationsMs)];

  if (input.slotIntervalMs !== null) {
    checkDuration(
      input.slotIntervalMs,
      f("slot_interval"),
      MINUTE_MS,
      MINUTE_MS,
      DAY_MS,
      violations,
    );
  }
  for (const [name, ms] of [
    ["buffer_before", input.bufferBeforeMs],
    ["buffer_after", input.bufferAfterMs],
  ] as const) {
    if (ms !== null) checkDuration(ms, f(name), MINUTE_MS, 0, DAY_MS, violations);
  }
  if (input.minNoticeMs !== null)
    checkDuration(input.minNoticeMs, f("min_notice"), MINUTE_MS, 0, 366 * DAY_MS, violations);
  if (input.maxAdvanceMs !== null) {
    checkDuration(
      input.maxAdvanceMs,
      f("max_advance"),
      MINUTE_MS,
      MINUTE_MS,
      MAX_ADVANCE_LIMIT_MS,
      violations,
    );
    if (
      usable(input.minNoticeMs) &&
      usable(input.maxAdvanceMs) &&
      input.maxAdvanceMs <= input.minNoticeMs
    ) {
      violations.push({ field: f("max_advance"), description: "must be longer than min_notice" });
    }
  }

  const hours = checkWeeklyWindows(input.businessHours, f("business_hours"));
  violations.push(...hours.violations);

  // A default follows the other field only when that one is usable, so a
  // bad hold_ttl is not reported again on a max_hold_ttl left out.
  const maxHoldTtlMs =
    input.maxHoldTtlMs ??
    Math.max(DEFAULT_MAX_HOLD_TTL_MS, usable(input.holdTtlMs) ? input.holdTtlMs : 0);
  const holdTtlMs =
    input.holdTtlMs ??
    Math.min(DEFAULT_HOLD_TTL_MS, usable(maxHoldTtlMs) ? maxHoldTtlMs : DEFAULT_HOLD_TTL_MS);
  for (const [name, ms] of [
    ["hold_ttl", holdTtlMs],
    ["max_hold_ttl", maxHoldTtlMs],
  ] as const) {
    checkDuration(ms, f(name), 1000, MIN_HOLD_TTL_MS, MAX_HOLD_TTL_MS, violations);
  }
  if (usable(holdTtlMs) && usable(maxHoldTtlMs) && holdTtlMs > maxHoldTtlMs) {
    violations.push({ field: f("hold_ttl"), description: "must not exceed max_hold_ttl" });
  }

  return {
    value: {
      durationsMs,
      slotIntervalMs: input.slotIntervalMs,
      bufferBeforeMs: input.bufferBeforeMs ?? 0,
      bufferAfterMs: input.bufferAfterMs ?? 0,
      minNoticeMs: input.minNoticeMs ?? 0,
      maxAdvanceMs: input.maxAdvanceMs,
      businessHours: hours.value,
      holdTtlMs,
      maxHoldTtlMs,
    },
    violations,
  };
}

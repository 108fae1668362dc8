import { InvalidArgumentError } from "commander";
import { isCalendarDate, parseDuration } from "../domain/time.js";

/**
 * Parsers for option values. Each refuses a bad value with the format it
 * expects and an example, which commander prints with the usage (exit 2).
 */

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;

/** An RFC 3339 time with an offset, as milliseconds since the epoch. */
export function instant(text: string): number {
  const ms = RFC3339.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new InvalidArgumentError(
      'expected a time with an offset, e.g. "2030-03-04T09:00-05:00" or "2030-03-04T14:00:00Z"',
    );
  }
  return ms;
}

/** A positive duration such as "30m", "90s" or "2h", in milliseconds. */
export function duration(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined || ms <= 0) {
    throw new InvalidArgumentError('expected a duration such as "30m", "90s" or "2h"');
  }
  return ms;
}

/** A calendar date "YYYY-MM-DD". */
export function calendarDate(text: string): string {
  if (!isCalendarDate(text)) throw new InvalidArgumentError('expected a date such as "2030-03-04"');
  return text;
}

/** A whole number from 1 to `max`. */
export function count(max: number): (text: string) => number {
  return (text) => {
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > max) {
      throw new InvalidArgumentError(`expected a whole number from 1 to ${max}`);
    }
    return n;
  };
}

/**
 * A number, e.g. "5", "-3" or "1.5". Only the form is checked here; ranges
 * and whole-number rules are the API's own checks, which name the field.
 */
export function number(text: string): number {
  if (!/^[+-]?(\d+(\.\d*)?|\.\d+)$/.test(text.trim())) {
    throw new InvalidArgumentError('expected a number, e.g. "10"');
  }
  return Number(text);
}

/** Comma-separated values; the option may also be repeated. */
export function list(text: string, previous: string[] = []): string[] {
  const items = text
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  if (items.length === 0) throw new InvalidArgumentError("expected one or more values");
  return [...previous, ...items];
}

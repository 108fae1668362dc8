import { toJson } from "@bufbuild/protobuf";
import { type Timestamp, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { z } from "zod";
import { msInstantText } from "./domain/time.js";

/**
 * zod's own messages in the house style of every other message Holdfast
 * gives: what the value must be ("must be at least 0", "must be a number"),
 * not zod's "Too small: expected number to be >=0". Set once, for the whole
 * process, as zod's global error map (z.config), so every schema (requests,
 * configuration, MCP tool arguments, the CLI) speaks it; a message a schema
 * gives itself still wins. Imported for its effect by each module that
 * parses with zod.
 */

/**
 * An instant as every refusal gives it, in its message and in its ErrorInfo
 * metadata, here and in SQL (ts_text in src/db/functions/01_json.sql;
 * checkCapacity's metadata writes the same for its milliseconds): RFC 3339
 * in UTC as protobuf JSON writes a Timestamp, with no fraction at a whole
 * second and else 3, 6 or 9 digits ("2030-03-04T09:00:00Z",
 * "2030-03-04T09:00:00.250Z"). So a refusal reads the same whichever path
 * raised it, its metadata reads as the API's Timestamps do, and a time from
 * the database keeps its microseconds (Date.toISOString would cut them to
 * milliseconds). Other data (responses, events, webhook bodies) keep their
 * own formats.
 */
export function instantText(t: Timestamp): string {
  return toJson(TimestampSchema, t) as string;
}

type Issue = z.core.$ZodRawIssue;

const UNITS: Record<string, [string, string]> = {
  string: ["character", "characters"],
  array: ["item", "items"],
  set: ["item", "items"],
  map: ["entry", "entries"],
  file: ["byte", "bytes"],
};

const TYPES: Record<string, string> = {
  number: "a number",
  int: "a whole number",
  bigint: "a whole number",
  string: "a string",
  boolean: "true or false",
  array: "a list",
  tuple: "a list",
  object: "an object",
  record: "an object",
  map: "a map",
  set: "a set",
  date: "a date",
  null: "null",
};

const FORMATS: Record<string, string> = {
  email: "an email address",
  url: "a URL",
  uuid: "a UUID",
  guid: "a GUID",
  datetime: "an ISO 8601 date and time",
  date: "an ISO 8601 date (YYYY-MM-DD)",
  time: "an ISO 8601 time",
  duration: "an ISO 8601 duration",
  ipv4: "an IPv4 address",
  ipv6: "an IPv6 address",
  base64: "base64",
  base64url: "base64url",
  e164: "an E.164 phone number",
};

const quote = (v: unknown) => (typeof v === "string" ? JSON.stringify(v) : String(v));

/** "a", "b" or "c" */
function either(values: readonly unknown[]): string {
  const words = values.map(quote);
  return words.length <= 1
    ? words.join("")
    : `${words.slice(0, -1).join(", ")} or ${words[words.length - 1]}`;
}

function bound(
  issue: { origin: string; exact?: boolean; inclusive?: boolean },
  limit: number | bigint | Date,
  side: "least" | "most",
): string {
  const units = UNITS[issue.origin];
  const n = limit instanceof Date ? msInstantText(limit.getTime()) : limit.toString();
  if (units) {
    const verb = issue.origin === "string" || issue.origin === "file" ? "be" : "list";
    if (side === "least" && Number(limit) === 1 && !issue.exact) return "must not be empty";
    const unit = Number(limit) === 1 ? units[0] : units[1];
    return `must ${verb} ${issue.exact ? "exactly" : `at ${side}`} ${n} ${unit}`;
  }
  if (limit instanceof Date) {
    return `must be ${side === "least" ? "at or after" : "at or before"} ${n}`;
  }
  if (issue.exact) return `must be exactly ${n}`;
  if (issue.inclusive === false)
    return `must be ${side === "least" ? "greater" : "less"} than ${n}`;
  return `must be at ${side} ${n}`;
}

/** The house-style message of an issue zod raises itself; undefined keeps zod's own. */
export function houseMessage(issue: Issue): string | undefined {
  switch (issue.code) {
    case "invalid_type": {
      if (issue.input === undefined) return "is required";
      if (issue.expected === "number" && typeof issue.input === "number") {
        return Number.isNaN(issue.input) ? "must be a number" : "must be a finite number";
      }
      const what = TYPES[issue.expected];
      return what ? `must be ${what}` : `must be of type ${issue.expected}`;
    }
    case "too_small":
      return bound(issue, issue.minimum, "least");
    case "too_big":
      return bound(issue, issue.maximum, "most");
    case "invalid_value":
      return issue.values.length === 1
        ? `must be ${quote(issue.values[0])}`
        : `must be one of ${either(issue.values)}`;
    case "invalid_format":
      switch (issue.format) {
        case "regex":
          return `must match ${issue.pattern}`;
        case "starts_with":
          return `must start with ${quote(issue.prefix)}`;
        case "ends_with":
          return `must end with ${quote(issue.suffix)}`;
        case "includes":
          return `must contain ${quote(issue.includes)}`;
        default:
          return `must be ${FORMATS[issue.format] ?? `a valid ${issue.format}`}`;
      }
    case "not_multiple_of":
      return `must be a multiple of ${issue.divisor.toString()}`;
    case "unrecognized_keys":
      return `must not have the key${issue.keys.length === 1 ? "" : "s"} ${either(issue.keys)}`;
    case "invalid_key":
      return "must have valid keys";
    case "invalid_element":
      return "must have valid values";
    case "invalid_union":
      return "must match one of the allowed forms";
    case "custom":
      return "is not valid";
    default:
      return undefined;
  }
}

z.config({ customError: houseMessage });

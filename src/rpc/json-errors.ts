import {
  type DescEnum,
  type DescField,
  type DescMessage,
  fromJson,
  type JsonValue,
  ScalarType,
} from "@bufbuild/protobuf";
import { clipText, Rejection } from "../domain/rejection.js";
import { daysInMonth, isCalendarDate } from "../domain/time.js";
import { messageOf } from "./schema-search.js";

/**
 * Explains why a Connect JSON body does not decode as `desc`, the way a
 * caller (often an LLM agent writing JSON) can correct it: the first bad
 * field, named by its proto path (`filter.types[2]`), or an unknown key
 * under the name the caller sent with the nearest real field, and the
 * expected format with an example. MALFORMED_REQUEST with a field violation.
 */
export function explainJsonError(desc: DescMessage, json: JsonValue, err: unknown): Rejection {
  const found = findProblem(desc, json, "", 0);
  if (found) return malformedField(found);
  const message = err instanceof Error ? err.message : String(err);
  return new Rejection(
    "MALFORMED_REQUEST",
    `request does not match ${desc.typeName}: ${clipText(message.replace(/^cannot decode message [\w.]+ from JSON: /, ""), 200)}`,
  );
}

type Problem = { field: string; description: string };

function malformedField(found: Problem): Rejection {
  const text = `invalid request: ${found.field || "request"}: ${found.description}`;
  return new Rejection("MALFORMED_REQUEST", text, { fieldViolations: [found] });
}

const TIMESTAMP = "google.protobuf.Timestamp";

/**
 * Bodies that may hold a Timestamp protobuf-es would read as another time:
 * February 29 to 31, the 31st of a 30-day month, hour 24, or a \u escape
 * that could spell one.
 */
const MAY_ROLL_OVER = /-(?:02-(?:29|3[01])|(?:0[469]|11)-31)T|T24|\\u/;

/**
 * A Timestamp in a JSON request (`text`, parsed as `json`, which decodes as
 * `desc`) on a day its month does not have ("2026-11-31T…", "2026-02-29T…")
 * or at hour 24: protobuf-es reads them with Date.parse, which rolls them
 * over into the next month or day. MALFORMED_REQUEST naming the field, like
 * any Timestamp that does not parse. Only bodies that could hold one are
 * walked (about 1 µs); the others pay for one regular expression.
 */
export function rolledOverTimestamp(
  desc: DescMessage,
  text: string,
  json: JsonValue,
): Rejection | undefined {
  if (!MAY_ROLL_OVER.test(text)) return undefined;
  const found = findRolledOver(desc, json, "");
  return found && malformedField(found);
}

function findRolledOver(desc: DescMessage, json: JsonValue, path: string): Problem | undefined {
  if (json === null || typeof json !== "object" || Array.isArray(json)) return undefined;
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    const message = field && messageOf(field);
    if (!field || !message || value === null) continue;
    const isTime = message.typeName === TIMESTAMP;
    if (!isTime && message.typeName.startsWith("google.protobuf.")) continue;
    const at = join(path, field.name);
    const items: [string, JsonValue][] =
      field.fieldKind === "list" && Array.isArray(value)
        ? value.map((v, i) => [`${at}[${i}]`, v])
        : field.fieldKind === "map" && typeof value === "object" && !Array.isArray(value)
          ? Object.entries(value).map(([k, v]) => [`${at}["${clipText(k, 40)}"]`, v])
          : [[at, value]];
    for (const [itemPath, item] of items) {
      const found = isTime ? rolledOver(item, itemPath) : findRolledOver(message, item, itemPath);
      if (found) return found;
    }
  }
  return undefined;
}

/** A Timestamp string that parsed but names no real time, explained. */
function rolledOver(value: JsonValue, path: string): Problem | undefined {
  const m = typeof value === "string" ? /^(\d{4})-(\d{2})-(\d{2})T(\d{2})/.exec(value) : null;
  if (!m) return undefined;
  const [, year = "", month = "", day = "", hour = ""] = m;
  let why: string;
  if (!isCalendarDate(`${year}-${month}-${day}`)) {
    why = `${year}-${month} has ${daysInMonth(Number(year), Number(month))} days`;
  } else if (Number(hour) > 23) why = "hours run from 00 to 23";
  else return undefined;
  return { field: path, description: `${WELL_KNOWN[TIMESTAMP]}, got ${shown(value)}: ${why}` };
}

const MAX_DEPTH = 32;

function findProblem(
  desc: DescMessage,
  json: JsonValue,
  path: string,
  depth: number,
): Problem | undefined {
  if (depth > MAX_DEPTH) return { field: path, description: "is nested too deeply" };
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    return { field: path, description: `expected a JSON object, got ${shown(json)}` };
  }
  for (const [key, value] of Object.entries(json)) {
    const field = desc.fields.find((f) => f.jsonName === key || f.name === key);
    if (!field) {
      const near = nearestField(desc, key);
      return {
        field: join(path, key),
        description: `is not a field of ${desc.typeName}${near ? `; did you mean "${near.jsonName}" (${near.name})?` : `; its fields are ${desc.fields.map((f) => f.jsonName).join(", ")}`}`,
      };
    }
    if (value === null || decodes(desc, key, value)) continue;
    return explainField(field, value, join(path, field.name), depth);
  }
  return undefined;
}

function explainField(
  field: DescField,
  value: JsonValue,
  path: string,
  depth: number,
): Problem | undefined {
  switch (field.fieldKind) {
    case "scalar":
      return {
        field: path,
        description: `${scalarExpectation(field.scalar)}, got ${shown(value)}`,
      };
    case "enum":
      return { field: path, description: `${enumExpectation(field.enum)}, got ${shown(value)}` };
    case "message":
      return explainMessage(field.message, value, path, depth);
    case "list": {
      if (!Array.isArray(value)) {
        return { field: path, description: `expected a JSON array, got ${shown(value)}` };
      }
      for (const [i, item] of value.entries()) {
        const at = `${path}[${i}]`;
        let problem: Problem | undefined;
        if (item === null) problem = { field: at, description: "must not be null" };
        else if (field.listKind === "scalar") {
          if (!decodesAs(field, [item])) {
            problem = {
              field: at,
              description: `${scalarExpectation(field.scalar)}, got ${shown(item)}`,
            };
          }
        } else if (field.listKind === "enum") {
          if (!decodesAs(field, [item])) {
            problem = {
              field: at,
              description: `${enumExpectation(field.enum)}, got ${shown(item)}`,
            };
          }
        } else if (!decodesAs(field, [item])) {
          problem = explainMessage(field.message, item, at, depth);
        }
        if (problem) return problem;
      }
      return undefined;
    }
    case "map": {
      if (value === null || typeof value !== "object" || Array.isArray(value)) {
        return { field: path, description: `expected a JSON object, got ${shown(value)}` };
      }
      for (const [k, v] of Object.entries(value)) {
        if (decodesAs(field, { [k]: v })) continue;
        const at = `${path}["${clipText(k, 40)}"]`;
        if (field.mapKind === "message") return explainMessage(field.message, v, at, depth);
        if (field.mapKind === "enum") {
          return { field: at, description: `${enumExpectation(field.enum)}, got ${shown(v)}` };
        }
        return { field: at, description: `${scalarExpectation(field.scalar)}, got ${shown(v)}` };
      }
      return undefined;
    }
  }
}

/** Well-known types have a JSON form of their own; the rest are objects. */
const WELL_KNOWN: Record<string, string> = {
  "google.protobuf.Duration": 'expected a string of seconds with an "s", like "1800s" (30 minutes)',
  "google.protobuf.Timestamp":
    'expected an RFC 3339 time with an offset, e.g. "2030-03-04T09:00:00Z" or "2030-03-04T09:00:00-05:00"',
  "google.protobuf.FieldMask":
    'expected a comma-separated string of field names in lowerCamelCase, e.g. "name,timeZone"',
  "google.protobuf.Struct": "expected a JSON object",
  "google.protobuf.ListValue": "expected a JSON array",
  "google.protobuf.Value": "expected a JSON value",
};

/** protobuf-es's default recursionLimit for JSON, which the framework uses too. */
const RECURSION_LIMIT = 100;

/** Whether `value` is JSON of the kind a JSON well-known type takes. */
function isJsonKind(typeName: string, value: JsonValue): boolean {
  switch (typeName) {
    case "google.protobuf.Value":
      return true;
    case "google.protobuf.Struct":
      return value !== null && typeof value === "object" && !Array.isArray(value);
    case "google.protobuf.ListValue":
      return Array.isArray(value);
    default:
      return false;
  }
}

function explainMessage(
  desc: DescMessage,
  value: JsonValue,
  path: string,
  depth: number,
): Problem | undefined {
  const known = WELL_KNOWN[desc.typeName];
  if (known && isJsonKind(desc.typeName, value)) {
    // Any JSON of the right kind decodes as a Struct, ListValue or Value,
    // unless protobuf-es's recursion limit stops it.
    return {
      field: path,
      description: `is nested too deeply: a request may nest objects and arrays at most ${RECURSION_LIMIT} levels deep`,
    };
  }
  if (known) return { field: path, description: `${known}, got ${shown(value)}` };
  const wrapped = desc.typeName.startsWith("google.protobuf.") ? desc.fields[0] : undefined;
  if (wrapped?.fieldKind === "scalar" && desc.fields.length === 1) {
    return {
      field: path,
      description: `${scalarExpectation(wrapped.scalar)}, got ${shown(value)}`,
    };
  }
  return (
    findProblem(desc, value, path, depth + 1) ?? {
      field: path,
      description: `is not a valid ${desc.typeName}`,
    }
  );
}

function scalarExpectation(scalar: ScalarType): string {
  switch (scalar) {
    case ScalarType.STRING:
      return "expected a JSON string";
    case ScalarType.BOOL:
      return "expected true or false";
    case ScalarType.BYTES:
      return "expected a base64 string";
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return "expected a number";
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return 'expected a whole number (or one as a string, e.g. "42")';
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return 'expected a whole number of at least 0 (or one as a string, e.g. "42")';
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return "expected a whole number from 0 to 4294967295, e.g. 2";
    default:
      return "expected a whole number from -2147483648 to 2147483647, e.g. 2";
  }
}

function enumExpectation(desc: DescEnum): string {
  const names = desc.values.filter((v) => v.number !== 0).map((v) => `"${v.name}"`);
  return `expected one of ${names.join(", ")}`;
}

function decodes(desc: DescMessage, key: string, value: JsonValue): boolean {
  try {
    fromJson(desc, { [key]: value });
    return true;
  } catch {
    return false;
  }
}

function decodesAs(field: DescField, value: JsonValue): boolean {
  return decodes(field.parent, field.jsonName, value);
}

/** The field whose name is closest to `key`, ignoring case and underscores. */
function nearestField(desc: DescMessage, key: string): DescField | undefined {
  const near = nearestName(
    key,
    desc.fields.flatMap((f) => [f.name, f.jsonName]),
  );
  return desc.fields.find((f) => f.name === near || f.jsonName === near);
}

/**
 * The name among `names` closest to `key` (a misspelt field or argument),
 * ignoring case, underscores and dashes; undefined when none is close.
 */
export function nearestName(key: string, names: readonly string[]): string | undefined {
  const norm = (s: string) => s.toLowerCase().replace(/[_\-\s]/g, "");
  const k = norm(key);
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const name of names) {
    const d = distance(k, norm(name));
    if (d < bestDistance) {
      best = name;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(k.length / 3))
    ? best
    : undefined;
}

/** Levenshtein distance, on short names only. */
function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Number.POSITIVE_INFINITY;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(
        (prev[j] as number) + 1,
        (row[j - 1] as number) + 1,
        (prev[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    prev = row;
  }
  return prev[b.length] as number;
}

function join(path: string, key: string): string {
  return path ? `${path}.${clipText(key, 64)}` : clipText(key, 64);
}

/** What the caller sent, briefly: a scalar as JSON, a list or object by its kind alone. */
function shown(value: JsonValue): string {
  if (Array.isArray(value)) return "a JSON array";
  if (value !== null && typeof value === "object") return "a JSON object";
  return clipText(JSON.stringify(value), 60);
}

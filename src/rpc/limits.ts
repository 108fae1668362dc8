import { type DescField, type DescMessage, ScalarType } from "@bufbuild/protobuf";
import type { Interceptor } from "@connectrpc/connect";
import { type FieldViolation, invalid } from "../domain/rejection.js";
import { schemaSearch } from "./schema-search.js";
import { MAX_ID_CHARS, NOT_AN_ID, nulViolations } from "./validate.js";

/**
 * The most items every repeated field (or keys every map field) of a request may carry, by
 * `<message type>.<field>`, as the .proto comments say ("At most N."; a
 * test holds the two together). A list over its maximum is refused before
 * any of its items is looked at, so no list in any request can make the
 * server spend time or memory in proportion to it.
 */
export const MAX_ITEMS: Readonly<Record<string, number>> = {
  "holdfast.v1.ListSlotsRequest.resource_ids": 100,
  "holdfast.v1.ListBookingsRequest.statuses": 10,
  // Keys of a map: as many labels as the MCP tools give a booking.
  "holdfast.v1.ListBookingsRequest.metadata": 20,
  "holdfast.v1.Service.resource_ids": 500,
  "holdfast.v1.CreateServiceRequest.resource_ids": 500,
  "holdfast.v1.Policy.durations": 20,
  "holdfast.v1.Policy.business_hours": 100,
  "holdfast.v1.EventFilter.types": 20,
  "holdfast.v1.EventFilter.resource_ids": 100,
  "holdfast.v1.EventFilter.service_ids": 100,
  "holdfast.v1.CreateApiKeyRequest.scopes": 20,
  "holdfast.v1.WeeklySchedule.windows": 100,
  "holdfast.v1.Recurrence.weekdays": 7,
  "holdfast.v1.Webhook.event_types": 20,
  "holdfast.v1.CreateWebhookRequest.event_types": 20,
};

/** For repeated and map fields a request can carry that are only ever output (e.g. in an Update's message). */
const DEFAULT_MAX_ITEMS = 100;

/**
 * Whether a string field holds ids of rows (`id`, `resource_id`,
 * `resource_ids`...): no id Holdfast makes is longer than MAX_ID_CHARS, so a
 * longer one is refused as not an id, in every request (lookups, list
 * filters, Update messages), as v.id does, rather than looked up and echoed
 * back as not found. A slot_id is a signed token, not a row's id.
 */
function holdsIds(field: DescField): boolean {
  if (field.fieldKind !== "scalar" && !(field.fieldKind === "list" && field.listKind === "scalar"))
    return false;
  if (field.scalar !== ScalarType.STRING || field.name === "slot_id") return false;
  return field.fieldKind === "list"
    ? field.name.endsWith("_ids")
    : field.name === "id" || field.name.endsWith("_id");
}

/** Violations of MAX_ITEMS, and ids no row can have, in `message` of type `desc`, named by proto path. */
export function listViolations(desc: DescMessage, message: object): FieldViolation[] {
  const out: FieldViolation[] = [];
  walk(desc, message as Record<string, unknown>, "", out, 0);
  return out;
}

function walk(
  desc: DescMessage,
  message: Record<string, unknown>,
  path: string,
  out: FieldViolation[],
  depth: number,
): void {
  // Well-known types (Struct, Duration, ...) are bounded by their own checks.
  if (depth > 16 || desc.typeName.startsWith("google.")) return;
  for (const field of desc.fields) {
    const value = field.oneof
      ? (message[field.oneof.localName] as { case?: string; value?: unknown } | undefined)?.case ===
        field.localName
        ? (message[field.oneof.localName] as { value?: unknown }).value
        : undefined
      : message[field.localName];
    const at = path ? `${path}.${field.name}` : field.name;
    if (holdsIds(field)) {
      const ids = (Array.isArray(value) ? value : [value]) as unknown[];
      const many = Array.isArray(value);
      const max = many ? (MAX_ITEMS[`${desc.typeName}.${field.name}`] ?? DEFAULT_MAX_ITEMS) : 1;
      // A list over its maximum is refused below, before its items.
      if (ids.length <= max) {
        ids.forEach((id, i) => {
          if (typeof id === "string" && id.length > MAX_ID_CHARS) {
            out.push({ field: many ? `${at}[${i}]` : at, description: NOT_AN_ID });
          }
        });
      }
    }
    if (field.fieldKind === "map" && value && typeof value === "object") {
      const keys = Object.keys(value).length;
      const max = MAX_ITEMS[`${desc.typeName}.${field.name}`] ?? DEFAULT_MAX_ITEMS;
      if (keys > max) {
        out.push({ field: at, description: `must have at most ${max} keys (got ${keys})` });
      } else if (field.mapKind === "message") {
        for (const [key, item] of Object.entries(value)) {
          walk(
            field.message,
            item as Record<string, unknown>,
            `${at}[${JSON.stringify(key)}]`,
            out,
            depth + 1,
          );
        }
      }
    }
    if (field.fieldKind === "list" && Array.isArray(value)) {
      const max = MAX_ITEMS[`${desc.typeName}.${field.name}`] ?? DEFAULT_MAX_ITEMS;
      if (value.length > max) {
        out.push({
          field: at,
          description: `must list at most ${max} items (got ${value.length})`,
        });
      } else if (field.listKind === "message") {
        value.forEach((item, i) => {
          walk(field.message, item as Record<string, unknown>, `${at}[${i}]`, out, depth + 1);
        });
      }
    } else if (field.fieldKind === "message" && value && typeof value === "object") {
      walk(field.message, value as Record<string, unknown>, at, out, depth + 1);
    }
  }
}

/**
 * Whether a message of this type can hold a list anywhere that walk looks
 * (most requests cannot: nothing to walk).
 */
const mayCarryLists = schemaSearch(
  (_, f) => f.fieldKind === "list" || f.fieldKind === "map" || holdsIds(f),
  // Well-known types are not walked.
  (desc) => desc.typeName.startsWith("google."),
);

/**
 * The checks every request gets before its handler, wherever it comes in
 * (every RPC through requestChecksInterceptor, the Server-Sent Events
 * endpoint's query): a list over its maximum or an id no row can have
 * (listViolations; a list's size before any of its items), then a NUL
 * character in any text (nulViolations), so every field is named, those no
 * handler parses (a bare id looked up as it is) included. Throws
 * VALIDATION_ERROR naming the fields.
 */
export function checkRequest(desc: DescMessage, message: object): void {
  if (mayCarryLists(desc)) {
    const violations = listViolations(desc, message);
    if (violations.length > 0) throw invalid(violations);
  }
  const nul = nulViolations(message);
  if (nul.length > 0) throw invalid(nul);
}

/** Refuses, on every RPC and before the handler runs, what checkRequest refuses. */
export const requestChecksInterceptor: Interceptor = (next) => async (req) => {
  if (!req.stream) {
    checkRequest(req.method.input, req.message);
    return next(req);
  }
  const messages = req.message;
  return next({
    ...req,
    message: (async function* () {
      for await (const m of messages) {
        checkRequest(req.method.input, m);
        yield m;
      }
    })(),
  });
};

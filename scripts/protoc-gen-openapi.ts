/**
 * protoc-gen-openapi: a buf plugin (on @bufbuild/protoplugin) that writes an
 * OpenAPI 3.1 description of the Connect JSON API of package holdfast.v1 to
 * gen/openapi/holdfast.v1.openapi.json. buf.gen.yaml runs it, so CI's
 * regenerate-and-diff guards the document like the generated code; the
 * server serves it at GET /openapi.json.
 *
 * It follows the proto3 JSON mapping: lowerCamelCase field names, 64-bit
 * integers as strings, enums as their names, Timestamp and Duration as
 * strings, Struct as an object, FieldMask as a string. Each RPC is a POST
 * of its request message to /holdfast.v1.<Service>/<Method>, with bearer
 * auth and the scope its `required_scope` option names; mutations take an
 * Idempotency-Key header; errors are the Connect error body, with the
 * reasons the RPC can answer.
 */
import {
  create,
  createFileRegistry,
  type DescEnum,
  type DescField,
  type DescMessage,
  type DescMethod,
  type DescService,
  getOption,
  ScalarType,
} from "@bufbuild/protobuf";
import type { GenExtension } from "@bufbuild/protobuf/codegenv2";
import {
  CodeGeneratorResponse_Feature,
  CodeGeneratorResponseSchema,
  type FieldOptions,
  FileDescriptorSetSchema,
  type MethodOptions,
  MethodOptions_IdempotencyLevel,
} from "@bufbuild/protobuf/wkt";
import { getComments, runNodeJs } from "@bufbuild/protoplugin";
import { REASONS, type Reason } from "../src/domain/rejection.js";

const PACKAGE = "holdfast.v1";
const OUTPUT = "openapi/holdfast.v1.openapi.json";

type Schema = Record<string, unknown>;

/** Reasons every authenticated RPC can answer, whatever it does. */
const ANY_RPC: Reason[] = [
  "VALIDATION_ERROR",
  "MALFORMED_REQUEST",
  "REQUEST_TOO_LARGE",
  "UNAUTHENTICATED",
  "MISSING_SCOPE",
  "RATE_LIMITED",
  "UNAVAILABLE",
  "DEADLINE_EXCEEDED",
  "CANCELLED",
  "INTERNAL",
];

/**
 * Reasons a request field brings by its name, beyond the NotFound reason of
 * the row an id names (which notFoundOf derives): a token that may be bad.
 */
const BY_FIELD: Record<string, Reason[]> = {
  policy_version: ["POLICY_VERSION_NOT_FOUND"],
  page_token: ["INVALID_PAGE_TOKEN"],
  slot_id: ["INVALID_SLOT_ID"],
  after: ["INVALID_CURSOR", "CURSOR_EXPIRED"],
  cursor: ["INVALID_CURSOR", "CURSOR_EXPIRED"],
};

/** "CalendarFeed" or "calendar_feed" → "CALENDAR_FEED_NOT_FOUND", when that is a reason. */
function notFound(name: string): Reason | undefined {
  const reason = `${name.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toUpperCase()}_NOT_FOUND`;
  return reason in REASONS ? (reason as Reason) : undefined;
}

/**
 * The reasons the fields of a request message bring, and the NotFound
 * reasons of the rows they name, at any depth: `<row>_id` and `<row>_ids`
 * name rows of that kind (`calendar_feed_id` → CALENDAR_FEED_NOT_FOUND), and
 * a message with an `id`, such as the Resource an update carries, names a row
 * of its own kind (`resource.id` → RESOURCE_NOT_FOUND). A field marked
 * `(holdfast.v1.filter)` names no row it needs: an id that names none matches
 * nothing. What a field's own comment names it brings too.
 */
function fieldReasons(
  message: DescMessage,
  filter: GenExtension<FieldOptions, boolean>,
  top = true,
  seen = new Set<string>(),
): Set<Reason> {
  const found = new Set<Reason>();
  if (seen.has(message.typeName) || message.typeName in WKT) return found;
  seen.add(message.typeName);
  for (const f of message.fields) {
    for (const r of commentReasons(getComments(f).leading)) found.add(r);
    if (getOption(f, filter)) continue;
    if (top) for (const r of BY_FIELD[f.name] ?? []) found.add(r);
    const row = f.name === "id" ? message.name : /^(.+)_ids?$/.exec(f.name)?.[1];
    const reason = row && notFound(row);
    if (reason) found.add(reason);
    const nested =
      f.fieldKind === "message" ? f.message : f.fieldKind === "list" ? f.message : undefined;
    if (nested) for (const r of fieldReasons(nested, filter, false, seen)) found.add(r);
  }
  return found;
}

/** The reasons a comment names. */
function commentReasons(text: string | undefined): Reason[] {
  const words: string[] = text?.match(/\b[A-Z][A-Z_]{3,}\b/g) ?? [];
  return words.filter((word): word is Reason => word in REASONS);
}

/** The booking rules a write of a time checks. */
const TIME_RULES: Reason[] = [
  "SLOT_UNAVAILABLE",
  "OUTSIDE_WORKING_HOURS",
  "SCHEDULE_BLOCKED",
  "OFF_GRID",
  "TOO_SOON",
  "TOO_FAR_AHEAD",
  "INVALID_DURATION",
  "RESOURCE_INACTIVE",
  "SERVICE_INACTIVE",
  "RESOURCE_NOT_IN_SERVICE",
];

/** Reasons of the domain rules behind particular RPCs. */
const BY_METHOD: Record<string, Reason[]> = {
  // LIMIT_REACHED: each call that adds what a tenant quota counts (src/domain/quota.ts).
  "BookingService.CreateHold": [...TIME_RULES, "LIMIT_REACHED"],
  "BookingService.CreateBooking": [...TIME_RULES, "LIMIT_REACHED"],
  "ResourceService.CreateResource": ["LIMIT_REACHED"],
  "ResourceService.UpdateResource": ["LIMIT_REACHED"], // bringing a deleted one back
  "CatalogService.CreateService": ["LIMIT_REACHED"],
  "CatalogService.UpdateService": ["LIMIT_REACHED"], // bringing an inactive one back
  "WebhookService.CreateWebhook": ["LIMIT_REACHED"],
  "KeyService.CreateApiKey": ["LIMIT_REACHED"],
  "BookingService.RescheduleBooking": [...TIME_RULES, "INVALID_STATE", "HOLD_EXPIRED"],
  "BookingService.ConfirmBooking": ["INVALID_STATE", "HOLD_EXPIRED"],
  "BookingService.ExtendHold": ["INVALID_STATE", "HOLD_EXPIRED"],
  "BookingService.CancelBooking": ["INVALID_STATE"],
  "BookingService.CompleteBooking": ["INVALID_STATE", "NOT_STARTED"],
  "BookingService.MarkNoShow": ["INVALID_STATE", "NOT_STARTED"],
  "TenantService.CreateTenant": ["TENANT_NAME_TAKEN"],
  // A `duration` that is not one of the service's (checkDuration).
  "AvailabilityService.ListSlots": ["INVALID_DURATION"],
  "EventService.WatchEvents": ["CONSUMER_TOO_SLOW", "TOO_MANY_STREAMS"],
};

function reasonsOf(
  service: DescService,
  method: DescMethod,
  filter: GenExtension<FieldOptions, boolean>,
): Reason[] {
  const found = new Set<Reason>(ANY_RPC);
  if (isMutation(method)) {
    found.add("IDEMPOTENCY_KEY_INVALID");
    found.add("IDEMPOTENCY_KEY_REUSED");
  }
  for (const r of fieldReasons(method.input, filter)) found.add(r);
  for (const r of BY_METHOD[`${service.name}.${method.name}`] ?? []) found.add(r);
  // Reasons the RPC's own documentation names: a method comment names only
  // reasons the method answers (others, such as what a setting makes other
  // calls answer, are named where that setting is described).
  for (const r of commentReasons(getComments(method).leading)) found.add(r);
  for (const r of commentReasons(getComments(method.input).leading)) found.add(r);
  return [...found].sort();
}

function isMutation(m: DescMethod): boolean {
  return m.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
}

function doc(desc: Parameters<typeof getComments>[0]): string | undefined {
  const text = getComments(desc).leading?.trim();
  return text ? text.replace(/\n /g, "\n").replace(/^ /, "") : undefined;
}

const INT64 = new Set([
  ScalarType.INT64,
  ScalarType.UINT64,
  ScalarType.SINT64,
  ScalarType.FIXED64,
  ScalarType.SFIXED64,
]);

function scalarSchema(t: ScalarType): Schema {
  if (INT64.has(t)) return { type: "string", format: "int64", pattern: "^-?[0-9]+$" };
  switch (t) {
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { type: "number" };
    case ScalarType.BOOL:
      return { type: "boolean" };
    case ScalarType.STRING:
      return { type: "string" };
    case ScalarType.BYTES:
      return { type: "string", contentEncoding: "base64" };
    default:
      return { type: "integer", format: "int32" };
  }
}

/** Well-known types have their own JSON forms. */
const WKT: Record<string, Schema> = {
  "google.protobuf.Timestamp": {
    type: "string",
    format: "date-time",
    description: "RFC 3339 in UTC, e.g. 2030-03-04T14:00:00Z.",
    examples: ["2030-03-04T14:00:00Z"],
  },
  "google.protobuf.Duration": {
    type: "string",
    pattern: "^-?[0-9]+(\\.[0-9]{1,9})?s$",
    description: 'Seconds with an "s" suffix, e.g. "1800s" for 30 minutes.',
    examples: ["1800s"],
  },
  "google.protobuf.Struct": { type: "object", additionalProperties: true },
  "google.protobuf.Value": {},
  "google.protobuf.ListValue": { type: "array" },
  "google.protobuf.FieldMask": {
    type: "string",
    description: 'Comma-separated lowerCamelCase field paths, e.g. "name,capacity".',
    examples: ["name,capacity"],
  },
  "google.protobuf.Empty": { type: "object", additionalProperties: false },
  "google.protobuf.Any": {
    type: "object",
    properties: { "@type": { type: "string" } },
    required: ["@type"],
    additionalProperties: true,
  },
};

class Document {
  readonly schemas: Record<string, Schema> = {};

  ref(desc: DescMessage | DescEnum): Schema {
    const wkt = WKT[desc.typeName];
    if (wkt) return wkt;
    if (!(desc.typeName in this.schemas)) {
      this.schemas[desc.typeName] = {};
      this.schemas[desc.typeName] =
        desc.kind === "enum" ? this.enumSchema(desc) : this.messageSchema(desc);
    }
    return { $ref: `#/components/schemas/${desc.typeName}` };
  }

  enumSchema(e: DescEnum): Schema {
    return {
      type: "string",
      enum: e.values.map((v) => v.name),
      ...(doc(e) ? { description: doc(e) } : {}),
    };
  }

  messageSchema(m: DescMessage): Schema {
    const properties: Record<string, Schema> = {};
    for (const f of m.fields) {
      const schema = this.fieldSchema(f);
      const description = doc(f);
      properties[f.jsonName] = description
        ? "$ref" in schema
          ? { allOf: [schema], description }
          : { ...schema, description: [schema.description, description].filter(Boolean).join(" ") }
        : schema;
    }
    return {
      type: "object",
      ...(doc(m) ? { description: doc(m) } : {}),
      properties,
      additionalProperties: false,
    };
  }

  fieldSchema(f: DescField): Schema {
    switch (f.fieldKind) {
      case "scalar":
        return scalarSchema(f.scalar);
      case "enum":
        return this.ref(f.enum);
      case "message":
        return this.ref(f.message);
      case "list":
        return {
          type: "array",
          items:
            f.listKind === "scalar"
              ? scalarSchema(f.scalar)
              : f.listKind === "enum"
                ? this.ref(f.enum)
                : this.ref(f.message),
        };
      case "map":
        return {
          type: "object",
          additionalProperties:
            f.mapKind === "scalar"
              ? scalarSchema(f.scalar)
              : f.mapKind === "enum"
                ? this.ref(f.enum)
                : this.ref(f.message),
        };
    }
  }
}

const ERROR_SCHEMA: Schema = {
  type: "object",
  description:
    "A Connect error. `details` carries a google.rpc.ErrorInfo (domain `holdfast`) whose `reason` is the stable cause to branch on, a google.rpc.BadRequest naming each bad field for bad input, and holdfast.v1.SlotConflict for SLOT_UNAVAILABLE; `debug` is a readable JSON copy of each.",
  properties: {
    code: {
      type: "string",
      enum: [
        "canceled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
      ],
    },
    message: { type: "string" },
    details: {
      type: "array",
      items: {
        type: "object",
        properties: {
          type: { type: "string", examples: ["google.rpc.ErrorInfo"] },
          value: { type: "string", contentEncoding: "base64" },
          debug: {
            type: "object",
            properties: {
              reason: { type: "string", enum: Object.keys(REASONS).sort() },
              domain: { type: "string" },
              metadata: { type: "object", additionalProperties: { type: "string" } },
            },
          },
        },
        required: ["type", "value"],
      },
    },
  },
  required: ["code"],
};

function generate(
  services: DescService[],
  requiredScope: GenExtension<MethodOptions, string>,
  filter: GenExtension<FieldOptions, boolean>,
): Schema {
  const d = new Document();
  const paths: Record<string, Schema> = {};
  const tags: Schema[] = [];
  for (const service of services) {
    tags.push({ name: service.name, ...(doc(service) ? { description: doc(service) } : {}) });
    for (const method of service.methods) {
      if (method.methodKind !== "unary") continue;
      const scope = getOption(method, requiredScope);
      const reasons = reasonsOf(service, method, filter);
      const parameters: Schema[] = [];
      if (isMutation(method)) {
        parameters.push({ $ref: "#/components/parameters/IdempotencyKey" });
      }
      const scopeText =
        scope === "*" ? "Any valid API key." : `Requires an API key with the scope \`${scope}\`.`;
      paths[`/${service.typeName}/${method.name}`] = {
        post: {
          operationId: `${service.name}_${method.name}`,
          tags: [service.name],
          summary: `${service.name}.${method.name}`,
          description: [doc(method), scopeText].filter(Boolean).join("\n\n"),
          "x-holdfast-required-scope": scope,
          "x-holdfast-reasons": reasons,
          security: [{ bearer: scope === "*" ? [] : [scope] }],
          parameters,
          requestBody: {
            required: true,
            content: { "application/json": { schema: d.ref(method.input) } },
          },
          responses: {
            "200": {
              description: "Success.",
              content: { "application/json": { schema: d.ref(method.output) } },
            },
            default: {
              description: `A Connect error. Reasons this RPC can answer: ${reasons.join(", ")}.`,
              content: {
                "application/json": { schema: { $ref: "#/components/schemas/connect.Error" } },
              },
            },
          },
        },
      };
    }
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "Holdfast Connect JSON API",
      version: "v1",
      description:
        'Every RPC of package holdfast.v1 as Connect JSON: POST the request message as JSON to /holdfast.v1.<Service>/<Method> with Content-Type: application/json. Fields follow the proto3 JSON mapping: lowerCamelCase names, 64-bit integers as strings, enums by name, Timestamps as RFC 3339 strings, Durations as seconds with an "s" suffix. Generated from proto/ by scripts/protoc-gen-openapi.ts.',
      license: { name: "Apache-2.0", identifier: "Apache-2.0" },
    },
    servers: [{ url: "/" }],
    security: [{ bearer: [] }],
    tags,
    paths,
    components: {
      securitySchemes: {
        bearer: {
          type: "http",
          scheme: "bearer",
          description:
            "An API key: Authorization: Bearer hf_... Each operation lists the scope the key needs.",
        },
      },
      parameters: {
        IdempotencyKey: {
          name: "Idempotency-Key",
          in: "header",
          required: false,
          description:
            "1 to 255 printable ASCII characters. The same key with the same request within 24 hours answers the first outcome again (header Idempotent-Replayed: true); with another request, IDEMPOTENCY_KEY_REUSED.",
          schema: { type: "string", minLength: 1, maxLength: 255, pattern: "^[\\x21-\\x7e]+$" },
        },
      },
      schemas: { ...sorted(d.schemas), "connect.Error": ERROR_SCHEMA },
    },
  };
}

function sorted(o: Record<string, Schema>): Record<string, Schema> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}

runNodeJs({
  name: "protoc-gen-openapi",
  version: "v1",
  run(request) {
    const registry = createFileRegistry(
      create(FileDescriptorSetSchema, { file: request.protoFile }),
    );
    const services = request.fileToGenerate
      .map((name) => registry.getFile(name))
      .filter((f) => f?.proto.package === PACKAGE)
      .flatMap((f) => f?.services ?? []);
    // buf runs plugins once per input of buf.gen.yaml: only proto/ has ours.
    const supportedFeatures = BigInt(CodeGeneratorResponse_Feature.PROTO3_OPTIONAL);
    if (services.length === 0) return create(CodeGeneratorResponseSchema, { supportedFeatures });
    const scope = registry.getExtension(`${PACKAGE}.required_scope`);
    if (!scope) throw new Error(`${PACKAGE}.required_scope is not among the inputs`);
    const filter = registry.getExtension(`${PACKAGE}.filter`);
    if (!filter) throw new Error(`${PACKAGE}.filter is not among the inputs`);
    const document = generate(
      services,
      scope as GenExtension<MethodOptions, string>,
      filter as GenExtension<FieldOptions, boolean>,
    );
    return create(CodeGeneratorResponseSchema, {
      supportedFeatures,
      file: [{ name: OUTPUT, content: `${JSON.stringify(document, null, 2)}\n` }],
    });
  },
});

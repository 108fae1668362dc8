import { type DescMethod, getOption } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { SlotConflictSchema } from "../../gen/holdfast/v1/errors_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { required_scope } from "../../gen/holdfast/v1/options_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";

/**
 * The API as the console calls it: Connect JSON over fetch, with the same
 * generated code as the server, and the API key the user pasted. The key
 * lives in this tab's sessionStorage only: closing the tab forgets it.
 */

const KEY_STORAGE = "holdfast.apiKey";

export const session = {
  key: sessionStorage.getItem(KEY_STORAGE) ?? "",
  tenantName: "",
  keyId: "",
  scopes: [] as string[],
};

export function rememberKey(key: string): void {
  session.key = key;
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetKey(): void {
  session.key = "";
  session.scopes = [];
  sessionStorage.removeItem(KEY_STORAGE);
}

const bearer: Interceptor = (next) => (req) => {
  req.header.set("authorization", `Bearer ${session.key}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: location.origin,
  interceptors: [bearer],
  jsonOptions: { ignoreUnknownFields: true },
});

export const api = {
  keys: createClient(KeyService, transport),
  resources: createClient(ResourceService, transport),
  catalog: createClient(CatalogService, transport),
  availability: createClient(AvailabilityService, transport),
  bookings: createClient(BookingService, transport),
  events: createClient(EventService, transport),
  webhooks: createClient(WebhookService, transport),
  feeds: createClient(CalendarFeedService, transport),
};

/** Whether the signed-in key holds the scope the RPC declares in the proto. */
export function can(method: DescMethod): boolean {
  const scope = getOption(method, required_scope);
  return scope === "*" || session.scopes.includes(scope);
}

/** Call options for a mutation: a fresh Idempotency-Key, so a retried click is applied once. */
export function once(): { headers: Record<string, string> } {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const key = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  return { headers: { "idempotency-key": `console-${key}` } };
}

/** What went wrong, as the API said it: its code, stable reason, and what it offered instead. */
export type Problem = {
  code: string;
  reason: string;
  message: string;
  fields: string[];
  alternatives: Slot[];
};

export function problemOf(err: unknown): Problem {
  const e = ConnectError.from(err);
  return {
    code: Code[e.code] ?? String(e.code),
    reason: e.findDetails(ErrorInfoSchema)[0]?.reason ?? "",
    message: e.rawMessage,
    fields: e
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map((v) => `${v.field}: ${v.description}`)),
    alternatives: e.findDetails(SlotConflictSchema).flatMap((c) => c.alternatives),
  };
}

/**
 * The cursor an error that ended an event stream says to resume from
 * (ErrorInfo metadata `cursor`: UNAVAILABLE when the server stops,
 * CONSUMER_TOO_SLOW), if it carries one.
 */
export function resumeCursorOf(err: ConnectError): string | undefined {
  const cursor = err.findDetails(ErrorInfoSchema)[0]?.metadata.cursor;
  return cursor ? cursor : undefined;
}

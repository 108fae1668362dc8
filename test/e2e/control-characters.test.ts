import { Code } from "@connectrpc/connect";
import type * as grpc from "@grpc/grpc-js";
import { beforeAll, describe, expect, it } from "vitest";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { OverrideKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { at, bookingWorld, minutes } from "../support/booking.js";
import {
  clientFor,
  fieldViolations,
  grpcJsClient,
  grpcJsReason,
  grpcJsStatus,
  grpcJsViolations,
  jsonReason,
  newTenant,
  postJson,
  rejected,
} from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * Names, titles, attendees, URLs and free text that would reach other
 * people's terminals, calendars and webhook consumers refuse control and
 * bidi override characters (the rule: src/domain/text.ts), naming the field
 * and the character, before anything is stored.
 */
let server: TestServer;

beforeAll(async () => {
  server = await startTestServer();
});

const CREATE = "holdfast.v1.ResourceService/CreateResource";
const ESC_NAME = "Room \u001b[31m1";

describe("a resource named with ESC", () => {
  it("is VALIDATION_ERROR naming the field and U+001B over Connect JSON, and nothing is stored", async () => {
    const { key } = await newTenant(server.url);
    const reply = await postJson(server.url, CREATE, { name: ESC_NAME, timeZone: "UTC" }, key);
    expect(reply.status).toBe(400);
    expect(reply.body.code).toBe("invalid_argument");
    expect(jsonReason(reply)).toBe("VALIDATION_ERROR");
    expect(reply.body.message).toContain("name: must not contain U+001B");
    const details = reply.body.details as { debug: { fieldViolations?: unknown[] } }[];
    expect(details.flatMap((d) => d.debug.fieldViolations ?? [])).toEqual([
      {
        field: "name",
        description: "must not contain U+001B (no control, line break or bidi override characters)",
      },
    ]);
    // Accented letters and emoji are names like any other.
    const fine = await postJson(server.url, CREATE, { name: "Zoë's 👩‍👩‍👧", timeZone: "UTC" }, key);
    expect(fine.status).toBe(200);
    const listed = await clientFor(ResourceService, server.url, key).listResources({});
    expect(listed.resources.map((r) => r.name)).toEqual(["Zoë's 👩‍👩‍👧"]);
  });

  it("is VALIDATION_ERROR naming the field and U+001B over binary gRPC (@grpc/grpc-js), and nothing is stored", async () => {
    const { key } = await newTenant(server.url);
    const client = grpcJsClient(server.url, "holdfast/v1/resource.proto", "ResourceService", key);
    try {
      const err = (await client
        .call("createResource", { name: ESC_NAME, timeZone: "UTC" })
        .catch((e: unknown) => e)) as grpc.ServiceError;
      expect(err.code).toBe(3); // INVALID_ARGUMENT
      expect(grpcJsReason(err)).toBe("VALIDATION_ERROR");
      expect(grpcJsStatus(err)?.message).toContain("name: must not contain U+001B");
      expect(
        grpcJsViolations(err).map((v) => ({ field: v.field, description: v.description })),
      ).toEqual([
        {
          field: "name",
          description:
            "must not contain U+001B (no control, line break or bidi override characters)",
        },
      ]);
      const listed = await client.call<{ resources: unknown[] }>("listResources", {});
      expect(listed.resources).toEqual([]);
    } finally {
      client.close();
    }
  });
});

describe("every name, title, attendee, URL and free-text field", () => {
  it("refuses controls and bidi overrides, naming the field; free text keeps tabs and line breaks", async () => {
    const w = await bookingWorld(server.url, { protocol: "connect" });
    const keys = clientFor(KeyService, server.url, w.key, "connect");
    const feeds = clientFor(CalendarFeedService, server.url, w.key, "connect");
    const webhooks = clientFor(WebhookService, server.url, w.key, "connect");
    const tenants = clientFor(TenantService, server.url, ADMIN_KEY, "connect");
    const refused = async (call: Promise<unknown>, fields: string[], codePoint: string) => {
      const err = await rejected(call, Code.InvalidArgument, "VALIDATION_ERROR");
      expect(fieldViolations(err)).toEqual(fields);
      expect(err.rawMessage).toContain(`must not contain ${codePoint}`);
    };

    await refused(tenants.createTenant({ name: "Acme\u0007" }), ["name"], "U+0007");
    await refused(
      w.resources.updateResource({
        resource: { id: w.resourceId, name: "\u202eR0" },
        updateMask: { paths: ["name"] },
      }),
      ["resource.name"],
      "U+202E",
    );
    await refused(
      w.catalog.createService({ name: "Cut\u009b", policy: { durations: [minutes(30)] } }),
      ["name"],
      "U+009B",
    );
    await refused(
      w.catalog.updateService({ service: { id: w.serviceId, name: "A\nB" } }),
      ["service.name"],
      "U+000A",
    );
    await refused(
      w.resources.createOverride({
        resourceId: w.resourceId,
        kind: OverrideKind.BLOCK,
        title: "Vacation\u2066",
        allDay: true,
        startDate: "2031-01-06",
        endDate: "2031-01-07",
      }),
      ["title"],
      "U+2066",
    );
    await refused(
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
        attendee: { name: "Ada\u001b[2J", email: "ada\u0007@example.com" },
      }),
      ["attendee.name", "attendee.email"],
      "U+001B",
    );
    await refused(
      keys.createApiKey({ scopes: ["bookings.read"], description: "\u007f" }),
      ["description"],
      "U+007F",
    );
    await refused(
      feeds.createCalendarFeed({ resourceId: w.resourceId, description: "desk\u0085" }),
      ["description"],
      "U+0085",
    );
    await refused(
      webhooks.createWebhook({ url: "https://hooks.example.com/\u001b[2J", eventTypes: ["*"] }),
      ["url"],
      "U+001B",
    );
    await refused(
      webhooks.createWebhook({
        url: "https://hooks.example.com/a",
        eventTypes: ["*"],
        description: "a\u2028b",
      }),
      ["description"],
      "U+2028",
    );

    // Nothing of the above was stored.
    expect((await tenants.listTenants({})).tenants.map((t) => t.name)).not.toContain("Acme\u0007");
    expect((await w.resources.listResources({})).resources.map((r) => r.name)).toEqual(["R0"]);
    expect((await w.catalog.listServices({})).services.map((s) => s.name)).toEqual([
      "Consultation",
    ]);
    expect((await w.resources.listOverrides({ resourceId: w.resourceId })).overrides).toEqual([]);
    expect((await w.bookings.listBookings({})).bookings).toEqual([]);
    expect((await keys.listApiKeys({})).keys).toHaveLength(1);
    expect((await feeds.listCalendarFeeds({})).feeds).toEqual([]);
    expect((await webhooks.listWebhooks({})).webhooks).toEqual([]);

    // Free text keeps tabs and line breaks, and still refuses the rest.
    const multiLine = "first line\nsecond\tline\r\n";
    const key = await keys.createApiKey({ scopes: ["bookings.read"], description: multiLine });
    expect(key.key?.description).toBe(multiLine);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
      // Metadata is the caller's own JSON: left as sent.
      metadata: { note: "\u001b[31mred\u001b[0m" },
    });
    expect(booking?.metadata).toEqual({ note: "\u001b[31mred\u001b[0m" });
    const bookingId = booking?.id as string;
    await refused(
      w.bookings.cancelBooking({ bookingId, reason: "moved\n\u001b[2J" }),
      ["reason"],
      "U+001B",
    );
    const cancelled = await w.bookings.cancelBooking({ bookingId, reason: "moved\nby phone" });
    expect(cancelled.booking?.cancelReason).toBe("moved\nby phone");
  });
});

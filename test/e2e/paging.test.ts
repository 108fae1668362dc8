import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld, DAY } from "../support/booking.js";
import { clientFor, jsonReason, newTenant, postJson, rejected } from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

const LIST_RESOURCES = "holdfast.v1.ResourceService/ListResources";

/** The token with its fields replaced, as a caller editing it by hand would. */
function edited(token: string, change: Record<string, unknown>): string {
  const t = JSON.parse(Buffer.from(token, "base64url").toString());
  return Buffer.from(JSON.stringify({ ...t, ...change })).toString("base64url");
}

/** A tenant with three resources, and the token of ListResources' second page. */
async function threeResources() {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  for (const name of ["A", "B", "C"]) await resources.createResource({ name, timeZone: "UTC" });
  const { nextPageToken } = await resources.listResources({ pageSize: 1 });
  expect(nextPageToken).not.toBe("");
  return { key, resources, token: nextPageToken };
}

describe("page tokens", () => {
  it("work on the list that issued them, on every protocol", async () => {
    const { key, resources, token } = await threeResources();
    expect(
      (await resources.listResources({ pageSize: 1, pageToken: token })).resources,
    ).toHaveLength(1);
    const json = await postJson(server.url, LIST_RESOURCES, { pageSize: 1, pageToken: token }, key);
    expect(json.status).toBe(200);
  });

  it("are refused by another tenant, on every protocol", async () => {
    const a = await threeResources();
    const b = await threeResources();
    for (const protocol of ["grpc", "grpc-web", "connect"] as const) {
      await rejected(
        clientFor(ResourceService, server.url, b.key, protocol).listResources({
          pageSize: 1,
          pageToken: a.token,
        }),
        Code.InvalidArgument,
        "INVALID_PAGE_TOKEN",
      );
    }
    const json = await postJson(
      server.url,
      LIST_RESOURCES,
      { pageSize: 1, pageToken: a.token },
      b.key,
    );
    expect([json.status, jsonReason(json)]).toEqual([400, "INVALID_PAGE_TOKEN"]);
  });

  it("are refused by another list, even one with the same filters", async () => {
    const w = await bookingWorld(server.url);
    const keys = clientFor(KeyService, server.url, w.key);
    const feeds = clientFor(CalendarFeedService, server.url, w.key);
    for (let i = 0; i < 2; i++) {
      await keys.createApiKey({ scopes: ["bookings.read"] });
      await feeds.createCalendarFeed({ resourceId: w.resourceId });
    }
    const keyToken = (await keys.listApiKeys({ pageSize: 1 })).nextPageToken;
    const feedToken = (await feeds.listCalendarFeeds({ pageSize: 1 })).nextPageToken;
    expect([keyToken, feedToken]).not.toContain("");
    await rejected(
      feeds.listCalendarFeeds({ pageSize: 1, pageToken: keyToken }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await rejected(
      keys.listApiKeys({ pageSize: 1, pageToken: feedToken }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
  });

  it("are refused once edited: another key, a long key, a number out of range", async () => {
    const { resources, token } = await threeResources();
    for (const k of ["abc", "rsc_0", "z".repeat(700)]) {
      await rejected(
        resources.listResources({ pageSize: 1, pageToken: edited(token, { k }) }),
        Code.InvalidArgument,
        "INVALID_PAGE_TOKEN",
      );
    }
    const w = await bookingWorld(server.url);
    for (const h of [9, 10]) {
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, h),
      });
    }
    const { nextPageToken } = await w.bookings.listBookings({ pageSize: 1 });
    for (const k of ["9007199254740991|x", "2147483648", "-9007199254740991|x"]) {
      await rejected(
        w.bookings.listBookings({ pageSize: 1, pageToken: edited(nextPageToken, { k }) }),
        Code.InvalidArgument,
        "INVALID_PAGE_TOKEN",
      );
    }
  });

  it("issued by one instance work on another sharing the database", async () => {
    const { key, token } = await threeResources();
    const other = await startTestServer({}, server.databaseUrl);
    const page = await clientFor(ResourceService, other.url, key).listResources({
      pageSize: 1,
      pageToken: token,
    });
    expect(page.resources).toHaveLength(1);
    expect(page.nextPageToken).not.toBe("");
  });
});

describe("page_size", () => {
  it("is one rule on every list: oversized is lowered, negative refused naming page_size", async () => {
    const w = await bookingWorld(server.url);
    const { booking } = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(1, 9),
    });
    await w.bookings.cancelBooking({ bookingId: booking?.id as string });
    const start = new Date(Date.now() + DAY).toISOString();
    const end = new Date(Date.now() + 2 * DAY).toISOString();
    const lists: [string, Record<string, unknown>, string?][] = [
      ["EventService/ListEvents", {}],
      ["ResourceService/ListResources", {}],
      ["ResourceService/ListOverrides", { resourceId: w.resourceId }],
      ["CatalogService/ListServices", {}],
      ["CatalogService/ListPolicyVersions", { serviceId: w.serviceId }],
      ["AvailabilityService/ListSlots", { serviceId: w.serviceId, startTime: start, endTime: end }],
      ["BookingService/ListBookings", {}],
      ["KeyService/ListApiKeys", {}],
      ["WebhookService/ListWebhooks", {}],
      ["CalendarFeedService/ListCalendarFeeds", {}],
      ["TenantService/ListTenants", {}, ADMIN_KEY],
    ];
    for (const [rpc, body, key = w.key] of lists) {
      const procedure = `holdfast.v1.${rpc}`;
      const big = await postJson(server.url, procedure, { ...body, pageSize: 2 ** 31 - 1 }, key);
      expect([rpc, big.status]).toEqual([rpc, 200]);
      const negative = await postJson(server.url, procedure, { ...body, pageSize: -1 }, key);
      expect([rpc, negative.status, jsonReason(negative)]).toEqual([rpc, 400, "VALIDATION_ERROR"]);
      expect(negative.body.message).toBe(
        "invalid request: page_size: must not be negative (0 for the default)",
      );
    }
    // ListEvents lowers to its own maximum, 100: both events of the tenant come back.
    await expect
      .poll(
        async () =>
          (await clientFor(EventService, server.url, w.key).listEvents({ pageSize: 5000 })).events
            .length,
      )
      .toBe(2);
  });
});

import { Code } from "@connectrpc/connect";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor, keyed, newTenant, rejected } from "../support/clients.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * An Idempotency-Key is scoped to the API key that sent it (with the tenant
 * and method): what one key was answered depends on what it made and may
 * do, so another key of the same tenant sending the same key and request
 * gets its own answer, never the first key's stored one.
 */

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});

describe("Idempotency-Keys of one tenant's API keys", () => {
  let owner: string;
  let resourceId: string;
  let keys: ReturnType<typeof clientFor<typeof KeyService>>;
  const feedsOf = (apiKey: string) => clientFor(CalendarFeedService, server.url, apiKey);
  /** A new key of the tenant with these scopes: its secret and id. */
  const newKey = async (scopes: string[]) => {
    const { apiKey, key: made } = await keys.createApiKey({ scopes });
    return { secret: apiKey, id: made?.id as string };
  };

  beforeAll(async () => {
    ({ key: owner } = await newTenant(server.url));
    keys = clientFor(KeyService, server.url, owner);
    const { resource } = await clientFor(ResourceService, server.url, owner).createResource({
      name: "Room 1",
      timeZone: "UTC",
    });
    resourceId = resource?.id as string;
  });

  it("give another key's CreateCalendarFeed its own feed, not the first key's", async () => {
    const { apiKeyId: ownerId } = await keys.getCaller({});
    const reader = await newKey(["bookings.read"]);

    const first = keyed("feed-F");
    const mine = await feedsOf(owner).createCalendarFeed({ resourceId }, first.options);
    expect(first.seen.replayed).toBe(false);
    expect(mine.feed?.creatorKeyId).toBe(ownerId);

    const second = keyed("feed-F");
    const theirs = await feedsOf(reader.secret).createCalendarFeed({ resourceId }, second.options);
    expect(second.seen.replayed).toBe(false);
    expect(theirs.feed?.creatorKeyId).toBe(reader.id);
    expect(theirs.feed?.id).not.toBe(mine.feed?.id);
    // Each sees only its own feed, and each key's retry replays its own answer.
    const listed = await feedsOf(reader.secret).listCalendarFeeds({});
    expect(listed.feeds.map((f) => f.id)).toEqual([theirs.feed?.id]);
    const retry = keyed("feed-F");
    const again = await feedsOf(owner).createCalendarFeed({ resourceId }, retry.options);
    expect(retry.seen.replayed).toBe(true);
    expect(again.feed).toEqual(mine.feed);
  });

  it("do not answer a key's RevokeCalendarFeed with another key's stored refusal", async () => {
    const reader = await newKey(["bookings.read"]);
    const { feed, urlPath } = await feedsOf(owner).createCalendarFeed({ resourceId });
    const calendarFeedId = feed?.id as string;

    // The reader cannot see the owner's feed: refused, and the refusal is stored...
    const refused = await rejected(
      feedsOf(reader.secret).revokeCalendarFeed({ calendarFeedId }, keyed("revoke-K").options),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    expect(refused.metadata.get("idempotent-replayed")).toBeNull();
    // ...for the reader only: the owner's revoke with the same key runs.
    const call = keyed("revoke-K");
    const { feed: revoked } = await feedsOf(owner).revokeCalendarFeed(
      { calendarFeedId },
      call.options,
    );
    expect(call.seen.replayed).toBe(false);
    expect(revoked?.revokeTime).toBeDefined();
    expect((await fetch(`${server.url}${urlPath}`)).status).toBe(404);
    // The reader's retry still gets its own stored answer.
    const retry = await rejected(
      feedsOf(reader.secret).revokeCalendarFeed({ calendarFeedId }, keyed("revoke-K").options),
      Code.NotFound,
      "CALENDAR_FEED_NOT_FOUND",
    );
    expect(retry.metadata.get("idempotent-replayed")).toBe("true");
  });

  it("check a key's scopes on CreateApiKey even when another key stored that key", async () => {
    const manager = await newKey(["keys.manage"]);
    const request = { scopes: ["webhooks.manage"] };
    const made = await keys.createApiKey(request, keyed("key-X").options);
    expect(made.key?.scopes).toEqual(["webhooks.manage"]);

    // The manager may not grant a scope it lacks, whatever the key says.
    const managers = clientFor(KeyService, server.url, manager.secret);
    await rejected(
      managers.createApiKey(request, keyed("key-X").options),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );
    const listed = await keys.listApiKeys({});
    expect(listed.keys.filter((k) => k.scopes.join() === "webhooks.manage")).toHaveLength(1);
    // The first key's retry still replays the key it made.
    const retry = keyed("key-X");
    const again = await keys.createApiKey(request, retry.options);
    expect(retry.seen.replayed).toBe(true);
    expect(again.key).toEqual(made.key);
  });
});

describe("Idempotency-Keys of booking writes", () => {
  it("are the calling key's: another key of the tenant gets its own hold, then its own refusal", async () => {
    const w = await bookingWorld(server.url);
    const other = (
      await clientFor(KeyService, server.url, w.key).createApiKey({
        scopes: ["bookings.write", "bookings.read"],
      })
    ).apiKey;
    const otherBookings = clientFor(BookingService, server.url, other);
    const req = { serviceId: w.serviceId, resourceId: w.resourceId, ...at(1, 9) };
    const first = keyed("hold-H");
    const held = await w.bookings.createHold(req, first.options);
    expect(first.seen.replayed).toBe(false);

    // Not the first key's stored hold: this key's own request, refused as the time is taken.
    const refused = await rejected(
      otherBookings.createHold(req, keyed("hold-H").options),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    expect(refused.metadata.get("idempotent-replayed")).toBeNull();
    // Each key's retry replays its own answer.
    const retry = keyed("hold-H");
    expect(await w.bookings.createHold(req, retry.options)).toEqual(held);
    expect(retry.seen.replayed).toBe(true);
    const refusedAgain = await rejected(
      otherBookings.createHold(req, keyed("hold-H").options),
      Code.Aborted,
      "SLOT_UNAVAILABLE",
    );
    expect(refusedAgain.metadata.get("idempotent-replayed")).toBe("true");
  });
});

describe("the operator key's Idempotency-Keys", () => {
  it("are scoped to its fixed id: its retry replays", async () => {
    const tenants = clientFor(TenantService, server.url, ADMIN_KEY);
    const name = `t-${Math.random().toString(36).slice(2)}`;
    const first = keyed(`tenant-${name}`);
    const made = await tenants.createTenant({ name }, first.options);
    const retry = keyed(`tenant-${name}`);
    const again = await tenants.createTenant({ name }, retry.options);
    expect(retry.seen.replayed).toBe(true);
    expect(again.tenant).toEqual(made.tenant);
    const { rows } = await server.pool.query(
      "SELECT api_key_id FROM idempotency_keys WHERE key = $1",
      [`tenant-${name}`],
    );
    expect(rows).toEqual([{ api_key_id: "env:HOLDFAST_ADMIN_KEY" }]);
  });
});

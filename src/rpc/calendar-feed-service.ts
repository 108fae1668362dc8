import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import type {
  CalendarFeedSchema,
  CalendarFeedService,
} from "../../gen/holdfast/v1/calendar_feed_pb.js";
import {
  type CalendarFeedRow,
  insertCalendarFeed,
  listCalendarFeeds,
  revokeCalendarFeed,
} from "../db/calendar-feeds.js";
import type { Db } from "../db/pool.js";
import { getResource } from "../db/resources.js";
import { getService } from "../db/services.js";
import { Rejection, resourceNotFound, serviceNotFound } from "../domain/rejection.js";
import type { Scope } from "../domain/scopes.js";
import { type Principal, principalOf } from "./auth.js";
import { CALENDAR_FEED_PATH } from "./calendar-feed-http.js";
import { timestampOfDate } from "./convert.js";
import { dbOf } from "./idempotency.js";
import { readPage, writePage } from "./paging.js";
import * as v from "./validate.js";

/** The scope whose keys list and revoke every feed of their tenant, not only their own. */
export const MANAGES_ALL_FEEDS: Scope = "keys.manage";

export function calendarFeedOf(f: CalendarFeedRow): MessageInitShape<typeof CalendarFeedSchema> {
  return {
    id: f.id,
    resourceId: f.resource_id ?? "",
    serviceId: f.service_id ?? "",
    freeBusy: f.free_busy,
    includeHolds: f.include_holds,
    description: f.description,
    prefix: f.prefix,
    createTime: timestampOfDate(f.create_time),
    revokeTime: f.revoke_time ? timestampOfDate(f.revoke_time) : undefined,
    creatorKeyId: f.creator_key_id ?? "",
  };
}

const createSchema = z
  .object({
    resourceId: v.optionalId,
    serviceId: v.optionalId,
    freeBusy: z.boolean(),
    includeHolds: z.boolean(),
    description: v.freeText,
  })
  .superRefine((f, ctx) => {
    if ((f.resourceId === "") === (f.serviceId === "")) {
      ctx.addIssue({
        code: "custom",
        path: [f.resourceId === "" ? "resourceId" : "serviceId"],
        message: "give exactly one of resource_id and service_id",
      });
    }
  });

export function calendarFeedService(base: Db): ServiceImpl<typeof CalendarFeedService> {
  return {
    async createCalendarFeed(req, ctx) {
      const f = v.parseRequest(createSchema, req);
      const principal = principalOf(ctx);
      const tenantId = principal.tenantId;
      const db = dbOf(ctx, base);
      if (f.resourceId !== "" && !(await getResource(db, tenantId, f.resourceId))) {
        throw resourceNotFound(f.resourceId);
      }
      if (f.serviceId !== "" && !(await getService(db, tenantId, f.serviceId))) {
        throw serviceNotFound(f.serviceId);
      }
      const { secret, feed } = await insertCalendarFeed(db, tenantId, principal.keyId, {
        resourceId: f.resourceId || null,
        serviceId: f.serviceId || null,
        freeBusy: f.freeBusy,
        includeHolds: f.includeHolds,
        description: f.description,
      });
      return { urlPath: `${CALENDAR_FEED_PATH}${secret}.ics`, feed: calendarFeedOf(feed) };
    },

    async listCalendarFeeds(req, ctx) {
      v.parseRequest(z.object(v.pageFields), req);
      const principal = principalOf(ctx);
      const creatorKeyId = feedsOf(principal);
      const page = readPage(ctx, req, { r: req.includeRevoked, c: creatorKeyId ?? "" });
      const rows = await listCalendarFeeds(base, principal.tenantId, {
        after: page.after,
        limit: page.size + 1,
        includeRevoked: req.includeRevoked,
        creatorKeyId,
      });
      const { items, nextPageToken } = writePage(rows, page, (f) => f.id);
      return { feeds: items.map(calendarFeedOf), nextPageToken };
    },

    async revokeCalendarFeed(req, ctx) {
      const principal = principalOf(ctx);
      // Another key's feed is refused as an unknown id is: what a key may
      // not list, it learns nothing of, not even that it exists.
      const revoked = await revokeCalendarFeed(
        dbOf(ctx, base),
        principal.tenantId,
        req.calendarFeedId,
        feedsOf(principal),
      );
      if (!revoked) {
        throw new Rejection(
          "CALENDAR_FEED_NOT_FOUND",
          `no calendar feed with id "${req.calendarFeedId}"`,
          { fieldViolations: [{ field: "calendar_feed_id", description: "no such feed" }] },
        );
      }
      return { feed: calendarFeedOf(revoked) };
    },
  };
}

/**
 * The feeds a key may see, list and revoke: those it made (the creator key
 * id to match), or, for a key that manages the tenant's keys, every feed
 * (undefined), as it sees every key, those made before creators were
 * recorded included. A feed's record names what it shows and what it is
 * for, its creator's business, not that of every key that may read bookings.
 */
function feedsOf(principal: Principal): string | undefined {
  return principal.scopes.includes(MANAGES_ALL_FEEDS) ? undefined : principal.keyId;
}

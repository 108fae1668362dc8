import { randomBytes } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import { checkCalendarFeedRoom } from "../domain/calendar-feed.js";
import { hashSecret } from "./keys.js";
import type { Db, Queryable } from "./pool.js";

/**
 * Calendar feeds: `hfcal_` plus 32 random bytes in the URL; only the
 * secret's SHA-256 is stored, as for API keys. Each records the API key
 * that made it (`creator_key_id`, NULL for feeds made before it was
 * recorded): a feed answers only while that key is not revoked. A key
 * sees and revokes the feeds it made; a `keys.manage` key, every feed of
 * its tenant (src/rpc/calendar-feed-service.ts decides which).
 */

export type CalendarFeedRow = {
  id: string;
  tenant_id: string;
  prefix: string;
  resource_id: string | null;
  service_id: string | null;
  free_busy: boolean;
  include_holds: boolean;
  description: string;
  create_time: Date;
  revoke_time: Date | null;
  /** The API key that made it; null for feeds made before this was recorded. */
  creator_key_id: string | null;
};

const COLUMNS =
  "id, tenant_id, prefix, resource_id, service_id, free_busy, include_holds, description, create_time, revoke_time, creator_key_id";

export type NewCalendarFeed = {
  resourceId: string | null;
  serviceId: string | null;
  freeBusy: boolean;
  includeHolds: boolean;
  description: string;
};

/**
 * Adds a feed made by the key `creatorKeyId`; LIMIT_REACHED when the tenant
 * has as many feeds not revoked as it may (checkCalendarFeedRoom). Counted
 * under a lock of the tenant's feeds, so two concurrent adds never both
 * take its last place.
 */
export async function insertCalendarFeed(
  db: Db,
  tenantId: string,
  creatorKeyId: string,
  f: NewCalendarFeed,
): Promise<{ secret: string; feed: CalendarFeedRow }> {
  const secret = `hfcal_${randomBytes(32).toString("base64url")}`;
  return db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", [
      `quota/${tenantId}/calendar_feeds`,
    ]);
    const { rows: counted } = await tx.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM calendar_feeds WHERE tenant_id = $1 AND revoke_time IS NULL",
      [tenantId],
    );
    checkCalendarFeedRoom(counted[0]?.n ?? 0);
    const { rows } = await tx.query<CalendarFeedRow>(
      `INSERT INTO calendar_feeds (tenant_id, secret_hash, prefix, resource_id, service_id, free_busy, include_holds, description, creator_key_id)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
       RETURNING ${COLUMNS}`,
      [
        tenantId,
        hashSecret(secret),
        secret.slice(0, 12),
        f.resourceId,
        f.serviceId,
        f.freeBusy,
        f.includeHolds,
        f.description,
        creatorKeyId,
      ],
    );
    return { secret, feed: rows[0] as CalendarFeedRow };
  });
}

/**
 * The active feed with this secret, if any: what a feed URL resolves to,
 * with Postgres's clock, which the feed's window is counted from. A feed
 * whose creating key is revoked is not active. API keys are never deleted,
 * only revoked; the operator key (HOLDFAST_ADMIN_KEY) has no row and cannot
 * be revoked, so its feeds, like those made before creators were recorded,
 * answer until they are revoked themselves.
 */
export async function findActiveCalendarFeed(
  q: Queryable,
  secret: string,
): Promise<{ feed: CalendarFeedRow | undefined; now: Date }> {
  const { rows } = await q.query<CalendarFeedRow & { now: Date }>(
    `SELECT ${COLUMNS}, n.now
     FROM (SELECT now() AS now) n
     LEFT JOIN calendar_feeds f ON f.secret_hash = $1 AND f.revoke_time IS NULL
       AND NOT EXISTS (
         SELECT 1 FROM api_keys k
         WHERE k.tenant_id = f.tenant_id AND k.id = f.creator_key_id AND k.revoke_time IS NOT NULL
       )`,
    [hashSecret(secret)],
  );
  const { now, ...feed } = rows[0] as CalendarFeedRow & { now: Date };
  return { feed: feed.id === null ? undefined : feed, now };
}

/**
 * The tenant's feeds in id order, after `after`: those the key `creatorKeyId`
 * made, or every one (those with no recorded creator too) when it is
 * undefined.
 */
export async function listCalendarFeeds(
  q: Queryable,
  tenantId: string,
  opts: {
    after: string | undefined;
    limit: number;
    includeRevoked: boolean;
    creatorKeyId: string | undefined;
  },
): Promise<CalendarFeedRow[]> {
  const { rows } = await q.query<CalendarFeedRow>(
    `SELECT ${COLUMNS} FROM calendar_feeds
     WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) AND ($3 OR revoke_time IS NULL)
       AND ($5::text IS NULL OR creator_key_id = $5)
     ORDER BY id LIMIT $4`,
    [tenantId, opts.after ?? null, opts.includeRevoked, opts.limit, opts.creatorKeyId ?? null],
  );
  return rows;
}

/**
 * Revokes the tenant's feed `id`, if it is one of those listCalendarFeeds
 * gives the same `creatorKeyId`: made by that key, or any feed when it is
 * undefined. Revoking a revoked feed returns it unchanged. Undefined both
 * when there is no such feed and when it is another key's, so that a key
 * learns nothing of feeds it may not see.
 */
export async function revokeCalendarFeed(
  q: Queryable,
  tenantId: string,
  id: string,
  creatorKeyId: string | undefined,
): Promise<CalendarFeedRow | undefined> {
  const { rows } = await q.query<CalendarFeedRow>(
    `UPDATE calendar_feeds SET revoke_time = coalesce(revoke_time, now())
     WHERE tenant_id = $1 AND id = $2 AND ($3::text IS NULL OR creator_key_id = $3)
     RETURNING ${COLUMNS}`,
    [tenantId, id, creatorKeyId ?? null],
  );
  return rows[0];
}

/** A booking as a feed shows it, with the names and zone it is shown in. */
export type FeedBookingRow = {
  id: string;
  status: string;
  start_time: Date;
  end_time: Date;
  expire_time: Date | null;
  create_time: Date;
  update_time: Date;
  attendee: JsonObject;
  cancel_reason: string;
  service_id: string;
  service_name: string;
  resource_id: string;
  resource_name: string;
  time_zone: string;
};

/**
 * The feed's bookings that start within [fromMs, toMs), earliest first, at
 * most `limit`, in the given statuses. Reads through bookings_by_start: a
 * calendar app polls a feed a few times an hour at most.
 */
export async function calendarFeedBookings(
  q: Queryable,
  feed: CalendarFeedRow,
  window: { fromMs: number; toMs: number; limit: number; statuses: readonly string[] },
): Promise<FeedBookingRow[]> {
  const { rows } = await q.query<FeedBookingRow>(
    `SELECT b.id, b.status, b.start_time, b.end_time, b.expire_time, b.create_time, b.update_time, b.attendee,
            b.cancel_reason, b.service_id, s.name AS service_name, b.resource_id,
            r.name AS resource_name, r.time_zone
     FROM bookings b
     JOIN resources r ON r.tenant_id = b.tenant_id AND r.id = b.resource_id
     JOIN services s ON s.tenant_id = b.tenant_id AND s.id = b.service_id
     WHERE b.tenant_id = $1 AND b.start_time >= $2 AND b.start_time < $3
       AND ($4::text IS NULL OR b.resource_id = $4) AND ($5::text IS NULL OR b.service_id = $5)
       AND b.status = ANY ($6::text[])
     ORDER BY b.start_time, b.id
     LIMIT $7`,
    [
      feed.tenant_id,
      new Date(window.fromMs),
      new Date(window.toMs),
      feed.resource_id,
      feed.service_id,
      [...window.statuses],
      window.limit,
    ],
  );
  return rows;
}

/** The name and zone a feed's calendar is titled with and shown in. */
export async function calendarFeedSubject(
  q: Queryable,
  feed: CalendarFeedRow,
): Promise<{ name: string; timeZone: string } | undefined> {
  const { rows } = await q.query<{ name: string; time_zone: string }>(
    feed.resource_id !== null
      ? "SELECT name, time_zone FROM resources WHERE tenant_id = $1 AND id = $2"
      : `SELECT s.name, p.time_zone FROM services s
         JOIN policy_versions p ON p.tenant_id = s.tenant_id AND p.service_id = s.id AND p.version = s.policy_version
         WHERE s.tenant_id = $1 AND s.id = $2`,
    [feed.tenant_id, feed.resource_id ?? feed.service_id],
  );
  const row = rows[0];
  return row && { name: row.name, timeZone: row.time_zone };
}

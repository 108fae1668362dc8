import { activeTraceparent } from "../tracing.js";
import { recordWebhookDisabled } from "./outbox.js";
import type { Db, Queryable } from "./pool.js";

export type WebhookState = "active" | "paused" | "disabled";

export type WebhookRow = {
  id: string;
  url: string;
  eventTypes: string[];
  description: string;
  state: WebhookState;
  disabledReason: string;
  consecutiveFailures: number;
  createTime: Date;
  updateTime: Date;
};

const COLUMNS = `id, url, event_types AS "eventTypes", description, state, disabled_reason AS "disabledReason",
  consecutive_failures AS "consecutiveFailures", create_time AS "createTime", update_time AS "updateTime"`;

export async function insertWebhook(
  q: Queryable,
  tenantId: string,
  w: { url: string; eventTypes: string[]; description: string; sealedSecret: Buffer },
): Promise<WebhookRow> {
  const { rows } = await q.query<WebhookRow>(
    `INSERT INTO webhooks (tenant_id, url, event_types, description, secret) VALUES ($1, $2, $3::text[], $4, $5)
     RETURNING ${COLUMNS}`,
    [tenantId, w.url, w.eventTypes, w.description, w.sealedSecret],
  );
  return rows[0] as WebhookRow;
}

export async function getWebhook(
  q: Queryable,
  tenantId: string,
  id: string,
): Promise<WebhookRow | undefined> {
  const { rows } = await q.query<WebhookRow>(
    `SELECT ${COLUMNS} FROM webhooks WHERE tenant_id = $1 AND id = $2`,
    [tenantId, id],
  );
  return rows[0];
}

export async function listWebhooks(
  q: Queryable,
  tenantId: string,
  page: { after: string | undefined; limit: number },
): Promise<WebhookRow[]> {
  const { rows } = await q.query<WebhookRow>(
    `SELECT ${COLUMNS} FROM webhooks WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) ORDER BY id LIMIT $3`,
    [tenantId, page.after ?? null, page.limit],
  );
  return rows;
}

/**
 * Changes the given fields. Moving to active (resume, or re-enable) clears
 * the failure count, and so does leaving DISABLED for PAUSED: the reason
 * Holdfast disabled it for says nothing once the owner has set the state.
 */
export async function updateWebhook(
  q: Queryable,
  tenantId: string,
  id: string,
  c: { url?: string; eventTypes?: string[]; description?: string; state?: WebhookState },
): Promise<WebhookRow | undefined> {
  const { rows } = await q.query<WebhookRow>(
    `UPDATE webhooks SET url = coalesce($3, url), event_types = coalesce($4::text[], event_types),
       description = coalesce($5, description), state = coalesce($6, state),
       disabled_reason = CASE WHEN $6 = 'active' OR ($6 IS NOT NULL AND state = 'disabled') THEN '' ELSE disabled_reason END,
       consecutive_failures = CASE WHEN $6 = 'active' OR ($6 IS NOT NULL AND state = 'disabled') THEN 0 ELSE consecutive_failures END,
       update_time = now()
     WHERE tenant_id = $1 AND id = $2
     RETURNING ${COLUMNS}`,
    [tenantId, id, c.url ?? null, c.eventTypes ?? null, c.description ?? null, c.state ?? null],
  );
  return rows[0];
}

export async function deleteWebhook(q: Queryable, tenantId: string, id: string): Promise<boolean> {
  const { rowCount } = await q.query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2", [
    tenantId,
    id,
  ]);
  return (rowCount ?? 0) > 0;
}

/**
 * A new secret; the current one keeps signing, next to it, for 24 hours, as
 * do secrets retired earlier until their own 24 hours are up (the newest
 * nine of them at most: the eight newest still signing plus the one it retires).
 */
export async function rotateSecret(
  q: Queryable,
  tenantId: string,
  id: string,
  sealedSecret: Buffer,
): Promise<WebhookRow | undefined> {
  const { rows } = await q.query<WebhookRow>(
    `UPDATE webhooks SET
       previous_secrets = ARRAY(
         SELECT p.s FROM unnest(previous_secrets, previous_secrets_expire) WITH ORDINALITY AS p(s, e, n)
         WHERE p.e > now() ORDER BY p.e DESC, p.n DESC LIMIT 8) || secret,
       previous_secrets_expire = ARRAY(
         SELECT p.e FROM unnest(previous_secrets, previous_secrets_expire) WITH ORDINALITY AS p(s, e, n)
         WHERE p.e > now() ORDER BY p.e DESC, p.n DESC LIMIT 8) || (now() + interval '24 hours'),
       secret = $3, update_time = now()
     WHERE tenant_id = $1 AND id = $2
     RETURNING ${COLUMNS}`,
    [tenantId, id, sealedSecret],
  );
  return rows[0];
}

export type DeliveryStatus = "pending" | "succeeded" | "failed";

export type DeliveryRow = {
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  status: DeliveryStatus;
  nextAttemptTime: Date | null;
  createTime: Date;
  attempts: { attemptTime: string; statusCode: number; latencyMs: number; error: string }[];
};

const DELIVERY_COLUMNS = `d.id, d.webhook_id AS "webhookId", d.event_id AS "eventId", d.event_type AS "eventType",
  d.status, d.next_attempt_time AS "nextAttemptTime", d.create_time AS "createTime",
  coalesce((SELECT jsonb_agg(jsonb_build_object('attemptTime', ts_json(a.attempt_time), 'statusCode', a.status_code,
                     'latencyMs', a.latency_ms, 'error', a.error) ORDER BY a.attempt)
            FROM delivery_attempts a WHERE a.tenant_id = d.tenant_id AND a.delivery_id = d.id), '[]') AS attempts`;

export async function listDeliveries(
  q: Queryable,
  tenantId: string,
  webhookId: string,
  opts: { status: DeliveryStatus | undefined; before: string | undefined; limit: number },
): Promise<DeliveryRow[]> {
  const { rows } = await q.query<DeliveryRow>(
    `SELECT ${DELIVERY_COLUMNS} FROM deliveries d
     WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND ($3::text IS NULL OR d.status = $3)
       AND ($4::text IS NULL OR d.id < $4)
     ORDER BY d.id DESC LIMIT $5`,
    [tenantId, webhookId, opts.status ?? null, opts.before ?? null, opts.limit],
  );
  return rows;
}

/**
 * What became of a retry asked for by hand: scheduled, or why not. A
 * delivery whose attempt is in flight keeps that attempt, and says when
 * its lease ends (by then the attempt is recorded, or its worker is taken
 * for dead and the delivery is leased again anyway). One of a disabled
 * endpoint stays as it is, and says why the endpoint was disabled.
 */
export type RetryOutcome =
  | { outcome: "retried"; delivery: DeliveryRow }
  | { outcome: "webhook_not_found" }
  | { outcome: "not_found" }
  | { outcome: "in_flight"; inFlightUntil: string }
  | { outcome: "webhook_disabled"; disabledReason: string };

/**
 * Schedules another attempt now, whatever the delivery's status, unless
 * its endpoint is disabled, or an attempt of it is in flight. The attempt
 * is by hand: it uses none of the delivery's automatic retries (leaseDue
 * counts it apart), so a delivery still retrying keeps every retry it had.
 *
 * Nothing is sent to a disabled endpoint: the delivery would wait, pending
 * and in silence, for the endpoint to be re-enabled (a paused endpoint's
 * delivery does wait for it to resume, as its other deliveries do: pausing
 * is the owner's own choice). The endpoint's row is locked (FOR SHARE)
 * before the delivery's, the order recordAttempt takes them in (its
 * record_delivered statement too: the unreferenced CTE that updates the
 * delivery runs after the main UPDATE of the endpoint), so the two cannot
 * deadlock, and a disabling that commits meanwhile is seen.
 *
 * In flight is leased, the lease not run out by Postgres's clock. Clearing
 * that lease would let a worker send the delivery a second time while the
 * first POST is still open. The delivery's row is locked, so no worker
 * leases it between the check and the change.
 */
export async function retryDelivery(
  db: Db,
  tenantId: string,
  webhookId: string,
  id: string,
): Promise<RetryOutcome> {
  return db.transaction(async (tx) => {
    const endpoint = await tx.query<{ state: WebhookState; disabledReason: string }>(
      `SELECT state, disabled_reason AS "disabledReason" FROM webhooks
       WHERE tenant_id = $1 AND id = $2 FOR SHARE`,
      [tenantId, webhookId],
    );
    const w = endpoint.rows[0];
    if (!w) return { outcome: "webhook_not_found" };
    const delivery = await tx.query<{ inFlightUntil: string | null }>(
      `SELECT CASE WHEN lease_until >= now() THEN ts_text(lease_until) END AS "inFlightUntil"
       FROM deliveries WHERE tenant_id = $1 AND webhook_id = $2 AND id = $3 FOR UPDATE`,
      [tenantId, webhookId, id],
    );
    const d = delivery.rows[0];
    if (!d) return { outcome: "not_found" };
    if (w.state === "disabled")
      return { outcome: "webhook_disabled", disabledReason: w.disabledReason };
    if (d.inFlightUntil !== null) return { outcome: "in_flight", inFlightUntil: d.inFlightUntil };
    const retried = await tx.query<DeliveryRow>(
      `UPDATE deliveries d SET status = 'pending', next_attempt_time = now(), lease_until = NULL,
         retry_by_hand = true
       WHERE d.tenant_id = $1 AND d.webhook_id = $2 AND d.id = $3
       RETURNING ${DELIVERY_COLUMNS}`,
      [tenantId, webhookId, id],
    );
    return { outcome: "retried", delivery: retried.rows[0] as DeliveryRow };
  });
}

export type TestEventOutcome =
  | { outcome: "queued"; delivery: DeliveryRow }
  | { outcome: "webhook_not_found" }
  | { outcome: "webhook_disabled"; disabledReason: string };

/**
 * Queues a delivery outside the outbox (webhook.test), in the active span's
 * trace. The endpoint's row is locked (FOR SHARE) before its state is read,
 * as retryDelivery and the dispatcher lock it: a deletion or a disabling
 * that commits meanwhile is seen, so nothing is queued for an endpoint that
 * is gone or disabled. The body is made with Postgres's clock (`now`).
 */
export async function queueTestEvent(
  db: Db,
  tenantId: string,
  webhookId: string,
  event: { eventId: string; eventType: string; body: (now: Date) => string },
): Promise<TestEventOutcome> {
  return db.transaction(async (tx) => {
    const endpoint = await tx.query<{ state: WebhookState; disabledReason: string; now: Date }>(
      `SELECT state, disabled_reason AS "disabledReason", now() AS now FROM webhooks
       WHERE tenant_id = $1 AND id = $2 FOR SHARE`,
      [tenantId, webhookId],
    );
    const w = endpoint.rows[0];
    if (!w) return { outcome: "webhook_not_found" };
    if (w.state === "disabled")
      return { outcome: "webhook_disabled", disabledReason: w.disabledReason };
    const { rows } = await tx.query<DeliveryRow>(
      `INSERT INTO deliveries AS d (tenant_id, webhook_id, event_id, event_type, body, next_attempt_time, traceparent)
       VALUES ($1, $2, $3, $4, $5, now(), $6) RETURNING ${DELIVERY_COLUMNS}`,
      [
        tenantId,
        webhookId,
        event.eventId,
        event.eventType,
        event.body(w.now),
        activeTraceparent() ?? null,
      ],
    );
    return { outcome: "queued", delivery: rows[0] as DeliveryRow };
  });
}

/**
 * Turns the next outbox events into deliveries for the active endpoints
 * that want them, and moves the dispatch cursor past them, atomically. Only one instance dispatches at a time (the cursor row is
 * locked with SKIP LOCKED); the others find nothing to do. Returns how many
 * events were dispatched (0 when up to date or another instance holds it).
 */
export async function dispatchEvents(q: Queryable, limit: number): Promise<number> {
  // One statement, so one round trip: it locks the cursor, reads, inserts
  // and moves the cursor in its own transaction. FOR SHARE on the endpoints
  // orders it against a concurrent disabling (which fails the endpoint's
  // pending deliveries): it waits for that to commit and then sees the
  // endpoint disabled, rather than queueing a delivery nothing would send.
  // The cursor is compared as scalar subqueries, not joined, so the outbox
  // index starts at the cursor instead of scanning every event before it.
  const { rows } = await q.query<{ n: number }>({
    name: "dispatch_events",
    text: `WITH cursor AS (SELECT xid, seq FROM webhook_dispatch FOR UPDATE SKIP LOCKED),
       ev AS (
         SELECT o.* FROM outbox o
         WHERE (o.xid, o.seq) > ((SELECT xid FROM cursor), (SELECT seq FROM cursor))
           AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY o.xid, o.seq LIMIT $1),
       queued AS (
         INSERT INTO deliveries (tenant_id, webhook_id, event_id, event_type, body, next_attempt_time, traceparent)
         SELECT ev.tenant_id, w.id, ev.event_id, ev.type,
                jsonb_build_object('type', ev.type, 'timestamp', ts_json(ev.occur_time), 'data', ev.payload)::text, now(),
                ev.traceparent
         FROM ev JOIN webhooks w ON w.tenant_id = ev.tenant_id AND w.state = 'active'
           AND (ev.type = ANY (w.event_types) OR '*' = ANY (w.event_types))
         FOR SHARE OF w
         ON CONFLICT DO NOTHING
         RETURNING 1),
       newest AS (SELECT xid, seq FROM ev ORDER BY xid DESC, seq DESC LIMIT 1),
       moved AS (UPDATE webhook_dispatch SET xid = newest.xid, seq = newest.seq FROM newest RETURNING 1)
       SELECT (SELECT count(*) FROM ev)::int AS n, (SELECT count(*) FROM queued) AS queued, (SELECT count(*) FROM moved) AS moved`,
    values: [limit],
  });
  return rows[0]?.n ?? 0;
}

/** A delivery a worker has leased, with what it needs to send it. */
export type LeasedDelivery = {
  tenantId: string;
  id: string;
  webhookId: string;
  eventId: string;
  eventType: string;
  body: string;
  /** This attempt's number among all of the delivery's, by hand or not. */
  attempt: number;
  /** The delivery's automatic attempts so far, this one included unless it was asked for by hand. */
  automaticAttempts: number;
  /** Whether the delivery was given up before (its event counted toward disabling). */
  givenUp: boolean;
  url: string;
  secret: Buffer;
  /** Retired secrets still signing. */
  previousSecrets: Buffer[];
  /** The W3C traceparent of the call that caused the delivery, when it was traced. */
  traceparent: string | null;
};

/**
 * Leases up to `limit` due deliveries of active endpoints for `leaseMs`
 * (a paused endpoint's deliveries wait for it to resume). SKIP LOCKED lets
 * workers in every instance share the queue without sending anything twice
 * while they are healthy; a worker that dies loses its lease and another
 * takes the delivery over. An attempt asked for by hand (RetryDelivery) is
 * counted apart from the automatic ones.
 */
export async function leaseDue(
  q: Queryable,
  limit: number,
  leaseMs: number,
): Promise<LeasedDelivery[]> {
  const { rows } = await q.query<LeasedDelivery>(
    `WITH due AS (
       SELECT d.tenant_id, d.id FROM deliveries d
       JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.id = d.webhook_id AND w.state = 'active'
       WHERE d.status = 'pending' AND d.next_attempt_time <= now() AND (d.lease_until IS NULL OR d.lease_until < now())
       ORDER BY d.next_attempt_time LIMIT $1
       FOR UPDATE OF d SKIP LOCKED)
     UPDATE deliveries d SET lease_until = now() + $2 * interval '1 millisecond', attempt_count = d.attempt_count + 1,
       attempts_by_hand = d.attempts_by_hand + CASE WHEN d.retry_by_hand THEN 1 ELSE 0 END, retry_by_hand = false
     FROM due, webhooks w
     WHERE d.tenant_id = due.tenant_id AND d.id = due.id AND w.tenant_id = d.tenant_id AND w.id = d.webhook_id
     RETURNING d.tenant_id AS "tenantId", d.id, d.webhook_id AS "webhookId", d.event_id AS "eventId",
               d.event_type AS "eventType", d.body, d.attempt_count AS attempt,
               d.attempt_count - d.attempts_by_hand AS "automaticAttempts", d.given_up AS "givenUp", d.traceparent, w.url, w.secret,
               ARRAY(SELECT p.s FROM unnest(w.previous_secrets, w.previous_secrets_expire) AS p(s, e)
                     WHERE p.e > now()) AS "previousSecrets"`,
    [limit, leaseMs],
  );
  return rows;
}

export type AttemptResult = { statusCode: number; latencyMs: number; error: string };

/**
 * Records an attempt and what follows from it, in one transaction: success
 * ends the delivery and resets the endpoint's failure count; a failure
 * schedules the next attempt (or gives up); a delivery given up for the
 * first time is marked so (given_up) and counts towards disabling the endpoint, and 410 Gone or too many given-up
 * events in a row disable it, recording webhook.disabled. Returns
 * whether the endpoint was disabled, and the delivery's status after it.
 */
export async function recordAttempt(
  db: Db,
  d: LeasedDelivery,
  result: AttemptResult,
  next: { retryInMs: number | undefined; givesUp: boolean; disableAfter: number },
): Promise<{ disabled: boolean; status: DeliveryStatus }> {
  const attempt = [
    d.tenantId,
    d.id,
    d.attempt,
    result.latencyMs,
    result.statusCode,
    result.error.slice(0, 500),
  ];
  const insertAttempt = `INSERT INTO delivery_attempts (tenant_id, delivery_id, attempt, attempt_time, status_code, latency_ms, error)
       VALUES ($1, $2, $3, now() - $4 * interval '1 millisecond', $5, $4, $6)
       ON CONFLICT DO NOTHING`;
  if (result.statusCode >= 200 && result.statusCode < 300) {
    // The common case in one statement, so one round trip and one commit.
    await db.query({
      name: "record_delivered",
      text: `WITH attempt AS (${insertAttempt}),
             done AS (UPDATE deliveries SET status = 'succeeded', next_attempt_time = NULL, lease_until = NULL
                      WHERE tenant_id = $1 AND id = $2)
             UPDATE webhooks SET consecutive_failures = 0
             WHERE tenant_id = $1 AND id = $7 AND consecutive_failures > 0`,
      values: [...attempt, d.webhookId],
    });
    return { disabled: false, status: "succeeded" };
  }
  const gaveUp = next.retryInMs === undefined && next.givesUp;
  return db.transaction(async (tx) => {
    // The endpoint's row first: its lock orders this failure after any
    // concurrent one that disabled the endpoint, whose state it then sees,
    // and it is the order DeleteWebhook takes (the endpoint, then by cascade
    // its deliveries): the attempt's row, inserted first, held a key lock on
    // the delivery while this waited for the endpoint, and a deletion
    // waiting for that delivery deadlocked with it. An event counts as failed
    // once its delivery is given up (every retry used), not at its first
    // failed attempt: a receiver down for a minute while events pour in must
    // get them all once it is back.
    const { rows } = await tx.query<{ failures: number; state: string }>(
      `UPDATE webhooks SET consecutive_failures = consecutive_failures + CASE WHEN $3 THEN 1 ELSE 0 END
       WHERE tenant_id = $1 AND id = $2 RETURNING consecutive_failures AS failures, state`,
      [d.tenantId, d.webhookId, gaveUp],
    );
    const w = rows[0];
    // An endpoint deleted meanwhile took its deliveries with it: nothing to record.
    if (!w) return { disabled: false, status: "failed" };
    await tx.query(insertAttempt, attempt);
    const updated = await tx.query<{ status: DeliveryStatus }>(
      `UPDATE deliveries SET status = CASE WHEN $3::bigint IS NULL OR $4 THEN 'failed' ELSE 'pending' END,
         next_attempt_time = CASE WHEN NOT $4 THEN now() + $3::bigint * interval '1 millisecond' END,
         lease_until = NULL, given_up = given_up OR $5
       WHERE tenant_id = $1 AND id = $2 RETURNING status`,
      [
        d.tenantId,
        d.id,
        next.retryInMs ?? null,
        w.state !== "active" && w.state !== "paused",
        gaveUp,
      ],
    );
    const status = updated.rows[0]?.status ?? "failed";
    const reason =
      result.statusCode === 410
        ? "the endpoint answered 410 Gone"
        : w.failures >= next.disableAfter
          ? `deliveries of ${w.failures} events in a row failed`
          : undefined;
    if (w.state !== "active" || reason === undefined) return { disabled: false, status };
    await tx.query(
      `UPDATE webhooks SET state = 'disabled', disabled_reason = $3, update_time = now() WHERE tenant_id = $1 AND id = $2`,
      [d.tenantId, d.webhookId, reason],
    );
    await tx.query(
      `UPDATE deliveries SET status = 'failed', next_attempt_time = NULL, lease_until = NULL
       WHERE tenant_id = $1 AND webhook_id = $2 AND status = 'pending'`,
      [d.tenantId, d.webhookId],
    );
    await recordWebhookDisabled(tx, d.tenantId, d.webhookId, reason);
    return { disabled: true, status: "failed" };
  });
}

/**
 * Deletes up to `limit` ended deliveries (succeeded or failed), with their
 * attempts (by cascade), created longer than `retentionMs` ago, oldest
 * first: they go with the events retention deletes. A pending delivery
 * (still retrying, retried by hand, or waiting for its paused endpoint) is
 * never deleted, however old: the lock (SKIP LOCKED) leaves alone one that
 * RetryDelivery is making pending, and a row that changed meanwhile is read
 * again and checked anew. Returns how many were deleted.
 */
export async function pruneDeliveries(
  q: Queryable,
  retentionMs: number,
  limit: number,
): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `WITH old AS (
       SELECT tenant_id, id FROM deliveries
       WHERE status <> 'pending' AND create_time < now() - $1 * interval '1 millisecond'
       ORDER BY create_time LIMIT $2
       FOR UPDATE SKIP LOCKED),
     gone AS (
       DELETE FROM deliveries d USING old
       WHERE d.tenant_id = old.tenant_id AND d.id = old.id AND d.status <> 'pending'
       RETURNING 1)
     SELECT count(*)::int AS n FROM gone`,
    [retentionMs, limit],
  );
  return rows[0]?.n ?? 0;
}

/**
 * Whether recordAttempt failed because the delivery is gone: its webhook
 * was deleted (taking its deliveries along) while the attempt was in
 * flight, so the attempt has nothing left to be recorded against.
 */
export function deliveryGone(err: unknown): boolean {
  const e = err as { code?: unknown; table?: unknown } | null;
  return e?.code === "23503" && e.table === "delivery_attempts";
}

/**
 * How far webhook delivery is behind, for operators: committed events not
 * yet turned into deliveries, and pending deliveries (those due now, and
 * the longest a due one has waited). Counts stop at `cap`, so asking stays
 * cheap however large the backlog.
 */
export async function deliveryBacklog(
  q: Queryable,
  cap: number,
): Promise<{
  undispatched: number;
  oldestUndispatched: Date | undefined;
  pending: number;
  due: number;
  oldestDue: Date | undefined;
}> {
  const { rows } = await q.query<{
    undispatched: number;
    oldest_undispatched: Date | null;
    pending: number;
    due: number;
    oldest_due: Date | null;
  }>(
    `WITH cursor AS (SELECT xid, seq FROM webhook_dispatch),
     behind AS (
       SELECT o.occur_time FROM outbox o
       WHERE (o.xid, o.seq) > ((SELECT xid FROM cursor), (SELECT seq FROM cursor))
       ORDER BY o.xid, o.seq LIMIT $1),
     pending AS (
       SELECT next_attempt_time FROM deliveries WHERE status = 'pending'
       ORDER BY next_attempt_time LIMIT $1)
     SELECT (SELECT count(*) FROM behind)::int AS undispatched,
            (SELECT min(occur_time) FROM behind) AS oldest_undispatched,
            (SELECT count(*) FROM pending)::int AS pending,
            (SELECT count(*) FROM pending WHERE next_attempt_time <= now())::int AS due,
            (SELECT min(next_attempt_time) FROM pending WHERE next_attempt_time <= now()) AS oldest_due`,
    [cap],
  );
  const r = rows[0];
  return {
    undispatched: r?.undispatched ?? 0,
    oldestUndispatched: r?.oldest_undispatched ?? undefined,
    pending: r?.pending ?? 0,
    due: r?.due ?? 0,
    oldestDue: r?.oldest_due ?? undefined,
  };
}

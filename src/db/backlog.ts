import type { Position } from "../domain/events.js";
import { inTransaction, type Pool } from "./pool.js";

/** Counts stop here, so a scrape stays cheap however large a backlog grows. */
export const BACKLOG_CAP = 100_000;
/** A scrape's query gives up after this long rather than hold up the scrape. */
const TIMEOUT_MS = 2_000;

/** The event and hold backlog every instance shares, for the metrics. Ages in seconds, by Postgres's clock. */
export type Backlog = {
  headSeq: number;
  dispatchLagEvents: number;
  dispatchLagSeconds: number;
  pending: number;
  leased: number;
  oldestPendingSeconds: number;
  sweeperLagSeconds: number;
  /** Events after this instance's live feed head (0 without one). */
  feedLagEvents: number;
  /** Age of the oldest event a live stream of this instance has yet to send. */
  streamLagSeconds: number;
};

/**
 * One statement, under its own statement timeout, reads every gauge the
 * database answers. `streams`: where this instance's live feed has read to,
 * and the occur time of the oldest event its streams hold unsent.
 */
export async function readBacklog(
  pool: Pool,
  streams: { head: Position | undefined; oldest: Date | undefined },
): Promise<Backlog> {
  const { rows } = await inTransaction(pool, async (tx) => {
    await tx.query(`SET LOCAL statement_timeout = ${TIMEOUT_MS}`);
    return tx.query<Record<keyof Backlog, string | null>>(
      `WITH dispatch AS (SELECT xid, seq FROM webhook_dispatch),
       undispatched AS (
         SELECT o.occur_time FROM outbox o
         WHERE (o.xid, o.seq) > ((SELECT xid FROM dispatch), (SELECT seq FROM dispatch))
         ORDER BY o.xid, o.seq LIMIT $1),
       pending AS (
         SELECT create_time, lease_until FROM deliveries WHERE status = 'pending'
         ORDER BY next_attempt_time LIMIT $1),
       unread AS (
         SELECT o.occur_time FROM outbox o
         WHERE $2::xid8 IS NOT NULL AND (o.xid, o.seq) > ($2::xid8, $3::bigint)
         ORDER BY o.xid, o.seq LIMIT $1)
       SELECT
         (SELECT max(seq) FROM outbox) AS "headSeq",
         (SELECT count(*) FROM undispatched) AS "dispatchLagEvents",
         (SELECT extract(epoch FROM now() - min(occur_time)) FROM undispatched) AS "dispatchLagSeconds",
         (SELECT count(*) FROM pending) AS pending,
         (SELECT count(*) FROM pending WHERE lease_until > now()) AS leased,
         (SELECT extract(epoch FROM now() - min(create_time)) FROM pending) AS "oldestPendingSeconds",
         (SELECT extract(epoch FROM now() - min(expire_time))
            FROM bookings WHERE status = 'held' AND expire_time < now()) AS "sweeperLagSeconds",
         (SELECT count(*) FROM unread) AS "feedLagEvents",
         extract(epoch FROM now() - least($4::timestamptz, (SELECT min(occur_time) FROM unread)))
           AS "streamLagSeconds"`,
      [
        BACKLOG_CAP,
        streams.head?.xid.toString() ?? null,
        streams.head?.seq.toString() ?? null,
        streams.oldest ?? null,
      ],
    );
  });
  const row = rows[0];
  const n = (v: string | null | undefined) => (v == null ? 0 : Number(v));
  const age = (v: string | null | undefined) => Math.max(0, n(v));
  return {
    headSeq: n(row?.headSeq),
    dispatchLagEvents: n(row?.dispatchLagEvents),
    dispatchLagSeconds: age(row?.dispatchLagSeconds),
    pending: n(row?.pending),
    leased: n(row?.leased),
    oldestPendingSeconds: age(row?.oldestPendingSeconds),
    sweeperLagSeconds: age(row?.sweeperLagSeconds),
    feedLagEvents: n(row?.feedLagEvents),
    streamLagSeconds: age(row?.streamLagSeconds),
  };
}

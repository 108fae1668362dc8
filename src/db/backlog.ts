import type { Pool } from "./pool.js";

/** The event and hold backlog every instance shares, for the metrics. */
export type Backlog = {
  headSeq: number;
  dispatchLagEvents: number;
  dispatchLagSeconds: number;
  pending: number;
  leased: number;
  sweeperLagSeconds: number;
};

export async function readBacklog(pool: Pool): Promise<Backlog> {
  const { rows } = await pool.query<Record<keyof Backlog, string | null>>(`
    SELECT
      (SELECT max(seq) FROM outbox) AS "headSeq",
      (SELECT count(*) FROM (
         SELECT 1 FROM outbox o, webhook_dispatch d WHERE (o.xid, o.seq) > (d.xid, d.seq) LIMIT 100000
       ) x) AS "dispatchLagEvents",
      (SELECT extract(epoch FROM now() - min(o.occur_time))
         FROM outbox o, webhook_dispatch d WHERE (o.xid, o.seq) > (d.xid, d.seq)) AS "dispatchLagSeconds",
      (SELECT count(*) FROM deliveries WHERE status = 'pending') AS pending,
      (SELECT count(*) FROM deliveries WHERE status = 'pending' AND lease_until > now()) AS leased,
      (SELECT extract(epoch FROM now() - min(expire_time))
         FROM bookings WHERE status = 'held' AND expire_time < now()) AS "sweeperLagSeconds"`);
  const row = rows[0];
  const n = (v: string | null | undefined) => (v == null ? 0 : Number(v));
  return {
    headSeq: n(row?.headSeq),
    dispatchLagEvents: n(row?.dispatchLagEvents),
    dispatchLagSeconds: Math.max(0, n(row?.dispatchLagSeconds)),
    pending: n(row?.pending),
    leased: n(row?.leased),
    sweeperLagSeconds: Math.max(0, n(row?.sweeperLagSeconds)),
  };
}

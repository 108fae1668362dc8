import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventFeed, Subscription } from "../../src/events/feed.js";
import { seededDatabase } from "../support/database.js";

let pool: pg.Pool;
let url: string;
beforeAll(async () => {
  ({ pool, url } = await seededDatabase());
});

const everything = { types: [], resourceIds: [], serviceIds: [] };

describe("the live feed", () => {
  it("misses nothing that commits while it is starting for its first subscriber", async () => {
    // The feed's own connection is busy, so whatever it asks Postgres waits.
    const feedPool = new pg.Pool({ connectionString: url, max: 1 });
    afterAll(() => feedPool.end());
    // Polling often: an event another test's open transaction keeps
    // invisible for a moment still arrives, and a feed that started after
    // the commit would still have skipped it.
    const feed = new EventFeed(feedPool, undefined, 50);
    const busy = await feedPool.connect();
    setTimeout(() => busy.release(), 300);
    try {
      // A stream subscribes, then catches up from the table (nothing there),
      // then an event commits: the feed must deliver it live, even though it
      // could only start reading after the commit.
      const sub = await feed.subscribe("ten_a", everything, 100);
      const { rows } = await pool.query("SELECT count(*)::int AS n FROM outbox");
      expect(rows[0].n).toBe(0);
      await pool.query(
        "INSERT INTO outbox (tenant_id, type, payload) VALUES ('ten_a', 'booking.held', '{}')",
      );
      feed.committed();
      const deadline = AbortSignal.timeout(10_000);
      const e = await sub.next(deadline);
      expect(e?.type).toBe("booking.held");
      sub.close();
    } finally {
      await feed.stop();
    }
  });
});

describe("a subscription's progress", () => {
  it("reaches only its own tenant's events, matching or not, never another tenant's", () => {
    const sub = new Subscription(
      "ten_a",
      { ...everything, types: ["booking.cancelled"] },
      10,
      () => {},
    );
    const event = (tenantId: string, seq: bigint, type = "booking.held") => ({
      position: { xid: 100n, seq },
      tenantId,
      eventId: `evt_${seq}`,
      type,
      occurTime: new Date(),
      bookingId: null,
      resourceId: null,
      serviceId: null,
      payload: {},
    });
    sub.offer(event("ten_b", 1n));
    // Another tenant's write tells this one nothing: no progress yet.
    expect(sub.caughtUp()).toBeUndefined();
    sub.offer(event("ten_a", 2n));
    expect(sub.caughtUp()).toEqual({ xid: 100n, seq: 2n });
    sub.offer(event("ten_b", 3n));
    expect(sub.caughtUp()).toEqual({ xid: 100n, seq: 2n });
    sub.close();
  });
});

import type pg from "pg";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { outboxBounds, pruneEvents, readEventPage } from "../../src/db/outbox.js";
import {
  BEFORE_FIRST,
  BEGINNING,
  cursorPosition,
  isAfter,
  type Position,
} from "../../src/domain/events.js";
import { seededDatabase } from "../support/database.js";

let pool: pg.Pool;
beforeAll(async () => {
  ({ pool } = await seededDatabase());
});

const insert = (q: pg.Pool | pg.PoolClient, type = "booking.held") =>
  q.query<{ xid: string }>(
    "INSERT INTO outbox (tenant_id, type, payload) VALUES ('ten_a', $1, '{}') RETURNING xid::text",
    [type],
  );

describe("readEventPage", () => {
  it("reads up to a head that no running transaction is behind, and on from it misses nothing", async () => {
    const page = (after: Position, types: string[] = []) =>
      readEventPage(pool, {
        tenantId: "ten_a",
        after,
        filter: { types, resourceIds: [], serviceIds: [] },
        limit: 10,
      });
    const early = await pool.connect();
    try {
      // A transaction that writes first and commits last.
      await early.query("BEGIN");
      const first = BigInt((await insert(early)).rows[0]?.xid as string);
      const second = BigInt((await insert(pool)).rows[0]?.xid as string);
      expect(second > first).toBe(true);
      const before = await page(BEGINNING);
      // Neither is readable yet, and the head stays behind the open transaction.
      expect(before.events).toEqual([]);
      expect(before.head.xid <= first).toBe(true);
      await early.query("COMMIT");
      const after = await page(before.head);
      expect(after.events.map((e) => e.position.xid)).toEqual([first, second]);
      expect(isAfter(after.head, after.events[1]?.position as Position)).toBe(true);
      // Nothing matches: the head still moves on, past what was read.
      await insert(pool, "booking.confirmed");
      let none = await page(after.head, ["booking.cancelled"]);
      for (let i = 0; i < 50 && !isAfter(none.head, after.head); i++) {
        none = await page(after.head, ["booking.cancelled"]);
      }
      expect(none.events).toEqual([]);
      expect(isAfter(none.head, after.head)).toBe(true);
      const rest = await page(after.head);
      expect(rest.events.map((e) => e.type)).toEqual(["booking.confirmed"]);
      expect((await page(none.head)).events).toEqual([]);
    } finally {
      early.release();
    }
  });

  it("reads the bounds a cursor is checked against in the same statement as the page", async () => {
    const page = () =>
      readEventPage(pool, {
        tenantId: "ten_a",
        after: BEGINNING,
        filter: { types: [], resourceIds: [], serviceIds: [] },
        limit: 1000,
      });
    const { rows } = await pool.query<{ seq: string }>(
      "INSERT INTO outbox (tenant_id, type, payload, occur_time) VALUES ('ten_a', 'booking.held', '{}', now() - interval '8 days') RETURNING seq::text",
    );
    const seq = BigInt(rows[0]?.seq as string);
    let before = await page();
    for (let i = 0; i < 50 && !before.events.some((e) => e.position.seq === seq); i++) {
      before = await page();
    }
    const old = before.events.find((e) => e.position.seq === seq)?.position as Position;
    expect(old).toBeDefined();
    expect(before.lastSeq >= seq).toBe(true);
    expect(before.pruned === undefined || isAfter(old, before.pruned)).toBe(true);
    expect(await pruneEvents(pool, 7 * 86_400_000, 5_000)).toBeGreaterThan(0);
    const after = await page();
    expect(after.events.some((e) => e.position.seq === seq)).toBe(false);
    expect(after.pruned).toEqual(old);
    expect(after).toMatchObject(await outboxBounds(pool, "ten_a").then(({ head: _, ...b }) => b));
  });

  it("deletes no event a reader could not yet read, so no tenant's bounds pass the head", async () => {
    await pool.query("INSERT INTO tenants (id, name) VALUES ('ten_late', 'l')");
    const open = await pool.connect();
    try {
      // An older transaction still running holds the head back...
      await open.query("BEGIN");
      await open.query("SELECT pg_current_xact_id()");
      // ...behind an old event committed after it started.
      await pool.query(
        "INSERT INTO outbox (tenant_id, type, payload, occur_time) VALUES ('ten_late', 'booking.held', '{}', now() - interval '9 days')",
      );
      await pruneEvents(pool, 7 * 86_400_000, 5_000);
      const kept = await pool.query("SELECT 1 FROM outbox WHERE tenant_id = 'ten_late'");
      expect(kept.rowCount).toBe(1);
      const held = await outboxBounds(pool, "ten_late");
      expect(held.pruned).toBeUndefined();
      expect(cursorPosition(held.own, held)).toEqual(BEFORE_FIRST);
    } finally {
      await open.query("COMMIT");
      open.release();
    }
    // Once it ends, the event goes: as soon as no transaction older than it
    // runs anywhere on the Postgres server (xids are the whole server's, and
    // other test files' transactions may be running).
    let after = await outboxBounds(pool, "ten_late");
    await vi.waitFor(
      async () => {
        await pruneEvents(pool, 7 * 86_400_000, 5_000);
        after = await outboxBounds(pool, "ten_late");
        expect(after.pruned).toBeDefined();
      },
      { timeout: 30_000, interval: 100 },
    );
    expect(isAfter(after.own, after.head)).toBe(false);
    expect(cursorPosition(after.own, after)).toEqual(after.pruned);
  });

  it("gives a tenant only positions of its own events: others' writes and deletions move none of its bounds", async () => {
    await pool.query("INSERT INTO tenants (id, name) VALUES ('ten_quiet', 'q'), ('ten_busy', 'b')");
    const bounds = () =>
      outboxBounds(pool, "ten_quiet").then(({ head: _, lastSeq: _s, ...b }) => b);
    // No events yet: before its first.
    expect(await bounds()).toEqual({ own: BEFORE_FIRST, pruned: undefined });
    const { rows } = await pool.query<{ xid: string; seq: string }>(
      "INSERT INTO outbox (tenant_id, type, payload, occur_time) VALUES ('ten_quiet', 'booking.held', '{}', now() - interval '9 days') RETURNING xid::text, seq::text",
    );
    const mine = { xid: BigInt(rows[0]?.xid as string), seq: BigInt(rows[0]?.seq as string) };
    const quiet = await bounds();
    expect(quiet).toEqual({ own: mine, pruned: undefined });
    // Another tenant writes, and retention deletes its old events: nothing of it shows.
    for (let i = 0; i < 5; i++) {
      await pool.query(
        "INSERT INTO outbox (tenant_id, type, payload, occur_time) VALUES ('ten_busy', 'booking.held', '{}', now() - interval '8 days')",
      );
    }
    await pool.query(
      "INSERT INTO outbox (tenant_id, type, payload) VALUES ('ten_busy', 'booking.held', '{}')",
    );
    expect(await bounds()).toEqual(quiet);
    const pruned = await pool.query<{ tenant_id: string }>(
      "SELECT 1 FROM outbox WHERE occur_time < now() - interval '7 days'",
    );
    expect(await pruneEvents(pool, 7 * 86_400_000, 5_000)).toBe(pruned.rowCount);
    // Its own old event deleted: that is its marker, and still its newest,
    // from which it reads on without being told it expired.
    expect(await bounds()).toEqual({ own: mine, pruned: mine });
    const on = await outboxBounds(pool, "ten_quiet");
    expect(cursorPosition(on.own, on)).toEqual(mine);
    const busy = await outboxBounds(pool, "ten_busy");
    expect(busy.pruned && isAfter(busy.own, busy.pruned)).toBe(true);
  });
});

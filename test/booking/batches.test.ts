import { randomBytes } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import { context, propagation, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { NodeTracerProvider } from "@opentelemetry/sdk-trace-node";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookingBatches } from "../../src/booking/batches.js";
import {
  type BookingWrites,
  book,
  change,
  type NewBookingRequest,
  reschedule,
  type Written,
} from "../../src/booking/writes.js";
import { createBookings, type NewBooking } from "../../src/db/bookings.js";
import type { IdempotencyClaim } from "../../src/db/idempotency.js";
import { poolDb } from "../../src/db/pool.js";
import { setQuotas } from "../../src/db/quotas.js";
import { insertResource } from "../../src/db/resources.js";
import { createTenant } from "../../src/db/tenants.js";
import type { ResourceSnapshot, ServiceSnapshot } from "../../src/domain/booking.js";
import { Rejection } from "../../src/domain/rejection.js";
import { bookingWritesOn, serviceOver, thirtyMinutePolicy } from "../support/booking-writes.js";
import { freshDatabase } from "../support/database.js";

/**
 * Concurrent creates, batched (src/booking/batches.ts), on a real Postgres
 * and without a server. Batches are forced: a test holds a resource's
 * advisory lock, so the first create waits in Postgres while the others
 * queue behind it (on its resource, or on other resources of its tenant);
 * then it lets go. Which rows one transaction wrote shows in their xmin.
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
/** Mondays: one far enough ahead for every rule of the clock, one long past. */
const MONDAY = Date.UTC(2030, 2, 4);
const PAST_MONDAY = Date.UTC(2024, 2, 4);

let pool: pg.Pool;
let w: BookingWrites;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: await freshDatabase(), max: 8 });
  w = bookingWritesOn(pool);
});
afterAll(() => pool.end());

/**
 * A new tenant with `resources` resources (UTC, Monday 09:00-17:00 or all
 * hours) and a service over them; `hold` is on the first unless told.
 */
async function world(mondayHours = false, resources = 1) {
  const db = poolDb(pool);
  const tenantId = (await createTenant(db, `batches-${randomBytes(4).toString("hex")}`)).tenant.id;
  const { serviceId, resourceIds: ids } = await serviceOver(
    pool,
    tenantId,
    resources,
    mondayHours ? [{ weekday: 1, start: 9 * 60, end: 17 * 60 }] : null,
  );
  const hold = (startMs: number, resourceId = ids[0] as string): NewBookingRequest => ({
    slotId: "",
    serviceId,
    resourceId,
    startMs,
    endMs: startMs + 30 * MINUTE,
    attendee: {},
    metadata: {},
    hold: { ttlMs: null },
  });
  const claim = (key: string, body = key): IdempotencyClaim => ({
    tenantId,
    apiKeyId: "key_test",
    method: "holdfast.v1.BookingService/CreateHold",
    key,
    hash: Buffer.from(body.padEnd(32, "-")),
  });
  return { tenantId, resourceId: ids[0] as string, resourceIds: ids, serviceId, hold, claim };
}

type World = Awaited<ReturnType<typeof world>>;

/** A write's outcome, or the Rejection it threw. */
function settle(p: Promise<Written>): Promise<Written | Rejection> {
  return p.catch((err: unknown) => {
    if (err instanceof Rejection) return err;
    throw err;
  });
}

async function until(done: () => boolean): Promise<void> {
  for (let i = 0; !done(); i++) {
    if (i > 2000) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Takes a resource's lock in a transaction of a session of its own, as a
 * write in flight holds it, until `letGo` (which may be called again).
 */
async function holdLock(
  tenantId: string,
  resourceId: string,
): Promise<{ letGo: () => Promise<void> }> {
  const holder = await pool.connect();
  try {
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      tenantId,
      resourceId,
    ]);
  } catch (err) {
    holder.release();
    throw err;
  }
  let held = true;
  return {
    letGo: async () => {
      if (!held) return;
      held = false;
      try {
        await holder.query("ROLLBACK");
      } finally {
        holder.release();
      }
    },
  };
}

/**
 * Holds the resource's lock in a transaction of its own while `queue`
 * starts creates on it, each of which must join the resource's queue
 * (pending grows by one per create) before the next starts; then lets go
 * and waits for every answer.
 */
async function batched(
  x: World,
  queue: (() => Promise<Written>)[],
  on: BookingWrites = w,
  resourceOf: (i: number) => string = () => x.resourceId,
): Promise<(Written | Rejection)[]> {
  const lock = await holdLock(x.tenantId, x.resourceId);
  try {
    const answers: Promise<Written | Rejection>[] = [];
    for (const [i, start] of queue.entries()) {
      const before = on.batches.pending(x.tenantId, resourceOf(i));
      answers.push(settle(start()));
      await until(() => on.batches.pending(x.tenantId, resourceOf(i)) === before + 1);
    }
    await lock.letGo();
    return await Promise.all(answers);
  } finally {
    await lock.letGo();
  }
}

const bookingOf = (o: Written | Rejection) =>
  ((o as Written).response as { booking: JsonObject }).booking;
const errorOf = (o: Written | Rejection) => (o as Written).error;
const iso = (ms: number) => new Date(ms).toISOString().replace(".000Z", ".000000Z");

/** Each row's xmin: the transaction that wrote it. */
async function writers(x: World) {
  const q = async (sql: string) =>
    new Map(
      (await pool.query<{ k: string; x: string }>(sql, [x.tenantId])).rows.map((r) => [r.k, r.x]),
    );
  return {
    bookings: await q("SELECT id AS k, xmin::text AS x FROM bookings WHERE tenant_id = $1"),
    keys: await q("SELECT key AS k, xmin::text AS x FROM idempotency_keys WHERE tenant_id = $1"),
    events: await q(
      "SELECT booking_id || ' ' || type AS k, xmin::text AS x FROM outbox WHERE tenant_id = $1",
    ),
  };
}

describe("a batch of creates on one resource", () => {
  it("gives each caller its own answer: a conflict, a replay, a rule's refusal and a good one", async () => {
    const x = await world(true);
    // Before the batch: a hold kept under a key (replayed in the batch), and a hold at noon.
    const first = await book(w, x.tenantId, x.hold(MONDAY + 11 * HOUR), x.claim("first"));
    const noon = await book(w, x.tenantId, x.hold(MONDAY + 12 * HOUR), undefined);
    const good = x.hold(MONDAY + 10 * HOUR);

    const [opener, ok, second, replay, tooSoon, taken, duplicate] = await batched(x, [
      () => book(w, x.tenantId, x.hold(MONDAY + 9 * HOUR), undefined),
      () => book(w, x.tenantId, good, x.claim("good")),
      // The same slot, queued after it: the first wins.
      () => book(w, x.tenantId, x.hold(MONDAY + 10 * HOUR), x.claim("second")),
      () => book(w, x.tenantId, x.hold(MONDAY + 11 * HOUR), x.claim("first")),
      // Within working hours, but long past: refused by the clock, under the lock.
      () => book(w, x.tenantId, x.hold(PAST_MONDAY + 10 * HOUR), x.claim("soon")),
      () => book(w, x.tenantId, x.hold(MONDAY + 12 * HOUR), x.claim("taken")),
      // The good one again, same key, in the same batch: its outcome, replayed.
      () => book(w, x.tenantId, good, x.claim("good")),
    ]);
    // Not worked: refused before the write, so it never joins the queue.
    const late = await book(w, x.tenantId, x.hold(MONDAY + 20 * HOUR), x.claim("late"));
    expect(late.error?.reason).toBe("OUTSIDE_WORKING_HOURS");

    expect(bookingOf(opener as Written)).toMatchObject({ startTime: iso(MONDAY + 9 * HOUR) });
    expect((ok as Written).replayed).toBeFalsy();
    expect(bookingOf(ok as Written)).toMatchObject({
      startTime: iso(MONDAY + 10 * HOUR),
      status: "BOOKING_STATUS_HELD",
    });
    expect(errorOf(second as Written)).toMatchObject({
      reason: "SLOT_UNAVAILABLE",
      conflicts: [
        { startTime: iso(MONDAY + 10 * HOUR), endTime: iso(MONDAY + 10.5 * HOUR), status: "held" },
      ],
    });
    // Alternatives as for any conflict: free times nearby, none of them taken.
    const offered = (second as Written).alternatives?.map((a) => a.startMs) ?? [];
    expect(offered).toHaveLength(3);
    for (const t of [9, 10, 11, 12]) expect(offered).not.toContain(MONDAY + t * HOUR);
    expect(replay).toMatchObject({ replayed: true });
    expect(bookingOf(replay as Written)).toEqual(bookingOf(first));
    expect(errorOf(tooSoon as Written)?.reason).toBe("TOO_SOON");
    expect(errorOf(taken as Written)).toMatchObject({
      reason: "SLOT_UNAVAILABLE",
      conflicts: [{ startTime: iso(MONDAY + 12 * HOUR), status: "held" }],
    });
    expect((taken as Written).alternatives).toHaveLength(3);
    expect(duplicate).toMatchObject({ replayed: true });
    expect(bookingOf(duplicate as Written)).toEqual(bookingOf(ok as Written));

    // One transaction wrote the batch: the good booking, its event and the
    // outcomes of every key in it; the replayed key kept its first outcome.
    const rows = await writers(x);
    const okId = bookingOf(ok as Written).id as string;
    const openerId = bookingOf(opener as Written).id as string;
    const batch = rows.bookings.get(okId);
    expect(batch).toBeDefined();
    expect(rows.bookings.get(openerId)).not.toBe(batch);
    for (const key of ["good", "second", "soon", "taken"]) expect(rows.keys.get(key)).toBe(batch);
    expect(rows.keys.get("first")).toBe(rows.bookings.get(bookingOf(first).id as string));
    // Exactly the events of what was written: four holds, nothing for a refusal or a replay.
    const noonId = bookingOf(noon).id as string;
    const firstId = bookingOf(first).id as string;
    expect([...rows.events.keys()].sort()).toEqual(
      [firstId, noonId, openerId, okId].map((id) => `${id} booking.held`).sort(),
    );
    expect(rows.events.get(`${okId} booking.held`)).toBe(batch);
    expect(rows.bookings.size).toBe(4);

    // The refusals were kept under their keys, in the batch, and replay.
    const again = await book(w, x.tenantId, x.hold(PAST_MONDAY + 10 * HOUR), x.claim("soon"));
    expect(again).toMatchObject({ replayed: true, error: { reason: "TOO_SOON" } });
    const stored = await pool.query<{ key: string; outcome: Written }>(
      "SELECT key, outcome FROM idempotency_keys WHERE tenant_id = $1 AND key IN ('good', 'second')",
      [x.tenantId],
    );
    const byKey = new Map(stored.rows.map((r) => [r.key, r.outcome]));
    expect(byKey.get("good")).toEqual({ response: { booking: bookingOf(ok as Written) } });
    expect(byKey.get("second")?.error?.reason).toBe("SLOT_UNAVAILABLE");
  });

  it("50 callers for one slot: one winner, in three transactions (one alone, then 32, then 17)", async () => {
    const x = await world();
    const slot = x.hold(MONDAY + 9 * HOUR);
    const answers = await batched(
      x,
      Array.from({ length: 50 }, (_, i) => () => book(w, x.tenantId, slot, x.claim(`race-${i}`))),
    );
    const winners = answers.filter((a) => (a as Written).response);
    expect(winners).toHaveLength(1);
    const won = bookingOf(winners[0] as Written);
    for (const a of answers) {
      if (a === winners[0]) continue;
      expect(errorOf(a)).toMatchObject({
        reason: "SLOT_UNAVAILABLE",
        conflicts: [{ startTime: won.startTime, endTime: won.endTime, status: "held" }],
      });
    }
    const rows = await writers(x);
    expect(rows.bookings.size).toBe(1);
    expect([...rows.events.keys()]).toEqual([`${won.id} booking.held`]);
    expect(rows.keys.size).toBe(50);
    const sizes = new Map<string, number>();
    for (const xid of rows.keys.values()) sizes.set(xid, (sizes.get(xid) ?? 0) + 1);
    expect([...sizes.values()].sort((a, b) => a - b)).toEqual([1, 17, 32]);
  });

  it("many creates on distinct slots: every booking, key and event is each caller's own", async () => {
    const x = await world();
    const n = 70;
    const starts = Array.from({ length: n }, (_, i) => MONDAY + i * 30 * MINUTE);
    const answers = await batched(
      x,
      starts.map((start, i) => () => {
        const own = {
          attendee: { name: `caller ${i}` },
          metadata: { caller: i, note: `"${i}"\\` },
        };
        return book(w, x.tenantId, { ...x.hold(start), ...own }, x.claim(`k-${i}`));
      }),
    );
    const rows = await writers(x);
    const { rows: stored } = await pool.query<{
      booking: JsonObject;
      outcome: Written;
      payload: { booking: JsonObject };
      type: string;
    }>(
      `SELECT booking_json(b) AS booking, k.outcome, o.payload, o.type
       FROM bookings b
       JOIN outbox o ON o.tenant_id = b.tenant_id AND o.booking_id = b.id
       JOIN idempotency_keys k ON k.tenant_id = b.tenant_id AND k.outcome->'response'->'booking'->>'id' = b.id
       WHERE b.tenant_id = $1`,
      [x.tenantId],
    );
    expect(stored).toHaveLength(n);
    const byId = new Map(stored.map((r) => [r.booking.id as string, r]));
    answers.forEach((a, i) => {
      const booking = bookingOf(a);
      expect(booking).toMatchObject({
        startTime: iso(starts[i] as number),
        status: "BOOKING_STATUS_HELD",
        attendee: { name: `caller ${i}` },
        metadata: { caller: i, note: `"${i}"\\` },
      });
      const row = byId.get(booking.id as string);
      // The answer is the booking as stored, its event's booking and its key's outcome.
      expect(row?.booking).toEqual(booking);
      expect(row?.payload.booking).toEqual(booking);
      expect(row?.type).toBe("booking.held");
      expect(row?.outcome).toEqual({ response: { booking } });
      // Booking, event and key of one create were written by one transaction.
      const xid = rows.bookings.get(booking.id as string);
      expect(rows.events.get(`${booking.id} booking.held`)).toBe(xid);
      expect(rows.keys.get(`k-${i}`)).toBe(xid);
    });
    const sizes = new Map<string, number>();
    for (const xid of rows.bookings.values()) sizes.set(xid, (sizes.get(xid) ?? 0) + 1);
    expect([...sizes.values()].sort((a, b) => a - b)).toEqual([1, 5, 32, 32]);
  });

  it("keeps a tenant's quota exact: a batch counts the holds before it in the batch", async () => {
    const x = await world();
    await setQuotas(pool, x.tenantId, { active_holds: 3 });
    const answers = await batched(
      x,
      Array.from(
        { length: 6 },
        (_, i) => () => book(w, x.tenantId, x.hold(MONDAY + i * HOUR), undefined),
      ),
    );
    expect(answers.map((a) => (a as Written).response !== undefined)).toEqual([
      true,
      true,
      true,
      false,
      false,
      false,
    ]);
    for (const a of answers.slice(3)) {
      expect(errorOf(a)).toMatchObject({
        reason: "LIMIT_REACHED",
        metadata: { quota: "active_holds" },
      });
    }
    expect((await writers(x)).bookings.size).toBe(3);
  });

  it("runs each create alone when the batch fails: a duplicate key committed elsewhere first", async () => {
    const x = await world();
    // The writes as the metrics see them: how many creates each carried.
    const writes: number[] = [];
    const counted: BookingWrites = {
      ...w,
      batches: new BookingBatches(pool, undefined, (n) => writes.push(n)),
    };
    const other = await pool.connect();
    try {
      // Another instance's call with the same key, on another resource, open.
      const r2 = await insertResource(pool, x.tenantId, {
        name: "other",
        kind: "room",
        timeZone: "UTC",
        capacity: 1,
        metadata: {},
        weeklySchedule: null,
      });
      await other.query("BEGIN");
      await other.query(
        `SELECT create_booking($1, $2, ARRAY[$3], 1, ARRAY[1], 1, $4, $5, '0 ms', '0 ms', '0 ms', NULL,
                               '120 s', '{}', '{}', $6, 'shared', '\\x01'::bytea, $7)`,
        [
          x.tenantId,
          x.serviceId,
          r2.id,
          new Date(MONDAY),
          new Date(MONDAY + 30 * MINUTE),
          x.claim("shared").method,
          x.claim("shared").apiKeyId,
        ],
      );
      const answers = batched(
        x,
        [
          () => book(counted, x.tenantId, x.hold(MONDAY + 9 * HOUR), undefined),
          () => book(counted, x.tenantId, x.hold(MONDAY + 10 * HOUR), x.claim("shared")),
          () => book(counted, x.tenantId, x.hold(MONDAY + 11 * HOUR), undefined),
        ],
        counted,
      );
      // The batch books, then waits on the other's key; the other commits first.
      await untilSessionsWait("transactionid");
      await other.query("COMMIT");
      const [opener, shared, third] = await answers;
      expect(bookingOf(opener as Written).startTime).toBe(iso(MONDAY + 9 * HOUR));
      expect(errorOf(shared as Written)?.reason).toBe("IDEMPOTENCY_KEY_REUSED");
      expect(bookingOf(third as Written).startTime).toBe(iso(MONDAY + 11 * HOUR));
      const { rows } = await pool.query(
        "SELECT start_time FROM bookings WHERE tenant_id = $1 AND resource_id = $2 ORDER BY start_time",
        [x.tenantId, x.resourceId],
      );
      expect(rows.map((r) => (r.start_time as Date).getTime())).toEqual([
        MONDAY + 9 * HOUR,
        MONDAY + 11 * HOUR,
      ]);
      expect((await writers(x)).events.size).toBe(3);
      // The opener alone, the failed batch of two, then each of the two again alone.
      expect(writes).toEqual([1, 2, 1, 1]);
    } finally {
      other.release();
    }
  });
});

describe("a batch across resources (a write of the tenant in flight)", () => {
  /** One lane: while one create is in flight, creates on any resource of the tenant wait for it. */
  let one: BookingWrites;
  beforeAll(() => {
    one = bookingWritesOn(pool, 1);
  });

  it("gives each caller its own answer on its own resource, in one transaction", async () => {
    const x = await world(true, 4);
    const [a, b, c, d] = x.resourceIds as [string, string, string, string];
    // Before: a hold on b at noon, and one on c kept under a key.
    await book(one, x.tenantId, x.hold(MONDAY + 12 * HOUR, b), undefined);
    const kept = await book(one, x.tenantId, x.hold(MONDAY + 11 * HOUR, c), x.claim("kept"));
    const order = [a, b, c, d, d, b, c, a];
    const [opener, good, replay, first, second, taken, tooSoon, sameLockAsOpener] = await batched(
      x,
      [
        () => book(one, x.tenantId, x.hold(MONDAY + 9 * HOUR, a), undefined),
        () => book(one, x.tenantId, x.hold(MONDAY + 9 * HOUR, b), x.claim("good")),
        () => book(one, x.tenantId, x.hold(MONDAY + 11 * HOUR, c), x.claim("kept")),
        // Two for one slot of d: the first in the batch wins.
        () => book(one, x.tenantId, x.hold(MONDAY + 10 * HOUR, d), x.claim("d-1")),
        () => book(one, x.tenantId, x.hold(MONDAY + 10 * HOUR, d), x.claim("d-2")),
        () => book(one, x.tenantId, x.hold(MONDAY + 12 * HOUR, b), x.claim("taken")),
        () => book(one, x.tenantId, x.hold(PAST_MONDAY + 10 * HOUR, c), x.claim("soon")),
        () => book(one, x.tenantId, x.hold(MONDAY + 13 * HOUR, a), undefined),
      ],
      one,
      (i) => order[i] as string,
    );

    expect(bookingOf(opener as Written)).toMatchObject({
      resourceId: a,
      startTime: iso(MONDAY + 9 * HOUR),
    });
    expect(bookingOf(good as Written)).toMatchObject({
      resourceId: b,
      startTime: iso(MONDAY + 9 * HOUR),
      status: "BOOKING_STATUS_HELD",
    });
    expect(replay).toMatchObject({ replayed: true });
    expect(bookingOf(replay as Written)).toEqual(bookingOf(kept));
    expect(bookingOf(first as Written)).toMatchObject({
      resourceId: d,
      startTime: iso(MONDAY + 10 * HOUR),
    });
    expect(errorOf(second as Written)).toMatchObject({
      reason: "SLOT_UNAVAILABLE",
      conflicts: [{ startTime: iso(MONDAY + 10 * HOUR), status: "held" }],
    });
    expect(errorOf(taken as Written)).toMatchObject({
      reason: "SLOT_UNAVAILABLE",
      conflicts: [{ startTime: iso(MONDAY + 12 * HOUR), status: "held" }],
    });
    expect(errorOf(tooSoon as Written)?.reason).toBe("TOO_SOON");
    expect(bookingOf(sameLockAsOpener as Written)).toMatchObject({
      resourceId: a,
      startTime: iso(MONDAY + 13 * HOUR),
    });

    // The opener alone; the seven after it in one transaction, with their keys and events.
    const rows = await writers(x);
    const batch = rows.bookings.get(bookingOf(good as Written).id as string);
    expect(rows.bookings.get(bookingOf(opener as Written).id as string)).not.toBe(batch);
    for (const o of [first, sameLockAsOpener]) {
      const id = bookingOf(o as Written).id as string;
      expect(rows.bookings.get(id)).toBe(batch);
      expect(rows.events.get(`${id} booking.held`)).toBe(batch);
    }
    for (const key of ["good", "d-1", "d-2", "taken", "soon"])
      expect(rows.keys.get(key)).toBe(batch);
    expect(rows.keys.get("kept")).not.toBe(batch);
    expect(rows.bookings.size).toBe(6);
    expect(rows.events.size).toBe(6);
    for (const r of x.resourceIds) expect(one.batches.pending(x.tenantId, r)).toBe(0);
  });

  it("keeps a tenant's quota exact across the batch's resources", async () => {
    const x = await world(false, 6);
    await setQuotas(pool, x.tenantId, { active_holds: 3 });
    const ids = x.resourceIds;
    const answers = await batched(
      x,
      ids.map((r) => () => book(one, x.tenantId, x.hold(MONDAY + HOUR, r), undefined)),
      one,
      (i) => ids[i] as string,
    );
    expect(answers.filter((a) => (a as Written).response)).toHaveLength(3);
    for (const a of answers.slice(3)) expect(errorOf(a)?.reason).toBe("LIMIT_REACHED");
    expect((await writers(x)).bookings.size).toBe(3);
  });

  it("takes the batch's locks in key order, so batches naming resources in opposite orders do not deadlock", async () => {
    const x = await world(false, 2);
    // low and high by lock key, whatever their ids.
    const { rows: keyed } = await pool.query<{ id: string }>(
      "SELECT id FROM unnest($2::text[]) AS id ORDER BY resource_lock_key($1, id)",
      [x.tenantId, x.resourceIds],
    );
    const [low, high] = keyed.map((r) => r.id) as [string, string];
    const batchOf = (resources: string[], hour: number) =>
      resources.map((r) => ({ booking: newBooking(x, r, MONDAY + hour * HOUR), claim: undefined }));
    const one = await pool.connect();
    const two = await pool.connect();
    let lock: { letGo: () => Promise<void> } | undefined;
    try {
      // The low resource is held, so both batches wait for it. Had the
      // second taken its first-named (high) lock first, it would hold high
      // while waiting for low, and the first, once it has low, would wait
      // for high: a deadlock that Postgres ends by failing one of them.
      lock = await holdLock(x.tenantId, low);
      const first = createBookings(one, x.tenantId, batchOf([low, high], 9));
      await untilSessionsWait("advisory", 1);
      const second = createBookings(two, x.tenantId, batchOf([high, low], 10));
      await untilSessionsWait("advisory", 2);
      await lock.letGo();
      const outcomes = (await Promise.all([first, second])).flat();
      expect(
        outcomes.map((o) => (o.response as { booking: JsonObject }).booking.resourceId),
      ).toEqual([low, high, high, low]);
    } finally {
      await lock?.letGo();
      for (const c of [one, two]) c.release();
    }
  });
});

describe("lanes", () => {
  it("opens another lane only when every busy lane's next write is full", async () => {
    const x = await world(false, 4);
    const [r0, r1, r2, r3] = x.resourceIds as [string, string, string, string];
    // Two lanes, and a full write is two creates.
    const two = bookingWritesOn(pool, 2, 2);
    const lock = await holdLock(x.tenantId, r0);
    try {
      const create = (r: string) => book(two, x.tenantId, x.hold(MONDAY + 9 * HOUR, r), undefined);
      // r0's create is in flight, held up by the lock; r1 and r2 queue
      // behind it though a lane is idle and their resources are free.
      const first = create(r0);
      await until(() => two.batches.pending(x.tenantId, r0) === 1);
      await untilSessionsWait("advisory");
      const queued = [create(r1), create(r2)];
      await until(() => two.batches.pending(x.tenantId, r2) === 1);
      expect(two.batches.pending(x.tenantId, r1)).toBe(1);
      // That lane's next write is now full: r3 opens the second lane and
      // is written at once, while r0's lock is still held.
      const alone = await create(r3);
      expect(bookingOf(alone).resourceId).toBe(r3);
      expect(two.batches.pending(x.tenantId, r1)).toBe(1);
      await lock.letGo();
      const [a0, a1, a2] = await Promise.all([first, ...queued]);
      const rows = await writers(x);
      const xid = (o: Written) => rows.bookings.get(bookingOf(o).id as string);
      expect(xid(a1 as Written)).toBe(xid(a2 as Written));
      expect(new Set([xid(a0 as Written), xid(a1 as Written), xid(alone)]).size).toBe(3);
    } finally {
      await lock.letGo();
    }
  });
});

describe("callers that have gone", () => {
  it("does not write a create whose caller went away while it waited, and writes the rest", async () => {
    const x = await world(false, 3);
    const [r0, r1, r2] = x.resourceIds as [string, string, string];
    const one = bookingWritesOn(pool, 1);
    const lock = await holdLock(x.tenantId, r0);
    try {
      const gone = new AbortController();
      const reason = new Error("the caller's deadline passed");
      const first = book(one, x.tenantId, x.hold(MONDAY + 9 * HOUR, r0), undefined);
      await until(() => one.batches.pending(x.tenantId, r0) === 1);
      await untilSessionsWait("advisory");
      // Both wait in the lane behind r0's write; one caller leaves, with a
      // key, which must not be used up either.
      const left = book(
        one,
        x.tenantId,
        x.hold(MONDAY + 9 * HOUR, r1),
        x.claim("left"),
        gone.signal,
      );
      await until(() => one.batches.pending(x.tenantId, r1) === 1);
      const stays = book(
        one,
        x.tenantId,
        x.hold(MONDAY + 9 * HOUR, r2),
        undefined,
        new AbortController().signal,
      );
      await until(() => one.batches.pending(x.tenantId, r2) === 1);
      gone.abort(reason);
      await lock.letGo();
      await expect(left).rejects.toBe(reason);
      expect(bookingOf(await first).resourceId).toBe(r0);
      expect(bookingOf(await stays).resourceId).toBe(r2);
      const { rows } = await pool.query<{ resource_id: string }>(
        "SELECT resource_id FROM bookings WHERE tenant_id = $1 ORDER BY resource_id",
        [x.tenantId],
      );
      expect(rows.map((r) => r.resource_id)).toEqual([r0, r2].sort());
      const keys = await pool.query("SELECT 1 FROM idempotency_keys WHERE tenant_id = $1", [
        x.tenantId,
      ]);
      expect(keys.rowCount).toBe(0);
      expect(one.batches.pending(x.tenantId, r1)).toBe(0);
      // The same key, its caller still there, books the time.
      const again = await book(one, x.tenantId, x.hold(MONDAY + 9 * HOUR, r1), x.claim("left"));
      expect(bookingOf(again).resourceId).toBe(r1);
    } finally {
      await lock.letGo();
    }
  });

  it("does not send a lone write, a change or a move whose caller has already gone", async () => {
    const x = await world(false, 1);
    const held = await book(w, x.tenantId, x.hold(MONDAY + 9 * HOUR), undefined);
    const id = bookingOf(held).id as string;
    const gone = AbortSignal.abort(new Error("cancelled"));
    await expect(book(w, x.tenantId, x.hold(MONDAY + 11 * HOUR), undefined, gone)).rejects.toThrow(
      "cancelled",
    );
    await expect(
      change(w, x.tenantId, { bookingId: id, action: "confirm" }, undefined, gone),
    ).rejects.toThrow("cancelled");
    await expect(
      reschedule(
        w,
        x.tenantId,
        {
          bookingId: id,
          slotId: "",
          serviceId: "",
          resourceId: "",
          startMs: MONDAY + 12 * HOUR,
          endMs: MONDAY + 12 * HOUR + 30 * MINUTE,
        },
        undefined,
        gone,
      ),
    ).rejects.toThrow("cancelled");
    const { rows } = await pool.query<{ status: string; start_time: Date }>(
      "SELECT status, start_time FROM bookings WHERE tenant_id = $1",
      [x.tenantId],
    );
    expect(rows).toEqual([{ status: "held", start_time: new Date(MONDAY + 9 * HOUR) }]);
  });
});

describe("traces", () => {
  const provider = new NodeTracerProvider();
  beforeAll(() => {
    provider.register({ propagator: new W3CTraceContextPropagator() });
  });
  afterAll(async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  });

  it("records each caller's traceparent with the events of its create, batched or alone", async () => {
    const x = await world(false, 3);
    const tracer = trace.getTracer("batches test");
    const traceparents: string[] = [];
    /** A create made inside a span of its own, as a traced call's is. */
    const traced = (r: string) => () =>
      tracer.startActiveSpan(`caller on ${r}`, (span) => {
        const { traceId, spanId } = span.spanContext();
        traceparents.push(`00-${traceId}-${spanId}-01`);
        return book(w, x.tenantId, x.hold(MONDAY + 9 * HOUR, r), undefined).finally(() =>
          span.end(),
        );
      });
    const ids = x.resourceIds;
    // The first alone, the other two batched behind it (across resources).
    const answers = await batched(x, ids.map(traced), w, (i) => ids[i] as string);
    const rows = await writers(x);
    const xid = (o: Written | Rejection) => rows.bookings.get(bookingOf(o).id as string);
    expect(xid(answers[1] as Written)).toBe(xid(answers[2] as Written));
    expect(xid(answers[0] as Written)).not.toBe(xid(answers[1] as Written));
    const { rows: events } = await pool.query<{ booking_id: string; traceparent: string | null }>(
      "SELECT booking_id, traceparent FROM outbox WHERE tenant_id = $1",
      [x.tenantId],
    );
    const recorded = new Map(events.map((e) => [e.booking_id, e.traceparent]));
    expect(answers.map((a) => recorded.get(bookingOf(a).id as string))).toEqual(traceparents);
    expect(new Set(traceparents).size).toBe(3);
  });
});

/** The NewBooking of a 30-minute hold on `resourceId` of a world, at its current revisions. */
function newBooking(x: World, resourceId: string, startMs: number): NewBooking {
  return {
    tenantId: x.tenantId,
    service: {
      id: x.serviceId,
      revision: 1,
      policyVersion: 1,
      policy: thirtyMinutePolicy,
    } as ServiceSnapshot,
    resources: [{ id: resourceId, revision: 1 } as ResourceSnapshot],
    startMs,
    endMs: startMs + 30 * MINUTE,
    holdTtlMs: 120_000,
    attendee: {},
    metadata: {},
  };
}

/**
 * Until `n` sessions of this database wait for a lock of the kind: another
 * transaction's end ("transactionid") or an advisory lock ("advisory").
 */
async function untilSessionsWait(kind: "transactionid" | "advisory", n = 1): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    const { rows } = await pool.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_stat_activity
       WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = $1`,
      [kind],
    );
    if ((rows[0]?.n ?? 0) >= n) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`fewer than ${n} sessions waited on ${kind}`);
}

import type pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { loadOccupancy } from "../../src/db/bookings.js";
import { rejectionFromDatabase } from "../../src/db/errors.js";
import { seededDatabase, waitUntilBlocked } from "../support/database.js";

let pool: pg.Pool;
let poolUrl: string;
beforeAll(async () => {
  ({ pool, url: poolUrl } = await seededDatabase());
});

const insert = (
  start: string,
  end: string,
  opts: { status?: string; exclusive?: boolean; blockEnd?: string } = {},
) =>
  pool.query(
    `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                           status, expire_time, policy_version, exclusive, create_time, update_time)
     VALUES ('ten_a', 'svc_1', 'rsc_1', $1, $2, $1, $3, $4, CASE WHEN $4 = 'held' THEN now() + interval '1 hour' END,
             1, $5, now(), now())`,
    [start, end, opts.blockEnd ?? end, opts.status ?? "confirmed", opts.exclusive ?? true],
  );

describe("the exclusion constraint behind the lock", () => {
  it("refuses overlapping live blocks of a one-at-a-time resource, even bypassing the lock", async () => {
    await insert("2030-01-01T10:00Z", "2030-01-01T10:30Z");
    // Touching is fine: ranges are half-open.
    await insert("2030-01-01T10:30Z", "2030-01-01T11:00Z", { status: "held" });
    const err = await insert("2030-01-01T10:15Z", "2030-01-01T10:45Z").catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("23P01");
    expect(rejectionFromDatabase(err)?.reason).toBe("SLOT_UNAVAILABLE");
  });

  it("counts buffers: a block reaching into another booking is refused", async () => {
    const err = await insert("2030-01-01T09:30Z", "2030-01-01T09:45Z", {
      blockEnd: "2030-01-01T10:05Z",
    }).catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("23P01");
  });

  it("ignores finished bookings and resources that take several at once", async () => {
    await insert("2030-01-01T10:00Z", "2030-01-01T10:30Z", { status: "cancelled" });
    await insert("2030-01-01T10:00Z", "2030-01-01T10:30Z", { status: "expired" });
    await insert("2030-01-01T10:00Z", "2030-01-01T10:30Z", { exclusive: false });
  });

  it("refuses blocks longer than the 72 hours the overlap queries rely on", async () => {
    const err = await insert("2030-02-01T00:00Z", "2030-02-04T00:01Z").catch((e: unknown) => e);
    expect((err as { code?: string }).code).toBe("23514");
  });
});

describe("loadOccupancy", () => {
  it("reads the live blocks exactly to the millisecond, per resource asked, each once", async () => {
    await pool.query(
      `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                             status, expire_time, policy_version, exclusive, create_time, update_time)
       VALUES ('ten_a', 'svc_1', 'rsc_1', '2031-03-01T10:00:00.123Z', '2031-03-01T10:30Z', '2031-03-01T09:59:00.001Z',
               '2031-03-01T10:45:00.999Z', 'confirmed', NULL, 1, true, now(), now()),
              ('ten_a', 'svc_1', 'rsc_1', '2031-02-28T23:00Z', '2031-03-01T01:00Z', '2031-02-28T22:00Z',
               '2031-03-01T01:00:00.5Z', 'held', now() + interval '1 hour', 1, true, now(), now()),
              ('ten_a', 'svc_1', 'rsc_1', '2031-03-01T12:00Z', '2031-03-01T12:30Z', '2031-03-01T12:00Z',
               '2031-03-01T12:30Z', 'held', now() - interval '1 second', 1, true, now(), now())`,
    );
    const from = Date.parse("2031-03-01T00:00:00.250Z");
    const occupancy = await loadOccupancy(
      pool,
      "ten_a",
      "svc_1",
      ["rsc_none", "rsc_1", "rsc_1"],
      from,
      Date.parse("2031-03-02T00:00Z"),
    );
    expect([...occupancy.busy].sort((a, b) => a.start - b.start)).toEqual([
      {
        resourceId: "rsc_1",
        start: Date.parse("2031-02-28T22:00Z"),
        end: Date.parse("2031-03-01T01:00:00.500Z"),
        bookingStart: Date.parse("2031-02-28T23:00Z"),
      },
      {
        resourceId: "rsc_1",
        start: Date.parse("2031-03-01T09:59:00.001Z"),
        end: Date.parse("2031-03-01T10:45:00.999Z"),
        bookingStart: Date.parse("2031-03-01T10:00:00.123Z"),
      },
    ]);
    expect(occupancy.resourceRevisions.has("rsc_1")).toBe(true);
  });
});

describe("database errors", () => {
  it("map connection failures and overload to UNAVAILABLE, and leave the rest internal", () => {
    expect(
      rejectionFromDatabase(Object.assign(new Error("x"), { code: "ECONNREFUSED" }))?.reason,
    ).toBe("UNAVAILABLE");
    expect(rejectionFromDatabase(Object.assign(new Error("x"), { code: "40P01" }))?.reason).toBe(
      "UNAVAILABLE",
    );
    expect(rejectionFromDatabase(Object.assign(new Error("x"), { code: "57P01" }))?.reason).toBe(
      "UNAVAILABLE",
    );
    expect(rejectionFromDatabase(Object.assign(new Error("x"), { code: "42P01" }))).toBeUndefined();
    expect(rejectionFromDatabase("not an error")).toBeUndefined();
  });
});

describe("create_booking and the resource lock", () => {
  const hold = (q: pg.Pool | pg.PoolClient, start: string, end: string, minNotice = "0 ms") =>
    q
      .query(
        `SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_1'], 1, ARRAY[1], 1, $1, $2, '0 ms', '0 ms', $3, NULL,
                               '120 s', '{}', '{}', NULL, NULL, NULL) AS outcome`,
        [start, end, minNotice],
      )
      .then((r) => r.rows[0].outcome as { response?: unknown; error?: { reason: string } });

  it("refuses a time committed bookings fill without waiting for the lock, and waits to book a free one", async () => {
    await hold(pool, "2031-05-01T10:00Z", "2031-05-01T11:00Z");
    const holder = await pool.connect();
    const other = await pool.connect();
    try {
      await holder.query("BEGIN");
      await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key('ten_a', 'rsc_1'))");
      await other.query("SET statement_timeout = '3s'");
      // Taken: answered while the lock is held elsewhere.
      const taken = await hold(other, "2031-05-01T10:30Z", "2031-05-01T11:30Z");
      expect(taken.error?.reason).toBe("SLOT_UNAVAILABLE");
      // Free: the write queues for the lock, so it cannot finish while the lock is held.
      const free = await hold(other, "2031-05-01T12:00Z", "2031-05-01T13:00Z").catch(
        (e: { code?: string }) => e.code,
      );
      expect(free).toBe("57014");
    } finally {
      await holder.query("ROLLBACK");
      await other.query("RESET statement_timeout");
      holder.release();
      other.release();
    }
    expect((await hold(pool, "2031-05-01T12:00Z", "2031-05-01T13:00Z")).response).toBeDefined();
  });

  it("counts a hold confirmed while a write waited to mark it lapsed: a resource of two never takes a third", async () => {
    await pool.query(
      "INSERT INTO resources (tenant_id, id, name, kind, time_zone, capacity) VALUES ('ten_a', 'rsc_two', 'R2', 'room', 'UTC', 2)",
    );
    const at = (q: pg.Pool | pg.PoolClient) =>
      q
        .query(
          `SELECT create_booking('ten_a', 'svc_1', ARRAY['rsc_two'], 1, ARRAY[1], 1, '2031-06-02T10:00Z', '2031-06-02T10:30Z',
                                 '0 ms', '0 ms', '0 ms', NULL, $1::interval, '{}', '{}', NULL, NULL, NULL) AS outcome`,
          ["2 s"],
        )
        .then(
          (r) =>
            r.rows[0].outcome as {
              response?: { booking: { id: string } };
              error?: { reason: string };
            },
        );
    const confirmed = await pool.query(
      `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                             status, policy_version, exclusive, create_time, update_time)
       VALUES ('ten_a', 'svc_1', 'rsc_two', '2031-06-02T10:00Z', '2031-06-02T10:30Z', '2031-06-02T10:00Z',
               '2031-06-02T10:30Z', 'confirmed', 1, false, now(), now())`,
    );
    expect(confirmed.rowCount).toBe(1);
    const hold = (await at(pool)).response?.booking.id as string;
    expect(hold).toBeDefined();
    const confirming = await pool.connect();
    const other = await pool.connect();
    try {
      // The confirm takes the hold's row before it lapses, and commits after.
      await confirming.query("BEGIN");
      const outcome = await confirming.query(
        "SELECT change_booking('ten_a', $1, 'confirm', NULL, NULL, NULL, NULL, NULL) AS o",
        [hold],
      );
      expect(outcome.rows[0].o.response.booking.status).toBe("BOOKING_STATUS_CONFIRMED");
      await pool.query(
        "SELECT pg_sleep(extract(epoch FROM expire_time - clock_timestamp()) + 0.05) FROM bookings WHERE id = $1",
        [hold],
      );
      // Another hold for the time: it reads the first as lapsed and waits to mark it.
      const third = at(other);
      await waitUntilBlocked(other, poolUrl, third);
      await confirming.query("COMMIT");
      expect((await third).error?.reason).toBe("SLOT_UNAVAILABLE");
    } finally {
      await confirming.query("ROLLBACK").catch(() => {});
      confirming.release();
      other.release();
    }
    const live = await pool.query<{ status: string }>(
      `SELECT status FROM bookings WHERE resource_id = 'rsc_two' AND status IN ('held', 'confirmed') ORDER BY status`,
    );
    expect(live.rows.map((r) => r.status)).toEqual(["confirmed", "confirmed"]);
  });

  it("names the clock rule first when a time is both taken and too soon", async () => {
    const past = new Date(Date.now() - 3_600_000).toISOString();
    const pastEnd = new Date(Date.now() - 1_800_000).toISOString();
    await pool.query(
      `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                             status, policy_version, exclusive, create_time, update_time)
       VALUES ('ten_a', 'svc_1', 'rsc_1', $1, $2, $1, $2, 'confirmed', 1, true, now(), now())`,
      [past, pastEnd],
    );
    expect((await hold(pool, past, pastEnd)).error?.reason).toBe("TOO_SOON");
  });
});

describe("idempotency keys in the booking functions", () => {
  const keyed = (q: pg.PoolClient, resource: string, start: string, hash: string) =>
    q
      .query(
        `SELECT create_booking('ten_a', 'svc_1', ARRAY[$1], 1, ARRAY[1], 1, $2::timestamptz,
                               $2::timestamptz + interval '1 hour', '0 ms', '0 ms', '0 ms', NULL, '120 s',
                               '{}', '{}', 'CreateHold', 'key-1', $3::bytea, 'key_a') AS outcome`,
        [resource, start, hash],
      )
      .then((r) => r.rows[0].outcome as { response?: unknown; error?: { reason: string } });

  it("let the first of two requests racing with one key win; the other rolls back and says so", async () => {
    await pool.query(
      "INSERT INTO resources (tenant_id, id, name, kind, time_zone) VALUES ('ten_a', 'rsc_2', 'R2', 'room', 'UTC')",
    );
    const first = await pool.connect();
    const second = await pool.connect();
    try {
      await first.query("BEGIN");
      expect((await keyed(first, "rsc_1", "2031-06-01T10:00Z", "\\x01")).response).toBeDefined();
      // Another request, same key, another resource: it books, then meets the
      // first's key, waits for its commit, and must undo its own booking.
      const racing = keyed(second, "rsc_2", "2031-06-01T10:00Z", "\\x02").catch(
        (e: { code?: string }) => e.code,
      );
      await waitUntilBlocked(second, poolUrl);
      await first.query("COMMIT");
      expect(await racing).toBe("HF003");
      const { rows } = await second.query(
        "SELECT count(*)::int AS n FROM bookings WHERE resource_id = 'rsc_2'",
      );
      expect(rows[0].n).toBe(0);
      // Run again, as the server does, it answers from the key.
      expect((await keyed(second, "rsc_2", "2031-06-01T10:00Z", "\\x02")).error?.reason).toBe(
        "IDEMPOTENCY_KEY_REUSED",
      );
      const replay = await keyed(second, "rsc_1", "2031-06-01T10:00Z", "\\x01");
      expect(replay).toMatchObject({
        replayed: true,
        response: { booking: { resourceId: "rsc_1" } },
      });
    } finally {
      first.release();
      second.release();
    }
  });
});

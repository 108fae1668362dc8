import pg from "pg";
import type { DbTimeouts } from "../config.js";

/** Anything a single statement can run on: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.PoolClient, "query">;

export type Pool = pg.Pool;

/**
 * Where a unit of work runs: on the pool, where `transaction` opens one, or
 * inside a transaction that is already open (an idempotent mutation's),
 * where `transaction` joins it. Repositories that write several statements
 * take a Db, so the same code is atomic either way.
 */
export type Db = Queryable & {
  transaction<T>(work: (tx: Db) => Promise<T>): Promise<T>;
};

/**
 * A pool whose every connection carries the time limits, set in the
 * startup packet so no connection ever runs without them: a statement, a
 * lock wait (the booking function's pg_advisory_xact_lock included) and a
 * transaction left idle are each ended by Postgres itself, so one stuck
 * session cannot park every writer of a resource for ever. Without
 * `timeouts` (migrations, which may legitimately run long) none is set.
 */
export function createPool(connectionString: string, max: number, timeouts?: DbTimeouts): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: "holdfast",
    // Fail fast instead of queueing forever when the database is gone.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
    ...(timeouts && {
      statement_timeout: timeouts.statementMs,
      lock_timeout: timeouts.lockMs,
      idle_in_transaction_session_timeout: timeouts.idleInTransactionMs,
    }),
  });
  // An idle client losing its connection (database restart) must not crash
  // the process; the pool replaces it on the next checkout.
  pool.on("error", () => {});
  // Nor may a checked-out one: pg-pool listens for errors only on idle
  // clients, and Postgres ends a session between two statements (the idle
  // transaction timeout, a restart) with an error no query is waiting for.
  // The client is then unusable: its next query fails, and it is discarded
  // when released.
  pool.on("connect", (client) => client.on("error", () => {}));
  const busy = new Set<pg.PoolClient>();
  pool.on("acquire", (client) => busy.add(client));
  pool.on("release", (_err, client) => busy.delete(client));
  pool.on("remove", (client) => busy.delete(client as pg.PoolClient));
  busyClients.set(pool, busy);
  return pool;
}

/** The clients each pool has checked out (for a plain query or a transaction). */
const busyClients = new WeakMap<pg.Pool, Set<pg.PoolClient>>();

/**
 * Ends, on the server, the Postgres sessions `pool` has checked out: a
 * stop's grace period is over and the calls they serve are cut. Their
 * transactions roll back there and then (a statement waiting for a lock
 * would otherwise go on, and might even commit, after the call was given
 * up), their clients fail and leave the pool, and the pool can close.
 * `via` runs the statement: a connection of another pool.
 */
export async function endBusySessions(pool: pg.Pool, via: Queryable): Promise<number> {
  const pids = [...(busyClients.get(pool) ?? [])]
    .map((c) => (c as unknown as { processID: number | null }).processID)
    .filter((pid): pid is number => typeof pid === "number");
  if (pids.length === 0) return 0;
  const { rows } = await via.query<{ n: number }>(
    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))::int AS n FROM unnest($1::int[]) AS pid",
    [pids],
  );
  return rows[0]?.n ?? 0;
}

export function poolDb(pool: pg.Pool): Db {
  return {
    query: pool.query.bind(pool) as Queryable["query"],
    transaction: (work) => inTransaction(pool, (client) => work(clientDb(client))),
  };
}

/** A Db bound to a client whose transaction is already open. */
export function clientDb(client: pg.PoolClient): Db {
  const db: Db = {
    query: client.query.bind(client) as Queryable["query"],
    transaction: (work) => work(db),
  };
  return db;
}

/** Marks a point in the open transaction that `rollbackTo` can undo back to. */
export async function savepoint(tx: Queryable, name: string): Promise<void> {
  await tx.query(`SAVEPOINT ${name}`);
}

/** Undoes the open transaction's work since the savepoint, keeping the transaction usable. */
export async function rollbackTo(tx: Queryable, name: string): Promise<void> {
  await tx.query(`ROLLBACK TO SAVEPOINT ${name}`);
}

/**
 * Runs `work` in one transaction on one connection: COMMIT when it resolves,
 * ROLLBACK when it throws. The connection is discarded rather than reused if
 * even ROLLBACK fails, so a broken session never serves another request.
 */
export async function inTransaction<T>(
  pool: pg.Pool,
  work: (tx: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (err) {
    await client.query("ROLLBACK").catch((e: Error) => {
      broken = e;
    });
    throw err;
  } finally {
    client.release(broken);
  }
}

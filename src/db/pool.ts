import pg from "pg";

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

export function createPool(connectionString: string, max: number): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    application_name: "holdfast",
    // Fail fast instead of queueing forever when the database is gone.
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  // An idle client losing its connection (database restart) must not crash
  // the process; the pool replaces it on the next checkout.
  pool.on("error", () => {});
  return pool;
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

import pg from "pg";

/** Anything a repository can run SQL on: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool | pg.PoolClient, "query">;

export type Pool = pg.Pool;
export type Transaction = pg.PoolClient;

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

import { Rejection } from "../domain/rejection.js";
import { Turns } from "../turns.js";

/**
 * How many of one tenant's writes run at once in this instance, besides its
 * creates in their write lanes (BookingBatches): at most `lanes`; the rest
 * wait here, in order of arrival, without a connection of the pool.
 *
 * A write waiting for a lock (a resource's, a booking's row, a key's)
 * holds a pooled connection while it waits, for up to the lock timeout.
 * Unbounded, one tenant's queue on one busy or stuck resource would take
 * every connection, and every other tenant's calls (their rate limit check
 * included) would wait for one and fail: so a tenant's writes queue here
 * instead, for as long as they would have waited for a lock (`waitMs`),
 * and are then answered UNAVAILABLE, having done nothing.
 */
export class TenantWrites {
  /** Tenants with a write running or waiting: their turns. */
  readonly #tenants = new Map<string, Turns>();

  constructor(
    private readonly lanes: number,
    private readonly waitMs: number,
  ) {}

  /** Runs `write` once the tenant has a lane free; rejects if `signal` ends the call first. */
  async run<T>(
    tenantId: string,
    signal: AbortSignal | undefined,
    write: () => Promise<T>,
  ): Promise<T> {
    let turns = this.#tenants.get(tenantId);
    if (!turns) {
      turns = new Turns(this.lanes);
      this.#tenants.set(tenantId, turns);
    }
    try {
      await turns.acquire({
        signal,
        waitMs: this.waitMs,
        late: () =>
          new Rejection(
            "UNAVAILABLE",
            `${this.lanes} other writes of this tenant kept waiting (a lock held for long); retry shortly`,
          ),
      });
    } catch (err) {
      this.#forgetIfIdle(tenantId, turns);
      throw err;
    }
    try {
      return await write();
    } finally {
      turns.release();
      this.#forgetIfIdle(tenantId, turns);
    }
  }

  #forgetIfIdle(tenantId: string, turns: Turns): void {
    if (turns.idle && this.#tenants.get(tenantId) === turns) this.#tenants.delete(tenantId);
  }
}

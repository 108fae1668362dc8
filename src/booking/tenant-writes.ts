import { Rejection } from "../domain/rejection.js";

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
  /** Tenants with a write running: how many, and those waiting for a turn. */
  readonly #tenants = new Map<string, { running: number; waiting: Turn[] }>();

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
    await this.#turn(tenantId, signal);
    try {
      return await write();
    } finally {
      this.#done(tenantId);
    }
  }

  #turn(tenantId: string, signal: AbortSignal | undefined): Promise<void> {
    let tenant = this.#tenants.get(tenantId);
    if (!tenant) {
      tenant = { running: 0, waiting: [] };
      this.#tenants.set(tenantId, tenant);
    }
    if (tenant.running < this.lanes) {
      tenant.running++;
      return Promise.resolve();
    }
    if (signal?.aborted) return Promise.reject(signal.reason);
    const queue = tenant.waiting;
    return new Promise((resolve, reject) => {
      const leave = (err: unknown) => {
        const at = queue.indexOf(turn);
        if (at >= 0) queue.splice(at, 1);
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        reject(err);
      };
      const aborted = () => leave(signal?.reason);
      const timer = setTimeout(
        () =>
          leave(
            new Rejection(
              "UNAVAILABLE",
              `${this.lanes} other writes of this tenant kept waiting (a lock held for long); retry shortly`,
            ),
          ),
        this.waitMs,
      );
      const turn: Turn = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
        resolve();
      };
      queue.push(turn);
      signal?.addEventListener("abort", aborted, { once: true });
    });
  }

  #done(tenantId: string): void {
    const tenant = this.#tenants.get(tenantId);
    if (!tenant) return;
    const next = tenant.waiting.shift();
    // The lane passes straight to the next in line.
    if (next) next();
    else if (--tenant.running === 0) this.#tenants.delete(tenantId);
  }
}

type Turn = () => void;

/**
 * Turns at something that only so many may do at once (`atOnce`), taken
 * first come first served: a turn that ends is handed straight to the next
 * in line, never freed in between. At most `maxWaiting` wait; one more is
 * turned away at once. A waiter may leave: when its `signal` aborts, or
 * after `waitMs` (with the error `late` makes). The tenants' write turns
 * (src/booking/tenant-writes.ts) and the calendar feeds' renders
 * (src/rpc/calendar-feed-http.ts) take theirs here.
 */
export class Turns {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(
    readonly atOnce: number,
    readonly maxWaiting = Number.POSITIVE_INFINITY,
  ) {}

  /** No turn taken and none waited for. */
  get idle(): boolean {
    return this.#running === 0 && this.#waiting.length === 0;
  }

  /**
   * True once the caller has a turn (it then calls release); false at once
   * when the line is full. Rejects with the signal's reason, or with
   * `late()` after `waitMs`, having left the line.
   */
  acquire(
    opts: { signal?: AbortSignal; waitMs?: number; late?: () => Error } = {},
  ): Promise<boolean> {
    if (this.#running < this.atOnce) {
      this.#running++;
      return Promise.resolve(true);
    }
    if (this.#waiting.length >= this.maxWaiting) return Promise.resolve(false);
    const { signal, waitMs, late } = opts;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const line = this.#waiting;
    return new Promise((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", aborted);
      };
      const leave = (err: unknown) => {
        settle();
        const at = line.indexOf(turn);
        if (at >= 0) line.splice(at, 1);
        reject(err);
      };
      const aborted = () => leave(signal?.reason);
      const timer =
        waitMs === undefined
          ? undefined
          : setTimeout(() => leave(late?.() ?? new Error("waited too long for a turn")), waitMs);
      const turn = () => {
        settle();
        resolve(true);
      };
      line.push(turn);
      signal?.addEventListener("abort", aborted, { once: true });
    });
  }

  /** Ends a turn: the next in line gets it. */
  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }
}

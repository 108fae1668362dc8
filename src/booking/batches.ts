import { type Context, context, ROOT_CONTEXT } from "@opentelemetry/api";
import { createBooking, createBookings, type NewBooking } from "../db/bookings.js";
import type { IdempotencyClaim, Outcome } from "../db/idempotency.js";
import type { Queryable } from "../db/pool.js";

/**
 * Creates that name one resource, batched per resource in this instance.
 *
 * Each create holds the resource's advisory lock through its commit, and
 * so through the commit's fsync: concurrent creates on one resource would
 * take turns, one fsync each. Here, while one write of a resource is in
 * flight, the creates that arrive for it wait in a queue; when it ends, the
 * queue (at most MAX_BATCH of it) goes as the next write, in one
 * transaction and one commit (create_bookings, which runs create_booking
 * for each in order). A create that finds nothing in flight goes at once,
 * alone, by the same call as ever: nothing waits on a timer, and a lone
 * request costs what it always did. A batch of one is that same call too.
 *
 * If a batch's call fails (a retry signal such as a stale catalog, a
 * duplicate key committed by another instance, or any error), nothing of it
 * committed, and each of its creates runs again alone, so that each
 * raises or answers as it would have without batching.
 */
export class BookingBatches {
  /** Resources with a write in flight: how many creates it carries, and those waiting for it to end. */
  readonly #resources = new Map<string, { inFlight: number; queue: Waiting[] }>();

  constructor(
    private readonly db: Queryable,
    private readonly maxBatch = MAX_BATCH,
  ) {}

  /** Creates the booking: alone when its resource is idle or it has several candidates, else in the resource's next batch. */
  create(booking: NewBooking, claim: IdempotencyClaim | undefined): Promise<Outcome> {
    const resource = booking.resources.length === 1 ? booking.resources[0] : undefined;
    if (!resource) return createBooking(this.db, booking, claim);
    const key = `${booking.tenantId}/${resource.id}`;
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { booking, claim, resolve, reject, context: context.active() };
      const busy = this.#resources.get(key);
      if (busy) {
        busy.queue.push(waiting);
        return;
      }
      this.#resources.set(key, { inFlight: 0, queue: [] });
      this.#write(key, [waiting]);
    });
  }

  /** How many creates of the resource are in flight or waiting (for tests and diagnostics). */
  pending(tenantId: string, resourceId: string): number {
    const busy = this.#resources.get(`${tenantId}/${resourceId}`);
    return busy ? busy.inFlight + busy.queue.length : 0;
  }

  #write(key: string, batch: Waiting[]): void {
    const busy = this.#resources.get(key) as { inFlight: number; queue: Waiting[] };
    busy.inFlight = batch.length;
    const written = batch.length === 1 ? alone(this.db, batch[0] as Waiting) : this.#batch(batch);
    void written.then(() => {
      if (busy.queue.length === 0) this.#resources.delete(key);
      else this.#write(key, busy.queue.splice(0, this.maxBatch));
    });
  }

  async #batch(batch: Waiting[]): Promise<void> {
    const first = (batch[0] as Waiting).booking;
    let outcomes: Outcome[];
    try {
      // Several callers' write: in none of their traces (its events record no traceparent).
      outcomes = await context.with(ROOT_CONTEXT, () =>
        createBookings(this.db, first.tenantId, (first.resources[0] as { id: string }).id, batch),
      );
    } catch {
      // Nothing of the batch committed: each goes again alone, and answers
      // for itself (a retry signal reaches its own caller's retry loop).
      await Promise.all(batch.map((w) => alone(this.db, w)));
      return;
    }
    batch.forEach((w, i) => {
      w.resolve(outcomes[i] as Outcome);
    });
  }
}

/** The most creates one batch writes: bounds the statement and the wait of the last in it. */
export const MAX_BATCH = 32;

type Waiting = {
  booking: NewBooking;
  claim: IdempotencyClaim | undefined;
  resolve: (o: Outcome) => void;
  reject: (err: unknown) => void;
  /** The caller's trace context: a queued create runs when an earlier one ends, in that one's. */
  context: Context;
};

/** One create by itself, settling its caller; never rejects. */
function alone(db: Queryable, w: Waiting): Promise<void> {
  return context
    .with(w.context, () => createBooking(db, w.booking, w.claim))
    .then(w.resolve, w.reject);
}

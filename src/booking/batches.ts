import { type Context, context, ROOT_CONTEXT } from "@opentelemetry/api";
import { createBooking, createBookings, type NewBooking } from "../db/bookings.js";
import type { IdempotencyClaim, Outcome } from "../db/idempotency.js";
import type { Queryable } from "../db/pool.js";
import { activeTraceparent } from "../tracing.js";

/**
 * Creates that name one resource, batched per tenant in this instance:
 * group commit.
 *
 * A tenant's creates run in at most `lanes` writes at once. A create that
 * finds none of its tenant's writes in flight goes at once, alone, by the
 * same call as ever: nothing waits on a timer, and a lone request costs what
 * it always did. One that arrives while a write is in flight waits in that
 * lane's queue; when the write ends, its queue (at most MAX_BATCH of it)
 * goes as the next write, in one transaction, one call and one commit
 * (create_bookings, which takes the batch's resource locks in key order and
 * runs create_booking for each in order). Commit, round trip and
 * per-statement start-up are then paid once per batch rather than once per
 * create (docs/benchmarks.md). Another lane opens only when every busy
 * lane's next write is already full (MAX_BATCH waiting): a tenant's writes
 * run side by side when one lane cannot keep up, not before, since on a
 * shared Postgres a write of one more create costs far less than one more
 * write.
 *
 * A resource stays in one lane while it has creates in flight or waiting,
 * so its creates keep their order and take turns in batches rather than
 * queueing on its lock in Postgres: concurrent creates on one hot resource
 * share commits (and its lock's holder's fsync) instead of one fsync each.
 * A resource with nothing pending joins the busy lane with the shortest
 * queue (see busyLaneFor), or starts a lane when none is busy or that
 * queue is full.
 *
 * If a batch's call fails (a retry signal such as a stale catalog, a
 * duplicate key committed by another instance, or any error), nothing of it
 * committed, and each of its creates runs again alone, so that each raises
 * or answers as it would have without batching.
 *
 * A create whose caller has gone (its `signal` aborted: the deadline passed,
 * the caller cancelled or the server is stopping) before its write is sent
 * is not written: it rejects with the signal's reason, so that an answer of
 * DEADLINE_EXCEEDED or CANCELLED given while it waited in a queue means the
 * hold was not made. Once sent, a write may commit whatever its caller does.
 * The signal is read as the write is sent, not listened to: a dropped
 * create leaves its queue when the write before it ends.
 */
export class BookingBatches {
  /** Tenants with a create in flight: their lanes. */
  readonly #tenants = new Map<string, Lane[]>();

  constructor(
    private readonly db: Queryable,
    private readonly lanes = WRITE_LANES,
    /** Told how many creates each write carries (the metrics). */
    private readonly onWrite?: (creates: number) => void,
    private readonly maxBatch = MAX_BATCH,
  ) {}

  /**
   * Creates the booking: alone when none of the tenant's writes is in flight
   * or it has several candidates, else in a lane's next batch.
   */
  create(
    booking: NewBooking,
    claim: IdempotencyClaim | undefined,
    signal?: AbortSignal,
  ): Promise<Outcome> {
    const resource = booking.resources.length === 1 ? booking.resources[0] : undefined;
    if (!resource) {
      if (signal?.aborted) return Promise.reject(signal.reason);
      return createBooking(this.db, booking, claim);
    }
    return new Promise((resolve, reject) => {
      const waiting: Waiting = {
        booking,
        claim,
        signal,
        resolve,
        reject,
        context: context.active(),
      };
      let lanes = this.#tenants.get(booking.tenantId);
      if (!lanes) {
        lanes = [];
        this.#tenants.set(booking.tenantId, lanes);
      }
      const busy = busyLaneFor(lanes, resource.id, this.lanes, this.maxBatch);
      if (busy) {
        busy.pending.set(resource.id, (busy.pending.get(resource.id) ?? 0) + 1);
        busy.queue.push(waiting);
        return;
      }
      const lane: Lane = { queue: [], pending: new Map([[resource.id, 1]]) };
      lanes.push(lane);
      this.#write(booking.tenantId, lanes, lane, [waiting]);
    });
  }

  /** How many creates of the resource are in flight or waiting (for tests and diagnostics). */
  pending(tenantId: string, resourceId: string): number {
    for (const lane of this.#tenants.get(tenantId) ?? []) {
      const n = lane.pending.get(resourceId);
      if (n) return n;
    }
    return 0;
  }

  #write(tenantId: string, lanes: Lane[], lane: Lane, taken: Waiting[]): void {
    const batch = taken.filter(stillWanted);
    if (batch.length > 0) this.onWrite?.(batch.length);
    const written =
      batch.length === 0
        ? Promise.resolve()
        : batch.length === 1
          ? alone(this.db, batch[0] as Waiting)
          : this.#batch(tenantId, batch);
    void written.then(() => {
      for (const w of taken) {
        const resource = resourceOf(w);
        const n = (lane.pending.get(resource) ?? 1) - 1;
        if (n === 0) lane.pending.delete(resource);
        else lane.pending.set(resource, n);
      }
      if (lane.queue.length > 0) {
        this.#write(tenantId, lanes, lane, lane.queue.splice(0, this.maxBatch));
        return;
      }
      lanes.splice(lanes.indexOf(lane), 1);
      if (lanes.length === 0) this.#tenants.delete(tenantId);
    });
  }

  async #batch(tenantId: string, batch: Waiting[]): Promise<void> {
    let outcomes: Outcome[];
    try {
      // Several callers' write runs in none of their traces; each create's
      // events record its own caller's traceparent.
      const creates = batch.map((w) => ({
        ...w,
        traceparent: context.with(w.context, activeTraceparent),
      }));
      outcomes = await context.with(ROOT_CONTEXT, () => createBookings(this.db, tenantId, creates));
    } catch {
      // Nothing of the batch committed: each goes again alone, and answers
      // for itself (a retry signal reaches its own caller's retry loop).
      // Each is a write of one more.
      await Promise.all(
        batch.filter(stillWanted).map((w) => {
          this.onWrite?.(1);
          return alone(this.db, w);
        }),
      );
      return;
    }
    batch.forEach((w, i) => {
      w.resolve(outcomes[i] as Outcome);
    });
  }
}

/**
 * How many writes of one tenant's single-resource creates run at once in
 * this instance, unless HOLDFAST_WRITE_LANES says otherwise. Enough to keep
 * Postgres busy while one batch waits for its commit's fsync; more make
 * batches smaller (measured in docs/benchmarks.md).
 */
export const WRITE_LANES = 4;

/** The most creates one batch writes: bounds the statement and the wait of the last in it. */
export const MAX_BATCH = 32;

/**
 * A lane, kept only while its write is in flight: the creates waiting for
 * that write to end, and how many creates of each resource it has in
 * flight or waiting.
 */
type Lane = { queue: Waiting[]; pending: Map<string, number> };

/**
 * The busy lane a create of `resource` waits in: the one that has the
 * resource pending; else the busy lane with the shortest queue, unless that
 * queue is already a full write (`full` waiting) and fewer than `max` lanes
 * are busy; else none (the create starts a lane of its own).
 */
function busyLaneFor(lanes: Lane[], resource: string, max: number, full: number): Lane | undefined {
  let shortest: Lane | undefined;
  for (const lane of lanes) {
    if (lane.pending.has(resource)) return lane;
    if (!shortest || lane.queue.length < shortest.queue.length) shortest = lane;
  }
  return shortest && (shortest.queue.length < full || lanes.length >= max) ? shortest : undefined;
}

/** A create waiting in a lane; its booking names one resource. */
type Waiting = {
  booking: NewBooking;
  claim: IdempotencyClaim | undefined;
  /** The caller's call: aborted before the write is sent, the create is dropped (see stillWanted). */
  signal: AbortSignal | undefined;
  resolve: (o: Outcome) => void;
  reject: (err: unknown) => void;
  /** The caller's trace context: a queued create runs when an earlier one ends, in that one's. */
  context: Context;
};

const resourceOf = (w: Waiting): string => (w.booking.resources[0] as { id: string }).id;

/** Whether the create's caller is still there; if not, it is rejected with its signal's reason. */
function stillWanted(w: Waiting): boolean {
  if (!w.signal?.aborted) return true;
  w.reject(w.signal.reason);
  return false;
}

/** One create by itself, settling its caller; never rejects. */
function alone(db: Queryable, w: Waiting): Promise<void> {
  return context
    .with(w.context, () => createBooking(db, w.booking, w.claim))
    .then(w.resolve, w.reject);
}

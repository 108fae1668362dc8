import { EventEmitter } from "node:events";
import { currentPosition, type EventFilter, type OutboxEvent, readEvents } from "../db/outbox.js";
import type { Queryable } from "../db/pool.js";
import { CHANNEL, notify, type Signals } from "../db/signals.js";
import { isAfter, type Position } from "../domain/events.js";
import { Pacer } from "./pacer.js";

const BATCH = 1_000;

/**
 * The live side of the outbox in one process. Writers call `committed()`
 * after a transaction that wrote events; that wakes this process at once
 * and, through one coalesced NOTIFY, every other instance. On each wake-up
 * the feed reads the new events once, for all subscribers, and hands each
 * subscriber the ones of its tenant that match its filter. The outbox
 * stays the source of truth: a notification is only a wake-up.
 */
export class EventFeed extends EventEmitter {
  private readonly subscribers = new Set<Subscription>();
  private head: Position | undefined;
  private readonly reader: Pacer;
  private readonly notifier: Pacer;
  private readonly timer: NodeJS.Timeout;
  private stopped = false;

  /** `pollMs`: a wake-up every so often even without a notification, for anything a lost one missed. */
  constructor(
    private readonly db: Queryable,
    signals: Signals | undefined,
    pollMs: number,
  ) {
    super();
    this.setMaxListeners(0);
    this.reader = new Pacer("reading the outbox", () => this.read(), 0);
    // Other instances only need a wake-up: one NOTIFY covers every commit of
    // the last few milliseconds.
    this.notifier = new Pacer(
      "notifying other instances",
      () => notify(this.db, CHANNEL.outbox),
      10,
    );
    signals?.on(CHANNEL.outbox, () => this.wake());
    signals?.on("reconnected", () => this.wake());
    this.timer = setInterval(() => this.wake(), pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    for (const s of this.subscribers) s.end();
    await Promise.all([this.reader.stop(), this.notifier.stop()]);
  }

  /**
   * The live streams of this process, and how far the one furthest behind
   * is: the most events any has yet to send, and the occur time of the
   * oldest event one has yet to send. `head` is where this feed has read the
   * outbox to (undefined when no stream listens); what comes after it no
   * stream has seen yet. For the metrics, on scrape.
   */
  lag(): { streams: number; events: number; oldest: Date | undefined; head: Position | undefined } {
    let events = 0;
    let oldest: Date | undefined;
    for (const s of this.subscribers) {
      const l = s.lag();
      events = Math.max(events, l.events);
      if (l.oldest && (!oldest || l.oldest < oldest)) oldest = l.oldest;
    }
    return { streams: this.subscribers.size, events, oldest, head: this.head };
  }

  /** A transaction of this process committed events: wake this process and the others. */
  committed(): void {
    this.wake();
    this.notifier.poke();
  }

  /**
   * Start receiving live events of a tenant that match `filter`, at most
   * `capacity` unread at a time. Resolves once the feed has a starting
   * position, so a caller that then catches up from the table has read
   * everything before it: nothing falls between the two.
   */
  async subscribe(tenantId: string, filter: EventFilter, capacity: number): Promise<Subscription> {
    const sub = new Subscription(tenantId, filter, capacity, () => this.subscribers.delete(sub));
    this.subscribers.add(sub);
    if (this.head === undefined) {
      try {
        const now = await currentPosition(this.db);
        // Another subscriber's query may have set it meanwhile: its position
        // is older than this caller's catch-up too.
        this.head ??= now;
      } catch (err) {
        sub.close();
        throw err;
      }
    }
    this.wake();
    return sub;
  }

  private wake(): void {
    if (this.stopped) return;
    this.emit("wake");
    if (this.subscribers.size === 0) {
      // Nobody listens: forget the head, so the next subscriber starts from now.
      this.head = undefined;
      return;
    }
    this.reader.poke();
  }

  private async read(): Promise<void> {
    // Only a subscriber sets the starting position (see subscribe); the
    // reader never jumps ahead on its own.
    for (let after = this.head; after !== undefined; after = this.head) {
      const events = await readEvents(this.db, {
        tenantId: undefined,
        after,
        filter: undefined,
        limit: BATCH,
      });
      for (const e of events) {
        this.head = e.position;
        for (const s of this.subscribers) s.offer(e);
      }
      if (events.length < BATCH) return;
    }
  }
}

/**
 * A live stream's queue. It fills from the feed and drains as the stream
 * sends; if the consumer falls `capacity` events behind, it is marked
 * overflowed and takes no more, so memory stays bounded.
 */
export class Subscription {
  private readonly queue: OutboxEvent[] = [];
  /** Events read from the table that the stream is sending before its live ones. */
  private replay: readonly OutboxEvent[] = [];
  private replayNext = 0;
  private waiting: (() => void) | undefined;
  /**
   * The newest event of this tenant the feed has offered (matching or not):
   * every event after the feed's position when this subscribed, up to here,
   * has been offered, and the matching ones queued. Only the tenant's own:
   * the stream's cursor reaches here, and another tenant's position would
   * tell when that tenant wrote.
   */
  private seen: Position | undefined;
  /** `next` handed out an event the stream has not yet said it is done with. */
  private taken = false;
  /** When it fell `capacity` behind (Date.now()), if it has. */
  overflowedAt: number | undefined;
  ended = false;

  constructor(
    private readonly tenantId: string,
    private readonly filter: EventFilter,
    private readonly capacity: number,
    private readonly onClose: () => void,
  ) {}

  offer(e: OutboxEvent): void {
    if (e.tenantId !== this.tenantId) return;
    // The feed offers in (xid, seq) order; never moved back regardless.
    if (this.seen === undefined || isAfter(e.position, this.seen)) this.seen = e.position;
    if (this.overflowed || !matches(e, this.filter)) return;
    if (this.queue.length >= this.capacity) {
      this.overflowedAt = Date.now();
      this.queue.length = 0;
    } else {
      this.queue.push(e);
    }
    this.wakeReader();
  }

  get overflowed(): boolean {
    return this.overflowedAt !== undefined;
  }

  /** The next queued event; undefined when overflowed, ended or aborted. */
  async next(signal: AbortSignal): Promise<OutboxEvent | undefined> {
    while (this.queue.length === 0 && !this.overflowed && !this.ended && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const onAbort = () => resolve();
        signal.addEventListener("abort", onAbort, { once: true });
        this.waiting = () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        };
      });
      this.waiting = undefined;
    }
    const e = this.overflowed ? undefined : this.queue.shift();
    this.taken = e !== undefined;
    return e;
  }

  /** The stream is done with the event `next` handed out: sent it, or dropped it as a repeat. */
  done(): void {
    this.taken = false;
  }

  /**
   * How far the stream has got through the live feed, when it has nothing
   * left to send: every event the feed offered up to the returned position
   * either did not match or was handed out and done with. Undefined while an
   * event is queued or taken, after an overflow (the queue was dropped), or
   * before the feed offered anything.
   */
  caughtUp(): Position | undefined {
    if (this.queue.length > 0 || this.taken || this.overflowed) return undefined;
    return this.seen;
  }

  /** The stream reads `events` from the table and sends them, one by one (see `replayed`). */
  replaying(events: readonly OutboxEvent[]): void {
    this.replay = events;
    this.replayNext = 0;
  }

  /** The stream sent the next of the events it is replaying. */
  replayed(): void {
    this.replayNext++;
  }

  /**
   * Events the stream has yet to send, from the table and queued live (at
   * most: the two may overlap while it catches up), and the oldest one's occur time.
   */
  lag(): { events: number; oldest: Date | undefined } {
    const fromTable = this.replay.length - this.replayNext;
    const oldest = this.replay[this.replayNext] ?? this.queue[0];
    return { events: fromTable + this.queue.length, oldest: oldest?.occurTime };
  }

  end(): void {
    this.ended = true;
    this.wakeReader();
  }

  close(): void {
    this.end();
    this.onClose();
  }

  private wakeReader(): void {
    this.waiting?.();
  }
}

export function matches(e: OutboxEvent, f: EventFilter): boolean {
  return (
    (f.types.length === 0 || f.types.includes(e.type)) &&
    (f.resourceIds.length === 0 ||
      (e.resourceId !== null && f.resourceIds.includes(e.resourceId)) ||
      // A move away from a watched resource is news to its watchers too.
      (typeof e.payload.previousResourceId === "string" &&
        f.resourceIds.includes(e.payload.previousResourceId))) &&
    (f.serviceIds.length === 0 || (e.serviceId !== null && f.serviceIds.includes(e.serviceId)))
  );
}

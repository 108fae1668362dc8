import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { performance } from "node:perf_hooks";
import type { DescMethod } from "@bufbuild/protobuf";
import { Code, type Interceptor } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";
import type { WriteName, WriteResult } from "../booking/writes.js";
import { type Backlog, readBacklog } from "../db/backlog.js";
import type { Pool } from "../db/pool.js";
import type { EventFeed } from "../events/feed.js";
import type { AttemptReport } from "../events/webhooks.js";
import { log } from "../log.js";
import {
  codeOf,
  connectCodeOf,
  observing,
  protocolOf,
  reasonOf,
  serverAtFault,
} from "./observe.js";

export const METRICS_PATH = "/metrics";

/** Successful BookingService calls counted as domain operations. */
const BOOKING_OPERATIONS: Record<string, string> = {
  CreateHold: "hold",
  CreateBooking: "booking",
  ConfirmBooking: "confirm",
  ExtendHold: "extend",
  CancelBooking: "cancel",
  RescheduleBooking: "reschedule",
  CompleteBooking: "complete",
  MarkNoShow: "no_show",
};

/** A count kept as a plain number on the request path, handed to its prom-client counter when scraped. */
type Tally<L extends string> = { labels: Record<L, string>; count: number; reported: number };

/** The per-call series of one method over one protocol, made at its first call and kept. */
type Series = {
  labels: { service: string; method: string; protocol: string };
  inFlight: number;
  /** Finished calls by code ("OK", "NotFound", ...). */
  byCode: Map<string, Tally<"service" | "method" | "protocol" | "code">>;
  /** The booking operation a successful call counts as, if any. */
  operation: Tally<"operation"> | undefined;
  booking: boolean;
};

/**
 * Prometheus metrics of one Holdfast instance, on a registry of its own (so
 * several instances in one process, as in tests, do not collide). Tenant ids
 * are never labels: their number is unbounded.
 *
 * A labelled prom-client update hashes its labels object on every call, so
 * the request path keeps its counts and in-flight gauges as plain numbers
 * on series made once per (method, protocol), and the metrics read them
 * when scraped; histograms are observed with label objects made once.
 */
export class Metrics {
  readonly registry = new Registry();
  private readonly duration: Histogram<"service" | "method" | "protocol">;
  private readonly rejections: Counter<"method" | "reason">;
  private readonly expiries: Counter;
  private readonly writes: Histogram<"write" | "result">;
  private readonly batchSizes: Histogram;
  private readonly attempts: Counter<"result">;
  private readonly attemptDuration: Histogram<"response">;
  /** By method, then protocol. */
  private readonly series = new Map<DescMethod, Map<string, Series>>();
  private readonly allSeries: Series[] = [];
  private readonly operationTallies = new Map<string, Tally<"operation">>();
  /** Label objects of the booking write histogram, by write and result. */
  private readonly writeLabels = new Map<string, { write: WriteName; result: WriteResult }>();

  constructor(pool: Pool, feed: EventFeed) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const all = this.allSeries;
    const operationTallies = this.operationTallies;
    new Counter({
      name: "holdfast_rpc_requests_total",
      help: "RPCs finished, by service, method, code (OK or the Connect code) and protocol.",
      labelNames: ["service", "method", "code", "protocol"],
      registers,
      collect() {
        for (const s of all) for (const t of s.byCode.values()) report(this, t);
      },
    });
    this.duration = new Histogram({
      name: "holdfast_rpc_duration_seconds",
      help: "Time from receiving an RPC to its last response message (streams: until they end).",
      labelNames: ["service", "method", "protocol"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    new Gauge({
      name: "holdfast_rpc_in_flight",
      help: "RPCs being served now (open WatchEvents streams included: method WatchEvents).",
      labelNames: ["service", "method", "protocol"],
      registers,
      collect() {
        for (const s of all) this.set(s.labels, s.inFlight);
      },
    });
    new Counter({
      name: "holdfast_booking_operations_total",
      help: "Successful booking changes: hold, booking, confirm, extend, cancel, reschedule, complete, no_show.",
      labelNames: ["operation"],
      registers,
      collect() {
        for (const t of operationTallies.values()) report(this, t);
      },
    });
    this.rejections = new Counter({
      name: "holdfast_booking_rejections_total",
      help: "BookingService calls refused, by method and stable reason (conflicts: SLOT_UNAVAILABLE); server faults and calls the caller cancelled are not refusals.",
      labelNames: ["method", "reason"],
      registers,
    });
    this.expiries = new Counter({
      name: "holdfast_holds_expired_total",
      help: "Holds this instance's sweeper marked expired.",
      registers,
    });
    this.writes = new Histogram({
      name: "holdfast_booking_write_duration_seconds",
      help: "Time in the booking write's one SQL call, by write (create_booking, change_booking, reschedule_booking) and result (written, refused, replayed, retry, abandoned, error).",
      labelNames: ["write", "result"],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    });
    this.batchSizes = new Histogram({
      name: "holdfast_booking_batch_creates",
      help: "Creates (holds and bookings naming one resource) per write to Postgres: 1 for a create written alone, more for those written together in one transaction (src/booking/batches.ts).",
      buckets: [1, 2, 4, 8, 16, 32],
      registers,
    });
    this.attempts = new Counter({
      name: "holdfast_webhook_attempts_total",
      help: "Webhook delivery attempts this instance made, by result: delivered, retrying (failed, another attempt scheduled) or given_up (failed for good).",
      labelNames: ["result"],
      registers,
    });
    this.attemptDuration = new Histogram({
      name: "holdfast_webhook_attempt_duration_seconds",
      help: "Time of one webhook attempt, by the endpoint's response: 2xx, 3xx, 4xx, 5xx, timeout or error (no answer).",
      labelNames: ["response"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    new Gauge({
      name: "holdfast_db_pool_connections",
      help: "The pg pool's connections: state total, idle, or waiting (requests queued for one).",
      labelNames: ["state"],
      registers,
      collect() {
        this.set({ state: "total" }, pool.totalCount);
        this.set({ state: "idle" }, pool.idleCount);
        this.set({ state: "waiting" }, pool.waitingCount);
      },
    });
    const failures = new Counter({
      name: "holdfast_metrics_db_read_failures_total",
      help: "Scrapes whose database read failed or timed out (its gauges then keep their last values).",
      registers,
      // Reported once this scrape's read is over, so a failure shows in the scrape it spoiled.
      async collect() {
        await backlog();
      },
    });
    // Read from the database at scrape time, in one query for every gauge
    // below, with this instance's stream lag as of the same moment.
    type Snapshot = Backlog & { streams: number; streamLagEvents: number };
    let snapshot: Promise<Snapshot | undefined> | undefined;
    const read = async (): Promise<Snapshot | undefined> => {
      const lag = feed.lag();
      try {
        const b = await readBacklog(pool, lag);
        const behind = lag.streams > 0;
        return {
          ...b,
          streams: lag.streams,
          streamLagEvents: behind ? b.feedLagEvents + lag.events : 0,
          streamLagSeconds: behind ? b.streamLagSeconds : 0,
        };
      } catch (err) {
        failures.inc();
        log.warn("reading the backlog for /metrics failed", { err });
        return undefined;
      }
    };
    const backlog = () => {
      snapshot ??= read().finally(() => {
        snapshot = undefined;
      });
      return snapshot;
    };
    const fromBacklog = (name: string, help: string, pick: (b: Snapshot) => number) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const b = await backlog();
          if (b) this.set(pick(b));
        },
      });
    fromBacklog(
      "holdfast_event_streams",
      "Live WatchEvents streams on this instance (RPC and Server-Sent Events).",
      (b) => b.streams,
    );
    fromBacklog(
      "holdfast_event_stream_lag_events",
      "Events the live stream furthest behind has yet to send: held unsent, plus those this instance has not read from the outbox yet (at most).",
      (b) => b.streamLagEvents,
    );
    fromBacklog(
      "holdfast_event_stream_lag_seconds",
      "Age of the oldest event a live stream of this instance has yet to send; 0 when all are caught up.",
      (b) => b.streamLagSeconds,
    );
    fromBacklog(
      "holdfast_outbox_head_seq",
      "The newest event's sequence number in the outbox.",
      (b) => b.headSeq,
    );
    fromBacklog(
      "holdfast_webhook_dispatch_lag_events",
      "Events in the outbox not yet dispatched to webhooks (counted up to 100000).",
      (b) => b.dispatchLagEvents,
    );
    fromBacklog(
      "holdfast_webhook_dispatch_lag_seconds",
      "Age of the oldest event not yet dispatched to webhooks; 0 when none waits.",
      (b) => b.dispatchLagSeconds,
    );
    fromBacklog(
      "holdfast_webhook_deliveries_pending",
      "Webhook deliveries not yet succeeded nor failed for good (counted up to 100000).",
      (b) => b.pending,
    );
    fromBacklog(
      "holdfast_webhook_delivery_lag_seconds",
      "Age of the oldest pending webhook delivery (since it was queued); 0 when none waits.",
      (b) => b.oldestPendingSeconds,
    );
    fromBacklog(
      "holdfast_webhook_deliveries_leased",
      "Pending deliveries an instance is attempting now (lease not over).",
      (b) => b.leased,
    );
    fromBacklog(
      "holdfast_sweeper_lag_seconds",
      "How long ago the oldest lapsed hold not yet marked expired lapsed; 0 when none.",
      (b) => b.sweeperLagSeconds,
    );
  }

  /** Counts holds the sweeper expired. */
  expired(count: number): void {
    this.expiries.inc(count);
  }

  /** Counts the creates of one write of single-resource creates (see src/booking/batches.ts). */
  readonly bookingBatch = (creates: number): void => {
    this.batchSizes.observe(creates);
  };

  /** Times one booking write's SQL call (see src/booking/writes.ts). */
  readonly bookingWrite = (write: WriteName, result: WriteResult, seconds: number): void => {
    const key = `${write} ${result}`;
    let labels = this.writeLabels.get(key);
    if (!labels) {
      labels = { write, result };
      this.writeLabels.set(key, labels);
    }
    this.writes.observe(labels, seconds);
  };

  /** Counts and times one webhook attempt. */
  readonly webhookAttempt = (a: AttemptReport): void => {
    this.attempts.inc({ result: a.result });
    this.attemptDuration.observe({ response: a.response }, a.seconds);
  };

  /** One interceptor: requests, latency, in-flight and booking outcomes. Put it outermost. */
  readonly interceptor: Interceptor = observing((req) => {
    const s = this.seriesOf(req.method, protocolOf(req.header.get("content-type")));
    const started = performance.now();
    s.inFlight++;
    return (err) => {
      s.inFlight--;
      this.duration.observe(s.labels, (performance.now() - started) / 1000);
      const code = codeOf(err);
      let t = s.byCode.get(code);
      if (!t) {
        t = { labels: { ...s.labels, code }, count: 0, reported: 0 };
        s.byCode.set(code, t);
      }
      t.count++;
      if (!s.booking) return;
      if (err === undefined) {
        if (s.operation) s.operation.count++;
      } else if (!serverAtFault(err) && connectCodeOf(err) !== Code.Canceled) {
        // Refusals only: a server fault or a caller that hung up is not one
        // (holdfast_rpc_requests_total counts those by code).
        this.rejections.inc({ method: s.labels.method, reason: reasonOf(err) });
      }
    };
  });

  /** The series of `method` over `protocol`; methods and protocols are few, so each is made once. */
  private seriesOf(method: DescMethod, protocol: string): Series {
    let byProtocol = this.series.get(method);
    if (!byProtocol) {
      byProtocol = new Map();
      this.series.set(method, byProtocol);
    }
    let s = byProtocol.get(protocol);
    if (!s) {
      const booking = method.parent.typeName === "holdfast.v1.BookingService";
      const operation = booking ? BOOKING_OPERATIONS[method.name] : undefined;
      let tally = operation === undefined ? undefined : this.operationTallies.get(operation);
      if (operation !== undefined && !tally) {
        tally = { labels: { operation }, count: 0, reported: 0 };
        this.operationTallies.set(operation, tally);
      }
      s = {
        labels: { service: method.parent.typeName, method: method.name, protocol },
        inFlight: 0,
        byCode: new Map(),
        operation: tally,
        booking,
      };
      byProtocol.set(protocol, s);
      this.allSeries.push(s);
    }
    return s;
  }

  /** Serves GET /metrics in Prometheus's text format. */
  handler(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): void {
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    this.registry.metrics().then(
      (text) => {
        res.writeHead(200, { "content-type": this.registry.contentType });
        res.end(text);
      },
      () => {
        res.writeHead(503, { "content-type": "text/plain" });
        res.end("metrics unavailable\n");
      },
    );
  }
}

/** Adds to `counter` what `t` counted since the last scrape. */
function report<L extends string>(counter: Counter<L>, t: Tally<L>): void {
  const count = t.count;
  if (count === t.reported) return;
  counter.inc(t.labels, count - t.reported);
  t.reported = count;
}

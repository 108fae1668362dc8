import { performance } from "node:perf_hooks";
import {
  type Attributes,
  context,
  propagation,
  SpanKind,
  SpanStatusCode,
} from "@opentelemetry/api";
import { type Dispatcher, fetch } from "undici";
import type { Db } from "../db/pool.js";
import {
  type AttemptResult,
  deliveryGone,
  dispatchEvents,
  type LeasedDelivery,
  leaseDue,
  recordAttempt,
} from "../db/webhooks.js";
import { afterFailure, signatureHeader, unseal } from "../domain/webhooks.js";
import { log } from "../log.js";
import { contextOfTraceparent, inSpan } from "../tracing.js";
import type { EventFeed } from "./feed.js";
import { Pacer } from "./pacer.js";
import { type Resolve, refuseLiteral, webhookDispatcher } from "./webhook-target.js";

export type WebhookSettings = {
  allowPrivate: boolean;
  timeoutMs: number;
  retryScheduleMs: number[];
  disableAfter: number;
  /** Key that seals signing secrets at rest. */
  secretKey: Buffer;
  /** How target names are resolved; the system resolver unless a test controls DNS. */
  resolve?: Resolve | undefined;
  /** Told about every attempt (the metrics). */
  onAttempt?: ((a: AttemptReport) => void) | undefined;
};

/**
 * One attempt: `result` what became of the delivery (delivered, another
 * attempt scheduled, or given up), `response` what the endpoint answered
 * (2xx, 3xx, 4xx, 5xx, timeout, or error when nothing came), `seconds` how long it took.
 */
export type AttemptReport = {
  result: "delivered" | "retrying" | "given_up";
  response: "2xx" | "3xx" | "4xx" | "5xx" | "timeout" | "error";
  seconds: number;
};

const RESULTS = { succeeded: "delivered", pending: "retrying", failed: "given_up" } as const;

// HTTP client attributes of OpenTelemetry's semantic conventions (stable
// ones; spelled out here so that a server without tracing does not load
// the conventions package at start).
const ATTR_ERROR_TYPE = "error.type";
const ATTR_HTTP_REQUEST_METHOD = "http.request.method";
const ATTR_HTTP_RESPONSE_STATUS_CODE = "http.response.status_code";
const ATTR_SERVER_ADDRESS = "server.address";
const ATTR_SERVER_PORT = "server.port";
const ATTR_URL_FULL = "url.full";

const DISPATCH_BATCH = 500;
/** Deliveries one instance has in flight at most; each is one POST. */
const MAX_IN_FLIGHT = 64;
/**
 * Long enough for a timed-out attempt to be recorded before another worker
 * may take the delivery; if the worker dies, the delivery waits this long.
 */
const leaseMs = (s: WebhookSettings) => 2 * s.timeoutMs + 5_000;
const IDLE_POLL_MS = 500;
const PASS_GAP_MS = 20;

/**
 * Webhook delivery, run by every instance: turn committed outbox events
 * into deliveries (one instance at a time), then POST due deliveries,
 * signed per Standard Webhooks, at least once. Woken by the event feed
 * whenever events commit, and every half second for retries that fall due.
 * Up to MAX_IN_FLIGHT deliveries run at once; a pass leases only as many
 * as there is room for, and each one that finishes makes room for the next
 * pass, so one slow endpoint never holds back the others.
 */
export function startWebhookDelivery(
  db: Db,
  feed: EventFeed,
  settings: WebhookSettings,
  /** The body as sent: bookings get their local times on the way out, as in every answer. */
  bodyOf: (d: LeasedDelivery) => Promise<string>,
): { stop(): Promise<void> } {
  let stopped = false;
  const dispatcher = webhookDispatcher(settings);
  const inFlight = new Set<Promise<void>>();
  const send = (d: LeasedDelivery) => {
    const sending: Promise<void> = bodyOf(d)
      .then((body) => deliver(db, { ...d, body }, settings, dispatcher))
      .then((disabled) => {
        if (disabled) feed.committed();
      })
      .catch((err: unknown) => {
        // Deleting a webhook is its owner's choice, even mid-attempt.
        if (deliveryGone(err)) {
          log.debug("webhook deleted during a delivery attempt, which is not recorded", {
            webhookId: d.webhookId,
            deliveryId: d.id,
          });
        } else log.warn("recording a webhook attempt failed", { err });
      })
      .finally(() => {
        inFlight.delete(sending);
        pacer.poke();
      });
    inFlight.add(sending);
  };
  const pass = async () => {
    while (!stopped && (await dispatchEvents(db, DISPATCH_BATCH)) === DISPATCH_BATCH) {}
    while (!stopped && inFlight.size < MAX_IN_FLIGHT) {
      const room = MAX_IN_FLIGHT - inFlight.size;
      const due = await leaseDue(db, room, leaseMs(settings));
      for (const d of due) send(d);
      if (due.length < room) return;
    }
  };
  // A burst of commits is one pass every PASS_GAP_MS, not one pass each.
  const pacer = new Pacer("webhook delivery", pass, PASS_GAP_MS);
  const wake = () => pacer.poke();
  feed.on("wake", wake);
  const timer = setInterval(wake, IDLE_POLL_MS);
  timer.unref();
  wake();

  return {
    async stop() {
      stopped = true;
      clearInterval(timer);
      feed.off("wake", wake);
      await pacer.stop();
      await Promise.all(inFlight);
      await dispatcher.close();
    },
  };
}

/**
 * One attempt at one delivery. Traced as a "webhook delivery" span whose
 * parent is the call that caused it (its traceparent came with the event
 * through the outbox), holding the POST as a CLIENT span, whose own
 * traceparent the request carries so the receiver can join that trace,
 * and the queries that record the attempt. Returns true when it disabled
 * the endpoint.
 */
function deliver(
  db: Db,
  d: LeasedDelivery,
  s: WebhookSettings,
  dispatcher: Dispatcher,
): Promise<boolean> {
  const delivery = {
    attributes: {
      "holdfast.tenant.id": d.tenantId,
      "holdfast.webhook.id": d.webhookId,
      "holdfast.delivery.id": d.id,
      "holdfast.event.id": d.eventId,
      "holdfast.event.type": d.eventType,
    },
  };
  return inSpan("webhook delivery", delivery, contextOfTraceparent(d.traceparent), async () => {
    const post = {
      kind: SpanKind.CLIENT,
      attributes: {
        [ATTR_HTTP_REQUEST_METHOD]: "POST",
        ...targetAttributes(d.url),
        "http.request.resend_count": d.attempt - 1,
      },
    };
    const result = await inSpan("POST", post, context.active(), async (span) => {
      const traceHeaders: Record<string, string> = {};
      propagation.inject(context.active(), traceHeaders);
      const r = await attempt(d, s, dispatcher, traceHeaders);
      if (r.statusCode !== 0) span.setAttribute(ATTR_HTTP_RESPONSE_STATUS_CODE, r.statusCode);
      if (r.error) {
        span.setAttribute(ATTR_ERROR_TYPE, r.statusCode ? String(r.statusCode) : "_OTHER");
        span.setStatus({ code: SpanStatusCode.ERROR, message: r.error });
      }
      return r;
    });
    const { statusCode, latencyMs, error, seconds, timedOut } = result;
    const ok = statusCode >= 200 && statusCode < 300;
    const recorded = await recordAttempt(
      db,
      d,
      { statusCode, latencyMs, error },
      {
        ...(ok
          ? { retryInMs: undefined, givesUp: false }
          : afterFailure(s.retryScheduleMs, d, Math.random())),
        disableAfter: s.disableAfter,
      },
    );
    s.onAttempt?.({
      result: RESULTS[recorded.status],
      response:
        statusCode >= 200 && statusCode < 600
          ? (`${Math.floor(statusCode / 100)}xx` as AttemptReport["response"])
          : timedOut
            ? "timeout"
            : "error",
      seconds,
    });
    return recorded.disabled;
  });
}

/** Where a webhook goes, without its query or credentials: a URL may carry a token there. */
function targetAttributes(url: string): Attributes {
  if (!URL.canParse(url)) return {};
  const u = new URL(url);
  return {
    [ATTR_URL_FULL]: `${u.protocol}//${u.host}${u.pathname}`,
    [ATTR_SERVER_ADDRESS]: u.hostname,
    [ATTR_SERVER_PORT]: Number(u.port) || (u.protocol === "https:" ? 443 : 80),
  };
}

/** Sends one POST; what it got, or why it failed. */
async function attempt(
  d: LeasedDelivery,
  s: WebhookSettings,
  dispatcher: Dispatcher,
  traceHeaders: Record<string, string>,
): Promise<AttemptResult & { seconds: number; timedOut: boolean }> {
  const timestamp = Math.floor(Date.now() / 1000);
  const started = performance.now();
  let statusCode = 0;
  let error = "";
  let timedOut = false;
  try {
    // Inside the try: a secret sealed with another HOLDFAST_SECRET_KEY is a
    // failed attempt, recorded and retried, not a delivery stuck in a loop.
    const current = openSecret(s.secretKey, d.secret);
    if (!current) {
      throw new Error(
        "the signing secret cannot be decrypted (was HOLDFAST_SECRET_KEY changed?): rotate it",
      );
    }
    const secrets = [current];
    // A retired secret that cannot be opened just stops signing early.
    for (const sealed of d.previousSecrets) {
      const previous = openSecret(s.secretKey, sealed);
      if (previous) secrets.push(previous);
    }
    refuseLiteral(d.url, s.allowPrivate);
    const res = await fetch(d.url, {
      dispatcher,
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(s.timeoutMs),
      headers: {
        "content-type": "application/json",
        "user-agent": "Holdfast-Webhooks/1",
        "webhook-id": d.eventId,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": signatureHeader(secrets, d.eventId, timestamp, d.body),
        ...traceHeaders,
      },
      body: d.body,
    });
    statusCode = res.status;
    await res.body?.cancel().catch(() => {});
    if (statusCode < 200 || statusCode >= 300) error = `answered ${statusCode}`;
  } catch (err) {
    timedOut = (err as Error).name === "TimeoutError";
    error = timedOut ? `no answer within ${s.timeoutMs} ms` : failure(err);
  }
  const seconds = (performance.now() - started) / 1000;
  return { statusCode, latencyMs: Math.round(seconds * 1000), error, seconds, timedOut };
}

function openSecret(key: Buffer, sealed: Buffer): string | undefined {
  try {
    return unseal(key, sealed);
  } catch {
    return undefined;
  }
}

/** What went wrong, from fetch's "fetch failed" down to its cause (refused, ECONNREFUSED, ...). */
function failure(err: unknown): string {
  const cause = (err as Error).cause;
  return cause instanceof Error ? cause.message : (err as Error).message;
}

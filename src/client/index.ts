import { randomUUID } from "node:crypto";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";

/**
 * A typed Holdfast client for backend services and agents. Every mutation
 * carries an Idempotency-Key (a fresh UUID unless the caller set one), and
 * calls that fail with Unavailable or DeadlineExceeded, or whose connection
 * broke before an answer arrived, are retried with the same key and
 * exponential backoff with jitter: the server answers a retry of a call that
 * did go through with the stored first response, so a retried call can
 * never book twice. A call refused with RATE_LIMITED is retried, with the
 * same key, after the delay its google.rpc.RetryInfo names (bounded by
 * `maxRateLimitWaitMs`).
 */
export type HoldfastClientOptions = {
  /** e.g. "http://127.0.0.1:8080" */
  baseUrl: string;
  /** `hf_...` */
  apiKey: string;
  /** "grpc" (HTTP/2) or "connect" (HTTP/1.1). Default "grpc". */
  protocol?: "grpc" | "connect";
  /** Tries per call, including the first. Default 4. */
  maxAttempts?: number;
  /** Backoff before the first retry, doubled after each, capped at 2 s. Default 100 ms. */
  initialBackoffMs?: number;
  /**
   * The longest wait a RATE_LIMITED answer's RetryInfo may ask for; a longer
   * one is passed on to the caller at once. Default 60 s.
   */
  maxRateLimitWaitMs?: number;
};

export type HoldfastClient = {
  bookings: Client<typeof BookingService>;
  availability: Client<typeof AvailabilityService>;
  resources: Client<typeof ResourceService>;
  catalog: Client<typeof CatalogService>;
  events: Client<typeof EventService>;
  webhooks: Client<typeof WebhookService>;
  keys: Client<typeof KeyService>;
  tenants: Client<typeof TenantService>;
};

const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);

/**
 * connect-node reports a connection that broke mid-call as Canceled (an
 * HTTP/2 stream reset) or Aborted ("socket hang up"). Every answer from a
 * Holdfast server carries an ErrorInfo detail, so an error without one did
 * not come from the server and says nothing about whether the call ran.
 */
function isBrokenConnection(err: ConnectError): boolean {
  const codes = [Code.Canceled, Code.Aborted, Code.Unknown, Code.Internal];
  return codes.includes(err.code) && err.findDetails(ErrorInfoSchema).length === 0;
}
const MAX_BACKOFF_MS = 2_000;

export function createHoldfastClient(options: HoldfastClientOptions): HoldfastClient {
  const transport = holdfastTransport(options);
  return {
    bookings: createClient(BookingService, transport),
    availability: createClient(AvailabilityService, transport),
    resources: createClient(ResourceService, transport),
    catalog: createClient(CatalogService, transport),
    events: createClient(EventService, transport),
    webhooks: createClient(WebhookService, transport),
    keys: createClient(KeyService, transport),
    tenants: createClient(TenantService, transport),
  };
}

/** The transport behind createHoldfastClient, for building clients of single services. */
export function holdfastTransport(options: HoldfastClientOptions): Transport {
  const interceptors = [
    idempotencyKeys,
    retries(
      options.maxAttempts ?? 4,
      options.initialBackoffMs ?? 100,
      options.maxRateLimitWaitMs ?? 60_000,
    ),
    bearer(options.apiKey),
  ];
  return options.protocol === "connect"
    ? createConnectTransport({ baseUrl: options.baseUrl, httpVersion: "1.1", interceptors })
    : createGrpcTransport({ baseUrl: options.baseUrl, interceptors });
}

function bearer(apiKey: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${apiKey}`);
    return next(req);
  };
}

/** Outermost, so the key is chosen once and every retry sends the same one. */
const idempotencyKeys: Interceptor = (next) => (req) => {
  const mutation = req.method.idempotency !== MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
  if (mutation && !req.stream && !req.header.has("idempotency-key")) {
    req.header.set("idempotency-key", randomUUID());
  }
  return next(req);
};

/** Waits `ms`, or less if the caller gives up (abort or deadline) meanwhile. */
function backoff(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/**
 * How long a RATE_LIMITED answer asks the caller to wait (its RetryInfo),
 * or undefined for any other error.
 */
export function rateLimitDelayMs(err: ConnectError): number | undefined {
  if (err.code !== Code.ResourceExhausted) return undefined;
  if (err.findDetails(ErrorInfoSchema)[0]?.reason !== "RATE_LIMITED") return undefined;
  const delay = err.findDetails(RetryInfoSchema)[0]?.retryDelay;
  return delay ? Number(delay.seconds) * 1000 + delay.nanos / 1e6 : 0;
}

/**
 * Retries a call refused with RATE_LIMITED after the wait its RetryInfo
 * names (plus a little jitter), with the same request and so the same
 * Idempotency-Key, up to `maxAttempts` tries in all; a wait longer than
 * `maxWaitMs` is passed on at once. For transports that need nothing else
 * retried (the MCP tools' in-process one); the typed client's `retries`
 * does the same among its other retries.
 */
export function rateLimitRetries(maxAttempts: number, maxWaitMs: number): Interceptor {
  return retries(maxAttempts, 0, maxWaitMs, { rateLimitedOnly: true });
}

function retries(
  maxAttempts: number,
  initialBackoffMs: number,
  maxRateLimitWaitMs: number,
  opts: { rateLimitedOnly: boolean } = { rateLimitedOnly: false },
): Interceptor {
  return (next) => async (req) => {
    if (req.stream) return next(req);
    for (let attempt = 1; ; attempt++) {
      try {
        return await next(req);
      } catch (err) {
        const ce = ConnectError.from(err);
        const told = rateLimitDelayMs(ce);
        const retryable =
          (!opts.rateLimitedOnly && (RETRYABLE.has(ce.code) || isBrokenConnection(ce))) ||
          (told !== undefined && told <= maxRateLimitWaitMs);
        if (attempt >= maxAttempts || !retryable || req.signal.aborted) throw err;
        const ceiling = Math.min(initialBackoffMs * 2 ** (attempt - 1), MAX_BACKOFF_MS);
        // Told when to come back: then, plus a little jitter so that callers
        // told the same time do not all arrive at once.
        const wait =
          told !== undefined
            ? told + Math.random() * Math.min(told / 10, 100)
            : ceiling / 2 + Math.random() * (ceiling / 2);
        await backoff(wait, req.signal);
        if (req.signal.aborted) throw err;
      }
    }
  };
}

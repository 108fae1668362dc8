/**
 * The platform-neutral part of the Holdfast client: the interceptors every
 * transport gets (API key, Idempotency-Key, retries), typed errors, and the
 * generated messages and services. `index.ts` (Node) and `web.ts` (browsers)
 * add a transport.
 */
import type { DescService } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
  type Transport,
} from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  RetryInfoSchema,
} from "../../../gen/google/rpc/error_details_pb.js";
import { AvailabilityService, type Slot } from "../../../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../../../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../../../gen/holdfast/v1/calendar_feed_pb.js";
import { CatalogService } from "../../../gen/holdfast/v1/catalog_pb.js";
import { type ConflictingRange, SlotConflictSchema } from "../../../gen/holdfast/v1/errors_pb.js";
import { EventService } from "../../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../../../gen/holdfast/v1/webhook_pb.js";
import type { Reason } from "../../../src/domain/rejection.js";

export * from "../../../gen/google/rpc/error_details_pb.js";
export * from "../../../gen/holdfast/v1/availability_pb.js";
export * from "../../../gen/holdfast/v1/booking_pb.js";
export * from "../../../gen/holdfast/v1/calendar_feed_pb.js";
export * from "../../../gen/holdfast/v1/catalog_pb.js";
export * from "../../../gen/holdfast/v1/errors_pb.js";
export * from "../../../gen/holdfast/v1/event_pb.js";
export * from "../../../gen/holdfast/v1/key_pb.js";
export * from "../../../gen/holdfast/v1/limits_pb.js";
export * from "../../../gen/holdfast/v1/resource_pb.js";
export * from "../../../gen/holdfast/v1/tenant_pb.js";
export * from "../../../gen/holdfast/v1/webhook_pb.js";

/**
 * What every Holdfast transport is built with. Every mutation carries an
 * Idempotency-Key (a fresh UUID unless the caller set the header), and
 * calls that fail with Unavailable or DeadlineExceeded, or whose connection
 * broke before an answer arrived, are retried with the same key and
 * exponential backoff with jitter: the server answers a retry of a call that
 * did go through with the stored first response, so a retried call can
 * never book twice. A call refused with RATE_LIMITED is retried, with the
 * same key, after the delay its google.rpc.RetryInfo names (bounded by
 * `maxRateLimitWaitMs`).
 */
export type HoldfastCallOptions = {
  /** `hf_...` */
  apiKey: string;
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

/** A typed client per service. Every error it throws is a {@link HoldfastError}. */
export type HoldfastClient = {
  bookings: Client<typeof BookingService>;
  availability: Client<typeof AvailabilityService>;
  resources: Client<typeof ResourceService>;
  catalog: Client<typeof CatalogService>;
  events: Client<typeof EventService>;
  webhooks: Client<typeof WebhookService>;
  keys: Client<typeof KeyService>;
  tenants: Client<typeof TenantService>;
  calendarFeeds: Client<typeof CalendarFeedService>;
};

/** A stable reason of the server (src/domain/rejection.ts); a newer server may send others. */
export type HoldfastReason = Reason | (string & {});

/** One bad field of a request, named by its proto path (`policy.durations[0]`). */
export type FieldViolation = { field: string; description: string };

/**
 * An error of a Holdfast call with its details decoded: branch on
 * `reason`, show `fieldViolations`, offer `alternatives`. It is a
 * ConnectError, so `code`, `rawMessage` and `findDetails` work as usual.
 */
export class HoldfastError extends ConnectError {
  /**
   * The server's stable reason ("SLOT_UNAVAILABLE", ...). An error that did
   * not come from a Holdfast server (no answer, a broken connection, the
   * caller's deadline) gets one from its code: "DEADLINE_EXCEEDED",
   * "CANCELLED", else "UNAVAILABLE"; `fromServer` is false then.
   */
  readonly reason: HoldfastReason;
  /** Whether a Holdfast server sent this error (it carries an ErrorInfo). */
  readonly fromServer: boolean;
  /** ErrorInfo's metadata, e.g. the scope a MISSING_SCOPE key lacks. */
  readonly info: Record<string, string>;
  /** For VALIDATION_ERROR and other bad input: each field to fix. */
  readonly fieldViolations: FieldViolation[];
  /** For SLOT_UNAVAILABLE: free times nearby, each ready for `createHold({ slotId })`. */
  readonly alternatives: Slot[];
  /** For SLOT_UNAVAILABLE: the times in the way (never whose they are). */
  readonly conflicts: ConflictingRange[];

  private constructor(from: ConnectError) {
    super(from.rawMessage, from.code, from.metadata, undefined, from.cause);
    this.details = from.details;
    const info = from.findDetails(ErrorInfoSchema)[0];
    this.fromServer = info !== undefined;
    this.reason = info?.reason || reasonOfCode(from.code);
    this.info = { ...info?.metadata };
    this.fieldViolations = from
      .findDetails(BadRequestSchema)
      .flatMap((b) =>
        b.fieldViolations.map((v) => ({ field: v.field, description: v.description })),
      );
    const conflicts = from.findDetails(SlotConflictSchema);
    this.alternatives = conflicts.flatMap((c) => c.alternatives);
    this.conflicts = conflicts.flatMap((c) => c.conflicts);
  }

  /** Any caught value as a HoldfastError (itself if it already is one). */
  static override from(err: unknown): HoldfastError {
    if (err instanceof HoldfastError) return err;
    return new HoldfastError(ConnectError.from(err));
  }

  // ConnectError's own check accepts any ConnectError; only real HoldfastErrors are.
  static override [Symbol.hasInstance](v: unknown): boolean {
    return Object.prototype.isPrototypeOf.call(HoldfastError.prototype, v as object);
  }
}

function reasonOfCode(code: Code): HoldfastReason {
  if (code === Code.DeadlineExceeded) return "DEADLINE_EXCEEDED";
  if (code === Code.Canceled) return "CANCELLED";
  return "UNAVAILABLE";
}

/** Typed clients for every service over `transport` (built with {@link holdfastInterceptors}). */
export function holdfastClients(transport: Transport): HoldfastClient {
  return {
    bookings: typedClient(BookingService, transport),
    availability: typedClient(AvailabilityService, transport),
    resources: typedClient(ResourceService, transport),
    catalog: typedClient(CatalogService, transport),
    events: typedClient(EventService, transport),
    webhooks: typedClient(WebhookService, transport),
    keys: typedClient(KeyService, transport),
    tenants: typedClient(TenantService, transport),
    calendarFeeds: typedClient(CalendarFeedService, transport),
  };
}

/** A client of one service whose calls and streams throw HoldfastErrors. */
export function typedClient<S extends DescService>(service: S, transport: Transport): Client<S> {
  const client = createClient(service, transport) as Record<string, (...a: unknown[]) => unknown>;
  const typed: Record<string, unknown> = {};
  for (const method of service.methods) {
    const call = client[method.localName] as (...a: unknown[]) => unknown;
    typed[method.localName] =
      method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming"
        ? (...args: unknown[]) => typedStream(call(...args) as AsyncIterable<unknown>)
        : async (...args: unknown[]) => {
            try {
              return await call(...args);
            } catch (err) {
              throw HoldfastError.from(err);
            }
          };
  }
  return typed as Client<S>;
}

async function* typedStream<T>(stream: AsyncIterable<T>): AsyncIterable<T> {
  try {
    yield* stream;
  } catch (err) {
    throw HoldfastError.from(err);
  }
}

/**
 * An entry point's two functions, given how it builds a transport for its
 * platform from the options and the Holdfast interceptors.
 */
export function holdfastEntry<O extends HoldfastCallOptions>(
  transportFor: (options: O, interceptors: Interceptor[]) => Transport,
) {
  /** The transport behind createHoldfastClient, for building clients of single services. */
  const holdfastTransport = (options: O): Transport =>
    transportFor(options, holdfastInterceptors(options));
  /** Typed clients for every service. */
  const createHoldfastClient = (options: O): HoldfastClient =>
    holdfastClients(holdfastTransport(options));
  return { createHoldfastClient, holdfastTransport };
}

/** API key, Idempotency-Key and retries, in the order they must run. */
export function holdfastInterceptors(options: HoldfastCallOptions): Interceptor[] {
  return [
    idempotencyKeys,
    retries(
      options.maxAttempts ?? 4,
      options.initialBackoffMs ?? 100,
      options.maxRateLimitWaitMs ?? 60_000,
    ),
    bearer(options.apiKey),
  ];
}

const RETRYABLE = new Set([Code.Unavailable, Code.DeadlineExceeded]);
const MAX_BACKOFF_MS = 2_000;

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
    req.header.set("idempotency-key", uuid());
  }
  return next(req);
};

/** A random (v4) UUID from Web Crypto, which Node and browsers (also outside https) have. */
function uuid(): string {
  const b = globalThis.crypto.getRandomValues(new Uint8Array(16));
  b[6] = ((b[6] as number) & 0x0f) | 0x40;
  b[8] = ((b[8] as number) & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

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

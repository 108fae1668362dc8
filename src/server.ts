import { setMaxListeners } from "node:events";
import { createServer as createHttp1Server, type IncomingMessage, ServerResponse } from "node:http";
import {
  createServer as createHttp2Server,
  Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
  constants as h2constants,
} from "node:http2";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../gen/health/v1/health_pb.js";
import { AvailabilityService } from "../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../gen/holdfast/v1/booking_pb.js";
import { CalendarFeedService } from "../gen/holdfast/v1/calendar_feed_pb.js";
import { CatalogService } from "../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../gen/holdfast/v1/webhook_pb.js";
import { BookingBatches } from "./booking/batches.js";
import { SlotFinder } from "./booking/slot-finder.js";
import { TenantWrites } from "./booking/tenant-writes.js";
import { type Config, StartError } from "./config.js";
import { CONSOLE_PATH, consoleHandler } from "./console/serve.js";
import { CatalogCache } from "./db/catalog-cache.js";
import { startMaintenance } from "./db/maintenance.js";
import { migrate, readMigrations } from "./db/migrate.js";
import { createPool, endBusySessions, type Pool, poolDb } from "./db/pool.js";
import { sharedSecret } from "./db/secrets.js";
import { Signals } from "./db/signals.js";
import { bootstrapDefaultTenant } from "./db/tenants.js";
import { EventCursors } from "./events/cursors.js";
import { EventFeed } from "./events/feed.js";
import type { Resolve } from "./events/webhook-target.js";
import { startWebhookDelivery } from "./events/webhooks.js";
import { log, setLogLevel } from "./log.js";
import { MCP_PATH, mcpHttpHandler } from "./mcp/http.js";
import { inProcessTransport } from "./mcp/transport.js";
import { apiDocsHandler, isApiDocsPath } from "./rpc/api-docs.js";
import { authInterceptor, Keyring } from "./rpc/auth.js";
import { availabilityService } from "./rpc/availability-service.js";
import { bookingService } from "./rpc/booking-service.js";
import {
  CALENDAR_FEED_PATH,
  calendarFeedHandler,
  withoutFeedSecrets,
} from "./rpc/calendar-feed-http.js";
import { calendarFeedService } from "./rpc/calendar-feed-service.js";
import { catalogService } from "./rpc/catalog-service.js";
import { corsHandler } from "./rpc/cors.js";
import { errorInterceptor } from "./rpc/errors.js";
import { eventService, eventStreams } from "./rpc/event-service.js";
import { EVENT_STREAM_PATH, eventStreamHandler } from "./rpc/event-stream.js";
import { HEALTH_PATHS, healthHttpHandler, readinessProbe, registerHealth } from "./rpc/health.js";
import { cutOff, rawHttpError, rpcRequestHandler } from "./rpc/http.js";
import { idempotent } from "./rpc/idempotency.js";
import { keyService } from "./rpc/key-service.js";
import { requestChecksInterceptor } from "./rpc/limits.js";
import { localizeDeliveryBody, localTimesInterceptor, zonesOf } from "./rpc/local-times.js";
import { METRICS_PATH, Metrics } from "./rpc/metrics.js";
import { pageTokensInterceptor } from "./rpc/paging.js";
import { rateLimitInterceptor } from "./rpc/rate-limit.js";
import { RateLimiter } from "./rpc/rate-limiter.js";
import { registerReflection } from "./rpc/reflection.js";
import { httpLines, requestLogInterceptor } from "./rpc/request-log.js";
import { resourceService } from "./rpc/resource-service.js";
import { tenantService } from "./rpc/tenant-service.js";
import { tenantWritesInterceptor } from "./rpc/tenant-writes.js";
import { tracingInterceptor } from "./rpc/tracing.js";
import { webhookService } from "./rpc/webhook-service.js";
import { tracingOn } from "./tracing.js";

/** The Holdfast API services, in the order reflection lists them. */
export const API_SERVICES: readonly DescService[] = [
  TenantService,
  KeyService,
  ResourceService,
  CatalogService,
  AvailabilityService,
  BookingService,
  EventService,
  WebhookService,
  CalendarFeedService,
];

export type Holdfast = {
  /** http://host:port, for every protocol. */
  url: string;
  port: number;
  /** The port serving /metrics, /healthz and /readyz alone, when HOLDFAST_METRICS_PORT is set. */
  metricsPort: number | undefined;
  /** Set when this start created tenant `default` and its operator key: print it once. */
  operatorKey: string | undefined;
  pool: Pool;
  /** Resolves API keys, with its cache (its lookup count is for tests and diagnostics). */
  keyring: Keyring;
  /** Batches concurrent creates per resource (its queue lengths are for tests and diagnostics). */
  batches: BookingBatches;
  /**
   * Stops gracefully: stops accepting, ends every WatchEvents stream with
   * Unavailable so consumers resume from their cursor, lets the calls in
   * flight finish (at most HOLDFAST_SHUTDOWN_GRACE_MS), then closes.
   */
  close(): Promise<void>;
};

/** What a caller embedding Holdfast may replace; the environment configures the rest. */
export type StartOptions = {
  /** Resolves webhook target names (tests use their own, to control DNS answers). */
  webhookResolve?: Resolve;
  /** How long a rate-limit lease may be spent (tests make it long, to see tokens held unspent). */
  rateLeaseMs?: number;
};

/**
 * Starts one Holdfast instance on `databaseUrl`: applies migrations, makes
 * sure tenant `default` exists, opens the notification connection, and
 * serves every protocol on one port. Several instances may share a database.
 *
 * The port is bound first (or handed in already bound, see bindPort) and
 * tenant `default` is created last, after everything that can fail: a
 * start that fails never creates an operator key it cannot show.
 */
export async function startHoldfast(
  config: Config,
  databaseUrl: string,
  bound?: Listener,
  options: StartOptions = {},
): Promise<Holdfast> {
  setLogLevel(config.logLevel);
  const listener = bound ?? (await bindPort(config.host, config.port));
  const pool = createPool(databaseUrl, config.dbPoolSize, config.dbTimeouts);
  // Health checks get their own connection, so a busy pool cannot make a
  // healthy instance look down, nor a hung health check take a request's.
  const healthPool = createPool(databaseUrl, 1, config.dbTimeouts);
  const signals = new Signals(databaseUrl);
  // Aborted first when stopping: streams end, health says NOT_SERVING.
  const stopping = new AbortController();
  // Aborted when the grace period is over: whatever still runs is cut.
  const shutdown = new AbortController();
  // Every request in flight listens on it, so the default cap of 10 would
  // warn about a leak under ordinary concurrency.
  setMaxListeners(0, shutdown.signal, stopping.signal);
  let metricsListener: Listener | undefined;
  try {
    if (config.metricsPort !== undefined) {
      metricsListener = await bindPort(config.host, config.metricsPort, "HOLDFAST_METRICS_PORT");
    }
    // Migrations run without the time limits: one may rightly take long,
    // and an instance waits for another's to finish.
    const migrationPool = createPool(databaseUrl, 1);
    await migrate(migrationPool).finally(() => migrationPool.end());
    const schemaVersion = Math.max(...(await readMigrations()).map((m) => m.version));
    const db = poolDb(pool);
    await signals.start();
    const slotSecret = await sharedSecret(pool, "slot-ids");
    const pageSecret = await sharedSecret(pool, "page-tokens");
    const eventCursors = new EventCursors(await sharedSecret(pool, "event-cursors"));
    if (!config.secretKey) {
      log.warn(
        "HOLDFAST_SECRET_KEY is not set: webhook secrets are sealed with a key kept in the database",
      );
    }
    const webhookSettings = {
      allowPrivate: config.webhookAllowPrivate,
      timeoutMs: config.webhookTimeoutMs,
      retryScheduleMs: config.webhookRetryScheduleMs,
      disableAfter: config.webhookDisableAfter,
      secretKey: config.secretKey ?? (await sharedSecret(pool, "webhook-secrets")),
      resolve: options.webhookResolve,
    };
    // The last step that can fail; nothing after it touches the database
    // before serving.
    const { tenantId, operatorSecret } = await bootstrapDefaultTenant(
      db,
      config.adminKey === undefined,
    );
    const keyring = new Keyring(pool, tenantId, config.adminKey, signals, config.keyCache);
    const catalogCache = new CatalogCache(pool, signals);
    const slotFinder = new SlotFinder(pool, catalogCache, slotSecret);
    const feed = new EventFeed(pool, signals, config.eventPollMs);
    const zones = zonesOf(catalogCache);
    const openEventStream = eventStreams(
      pool,
      feed,
      {
        buffer: config.streamBuffer,
        maxLagMs: config.streamMaxLagMs,
        perTenant: config.streamsPerTenant,
        total: config.streamsMax,
        heartbeatMs: config.streamHeartbeatMs,
      },
      stopping.signal,
      eventCursors,
    );

    const limiter = new RateLimiter(pool, config.rateLimits, options.rateLeaseMs);
    const metrics = config.metrics ? new Metrics(pool, feed) : undefined;
    const batches = new BookingBatches(db, config.writeLanes, metrics?.bookingBatch);
    // A tenant's other writes take turns too, as many at once as its creates' lanes.
    const turns = new TenantWrites(config.writeLanes, config.dbTimeouts.lockMs);
    const readiness = readinessProbe(healthPool, schemaVersion, stopping.signal);
    const health = healthHttpHandler(readiness);
    // Duplicates of a request still running wait for it as long as for a lock.
    const keyWaits = { waitMs: config.dbTimeouts.lockMs };
    const routes = (router: ConnectRouter) => {
      router.service(
        TenantService,
        idempotent(TenantService, tenantService(db, config.rateLimits), pool, keyWaits),
      );
      router.service(
        KeyService,
        idempotent(KeyService, keyService(db, keyring, config.rateLimits), pool, keyWaits),
      );
      router.service(
        ResourceService,
        idempotent(ResourceService, resourceService(db), pool, keyWaits),
      );
      router.service(
        CatalogService,
        idempotent(CatalogService, catalogService(db), pool, keyWaits),
      );
      router.service(AvailabilityService, availabilityService(catalogCache, slotFinder));
      router.service(EventService, eventService(pool, openEventStream, keyring, eventCursors));
      router.service(
        WebhookService,
        idempotent(WebhookService, webhookService(db, feed, webhookSettings), pool, keyWaits),
      );
      router.service(
        BookingService,
        idempotent(
          BookingService,
          bookingService(db, catalogCache, slotFinder, feed, metrics?.bookingWrite, batches, turns),
          pool,
          { ...keyWaits, storesOwnOutcomes: true },
        ),
      );
      router.service(
        CalendarFeedService,
        idempotent(CalendarFeedService, calendarFeedService(db), pool, keyWaits),
      );
      registerHealth(
        router,
        readiness,
        API_SERVICES.map((s) => s.typeName),
        stopping.signal,
      );
      registerReflection(router, [...API_SERVICES, Health]);
    };
    // A line per request on the paths outside the RPCs (see route below),
    // and for a path that names no RPC.
    const logged = httpLines(config.requestLogLevel);
    const rpc = rpcRequestHandler({
      routes,
      unrouted: (req, res, path, answer) => logged(req, res, withoutFeedSecrets(path), answer),
      observers: [
        ...(metrics ? [metrics.interceptor] : []),
        ...(tracingOn() ? [tracingInterceptor] : []),
        requestLogInterceptor(config.requestLogLevel),
        errorInterceptor,
      ],
      interceptors: [
        authInterceptor(keyring),
        pageTokensInterceptor(pageSecret),
        rateLimitInterceptor(limiter),
        // Pure checks first: a request they refuse waits for no turn.
        requestChecksInterceptor,
        tenantWritesInterceptor(turns),
        localTimesInterceptor(zones),
      ],
      maxRequestBytes: config.maxRequestBytes,
      streamStallMs: config.streamStallMs,
      shutdownSignal: shutdown.signal,
    });
    const eventStream = eventStreamHandler({
      keyring,
      limiter,
      open: openEventStream,
      zones,
      heartbeatMs: config.streamHeartbeatMs,
      stallMs: config.streamStallMs,
      stoppingSignal: stopping.signal,
      shutdownSignal: shutdown.signal,
    });
    // MCP tools call the API through this same router, in-process.
    const mcp = mcpHttpHandler({
      transport: inProcessTransport(rpc.handlers),
      maxRequestBytes: config.maxRequestBytes,
    });
    const calendarFeed = calendarFeedHandler(pool, limiter);
    const operatorConsole = consoleHandler();
    // Paths outside the RPC router: WatchEvents as Server-Sent Events, MCP,
    // the OpenAPI document with its reference page, calendar feeds, the
    // console, HTTP health and metrics.
    const route: NodeHandler = (req, res) => {
      const path = (req.url ?? "").split("?", 1)[0] ?? "";
      if (path === EVENT_STREAM_PATH) logged(req, res, path, () => eventStream(req, res));
      else if (path === MCP_PATH) mcp(req, res);
      else if (isApiDocsPath(path)) apiDocsHandler(req, res);
      else if (path.startsWith(CALENDAR_FEED_PATH))
        // The rest of the path is the feed's secret: never logged.
        logged(req, res, `${CALENDAR_FEED_PATH}…`, () => calendarFeed(req, res));
      else if (path === CONSOLE_PATH || path.startsWith(`${CONSOLE_PATH}/`))
        operatorConsole(req, res);
      else if (HEALTH_PATHS.has(path)) health(req, res);
      else if (path === METRICS_PATH && metrics && !metricsListener) metrics.handler(req, res);
      else rpc(req, res);
    };
    const cors = corsHandler(config.corsOrigins);
    // With CORS on, a preflight is answered here and never reaches a route.
    const handler: NodeHandler = cors
      ? (req, res) => cors(req as never, res as never, () => route(req, res))
      : route;
    const maintenance = startMaintenance(pool, {
      sweepIntervalMs: config.sweepIntervalMs,
      eventRetentionMs: config.eventRetentionDays * 86_400_000,
      onExpired: (count) => {
        metrics?.expired(count);
        feed.committed();
      },
    });
    const delivery = startWebhookDelivery(
      db,
      feed,
      { ...webhookSettings, onAttempt: metrics?.webhookAttempt },
      (d) => localizeDeliveryBody(d.body, d.tenantId, zones),
    );
    listener.serve(handler, {
      stallMs: config.streamStallMs,
      connections: config.maxConnections,
    });
    // Its own port: health and metrics only, for the operator's network.
    metricsListener?.serve((req, res) => {
      const path = (req.url ?? "").split("?", 1)[0] ?? "";
      if (HEALTH_PATHS.has(path)) health(req, res);
      else if (path === METRICS_PATH && metrics) metrics.handler(req, res);
      else res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
    });
    const port = listener.port;
    const metricsPort = metricsListener?.port;
    log.info("holdfast listening", { host: config.host, port, metricsPort });

    return {
      url: `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`,
      port,
      metricsPort,
      operatorKey: operatorSecret,
      pool,
      keyring,
      batches,
      async close() {
        listener.stopAccepting();
        metricsListener?.stopAccepting();
        stopping.abort();
        const drained = await listener.drained(config.shutdownGraceMs);
        shutdown.abort();
        if (!drained) {
          // Their sessions too: a cut call's statement must not go on, nor commit, without it.
          const ended = await endBusySessions(pool, healthPool).catch(() => 0);
          log.warn("calls still running after the grace period were cut", { sessions: ended });
        } else {
          // The last answers (a stream's closing error and its cursor) may
          // still be on their way out: destroying a connection now could
          // drop them, or reset it so the client throws them away.
          await listener.disconnected(CONNECTIONS_CLOSE_MS);
        }
        listener.destroy();
        metricsListener?.destroy();
        await limiter
          .close()
          .catch((err: unknown) => log.warn("rate leases not handed back", { err }));
        await feed.stop();
        await delivery.stop();
        await maintenance.stop();
        await signals.stop();
        await Promise.all([pool.end(), healthPool.end()]);
      },
    };
  } catch (err) {
    for (const l of [listener, metricsListener]) {
      l?.stopAccepting();
      l?.destroy();
    }
    await signals.stop();
    await Promise.all([pool.end(), healthPool.end()]);
    throw err;
  }
}

type NodeHandler = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** The one port every protocol is served on; see bindPort. */
export type Listener = {
  port: number;
  /**
   * Hands connections to `handler`, those that arrived while starting
   * included; `limits` replaces those bindPort was given where it says.
   */
  serve(
    handler: NodeHandler,
    limits?: Partial<Pick<ConnectionLimits, "stallMs" | "connections">>,
  ): void;
  /** Refuses new connections and asks clients of open ones to go elsewhere. */
  stopAccepting(): void;
  /** Resolves true once no call is in flight, or false after `ms`. */
  drained(ms: number): Promise<boolean>;
  /**
   * Once no call is in flight: refuses any further request (503, as nobody
   * would wait for it), closes idle connections, and resolves once every
   * connection has closed, as each does once its answers have been written,
   * or after `ms`.
   */
  disconnected(ms: number): Promise<void>;
  /** Closes every connection that is left. */
  destroy(): void;
};

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FIRST_BYTES_TIMEOUT_MS = 5_000;
/** How long a stop waits, once its calls are done, for their connections to close on their own. */
const CONNECTIONS_CLOSE_MS = 2_000;
/** What one connection may hold, and for how long. */
export type ConnectionLimits = {
  /** An HTTP/1.1 connection's keep-alive, and an HTTP/2 connection's with no call open. */
  idleMs: number;
  /** How long a request has to arrive whole: Node's requestTimeout for HTTP/1.1, ours for HTTP/2. */
  requestMs: number;
  /** Calls open at once on one HTTP/2 connection (gRPC's usual 100). */
  streams: number;
  /**
   * How long an answer may wait on a client that does not read it: a write
   * not yet taken (or the end, once given) is cut off after this long
   * (streams' own stall limit, twice HOLDFAST_STREAM_MAX_LAG_MS).
   */
  stallMs: number;
  /**
   * Connections open at once on the port (HOLDFAST_MAX_CONNECTIONS); more
   * are closed as they arrive, so what requests still arriving hold is
   * bounded.
   */
  connections: number;
};

const CONNECTION_LIMITS: ConnectionLimits = {
  idleMs: 65_000,
  requestMs: 300_000,
  streams: 100,
  stallMs: 60_000,
  connections: 1000,
};

/**
 * Binds HOST:PORT before anything else is done, so that a port in use
 * stops a start before it has created anything. Connections that arrive
 * before `serve` wait, unread.
 *
 * One port serves HTTP/1.1 and HTTP/2 without TLS (h2c with prior
 * knowledge). Plain HTTP/2 has no ALPN to choose with, so the first bytes
 * decide: the HTTP/2 connection preface goes to the h2c server, anything
 * else to the HTTP/1.1 server.
 */
export async function bindPort(
  host: string,
  port: number,
  what = "PORT",
  bound: ConnectionLimits = CONNECTION_LIMITS,
): Promise<Listener> {
  let limits = bound;
  let handler: NodeHandler | undefined;
  const waiting: Socket[] = [];
  let accepting = true;
  // Set once the stop's calls are done (disconnected): a request then is
  // one nobody waits for, and is refused.
  let closing = false;
  const sockets = new Set<Socket>();
  /** Connections whose first bytes have not yet said which protocol they speak. */
  const unsniffed = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  const inFlight = new Set<ServerResponse | Http2ServerResponse>();
  let onIdle: (() => void) | undefined;
  let onDisconnected: (() => void) | undefined;

  const http1 = createHttp1Server(
    { keepAliveTimeout: limits.idleMs, requestTimeout: limits.requestMs },
    (req, res) => track(req, res),
  );
  // What Node's parser refuses is answered as a Connect JSON error with a reason.
  http1.on("clientError", (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (err.code !== "ECONNRESET" && socket.writable) socket.end(rawHttpError(err));
    else socket.destroy();
  });
  // Node checks headersTimeout and requestTimeout (slow or stalled
  // requests) from a timer it starts when a server starts listening; this
  // one never listens itself, so start it.
  http1.emit("listening");
  const http2 = createHttp2Server(
    { settings: { maxConcurrentStreams: limits.streams } },
    (req, res) => track(req, res),
  );
  http2.on("session", (session: Http2Session) => {
    sessions.add(session);
    // A session with no call open for the idle time is closed (a call open
    // but silent, e.g. WatchEvents between events, keeps it).
    let open = 0;
    let idle: NodeJS.Timeout | undefined;
    const idleFromNow = () => {
      idle = setTimeout(() => session.close(), limits.idleMs);
      idle.unref();
    };
    idleFromNow();
    session.on("stream", (stream) => {
      open++;
      clearTimeout(idle);
      stream.once("close", () => {
        if (--open === 0) idleFromNow();
      });
    });
    session.once("close", () => {
      clearTimeout(idle);
      sessions.delete(session);
    });
    if (!accepting) session.close();
  });

  function track(
    req: IncomingMessage | Http2ServerRequest,
    res: ServerResponse | Http2ServerResponse,
  ): void {
    if (closing) {
      // After the stop's drain: not waited for, so not begun.
      if (res instanceof ServerResponse) res.setHeader("connection", "close");
      res.writeHead(503, { "content-type": "application/json" });
      res.end(
        '{"code":"unavailable","message":"the server is stopping; send the request to another instance"}',
      );
      return;
    }
    inFlight.add(res);
    // HTTP/2 has no requestTimeout of Node's: a request whose body has not
    // all arrived in time is cancelled, as HTTP/1.1's would be.
    let late: NodeJS.Timeout | undefined;
    if (req instanceof Http2ServerRequest) {
      late = setTimeout(() => req.stream.close(h2constants.NGHTTP2_CANCEL), limits.requestMs);
      late.unref();
      req.once("end", () => clearTimeout(late));
    }
    res.once("close", () => {
      clearTimeout(late);
      inFlight.delete(res);
      if (inFlight.size === 0) onIdle?.();
    });
    boundWriteOut(res, limits.stallMs);
    // An HTTP/1.1 connection kept alive would bring further calls while
    // stopping: this answer is its last.
    if (!accepting && res instanceof ServerResponse) res.setHeader("connection", "close");
    handler?.(req, res);
  }

  function dispatch(socket: Socket): void {
    // A client sends its first bytes at once; a connection that stays
    // silent (or stops inside the HTTP/2 preface) is not kept open.
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    let seen = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      seen = Buffer.concat([seen, chunk]);
      const n = Math.min(seen.length, H2_PREFACE.length);
      const couldBeH2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
      if (couldBeH2 && seen.length < H2_PREFACE.length) return;
      socket.off("data", sniff);
      unsniffed.delete(socket);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(seen);
      if (couldBeH2) {
        // The session reads from the socket's handle, and first (on the next
        // tick, before any further read) what the paused socket holds: the
        // bytes read here. The socket itself, not a JavaScript stream over
        // it, so HTTP/2 frames go straight between the handle and nghttp2.
        http2.emit("connection", socket);
      } else {
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", sniff);
    socket.resume();
  }

  const net: NetServer = createNetServer({ noDelay: true, pauseOnConnect: true }, (socket) => {
    sockets.add(socket);
    unsniffed.add(socket);
    socket.once("close", () => {
      sockets.delete(socket);
      unsniffed.delete(socket);
      if (sockets.size === 0) onDisconnected?.();
    });
    socket.on("error", () => socket.destroy());
    if (handler) dispatch(socket);
    else waiting.push(socket);
  });
  net.maxConnections = limits.connections;
  // Node closes a connection beyond the cap as it arrives; say so now and
  // then (not once each: a flood would flood the log too).
  let refused = 0;
  net.on("drop", () => {
    if (refused++ > 0) return;
    setTimeout(() => {
      log.warn("connections refused: HOLDFAST_MAX_CONNECTIONS are open", {
        max: limits.connections,
        refused,
      });
      refused = 0;
    }, 10_000).unref();
  });

  await new Promise<void>((resolve, reject) => {
    net.once("error", (err: NodeJS.ErrnoException) => {
      const where = `${host.includes(":") ? `[${host}]` : host}:${port}`;
      if (err.code === "EADDRINUSE") {
        reject(
          new StartError(
            `${where} is already in use (another Holdfast, or another program, listens there): stop it or choose another ${what}`,
          ),
        );
      } else if (err.code === "EACCES" || err.code === "EADDRNOTAVAIL") {
        reject(
          new StartError(`cannot listen on ${where} (${err.code}): choose another HOST or ${what}`),
        );
      } else reject(err);
    });
    net.listen(port, host, () => resolve());
  });
  const address = net.address();

  return {
    port: typeof address === "object" && address ? address.port : port,
    serve(h, replaced) {
      limits = { ...limits, ...replaced };
      net.maxConnections = limits.connections;
      handler = h;
      for (const socket of waiting.splice(0)) dispatch(socket);
    },
    stopAccepting() {
      if (!accepting) return;
      accepting = false;
      net.close();
      // Idle connections go now; HTTP/2 sessions get GOAWAY and finish
      // their in-flight calls; HTTP/1.1 answers still to come carry
      // `Connection: close`.
      http1.closeIdleConnections();
      for (const session of sessions) session.close();
      for (const res of inFlight) {
        if (res instanceof ServerResponse && !res.headersSent) res.setHeader("connection", "close");
      }
      for (const socket of waiting.splice(0)) socket.destroy();
    },
    drained(ms) {
      if (inFlight.size === 0) return Promise.resolve(true);
      return new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), ms);
        onIdle = () => {
          clearTimeout(timer);
          resolve(true);
        };
      });
    },
    disconnected(ms) {
      closing = true;
      // What is idle now goes, a stream's connection too (its answer began
      // before the stop, so it did not say `Connection: close`), and so does
      // one that has not yet said what it speaks.
      http1.closeIdleConnections();
      for (const socket of unsniffed) socket.destroy();
      if (sockets.size === 0) return Promise.resolve();
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, ms);
        onDisconnected = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    },
    destroy() {
      for (const session of sessions) session.destroy();
      for (const socket of sockets) socket.destroy();
    },
  };
}

/**
 * Gives an answer `ms` to be taken by its client whenever it holds bytes the
 * client has not read: from a write that did not flush (Node asks for
 * "drain"), or from its end, until it drains, finishes or closes. Past
 * that, it is cut off (HTTP/1.1: the connection is closed; HTTP/2: the
 * stream is reset with ENHANCE_YOUR_CALM) and what it held is freed.
 * Without this a client that sends a call and never reads its answer keeps
 * that answer (up to a page of events, 2 MB) in server memory as long as it
 * keeps the connection open; streams have the same limit of their own.
 *
 * connect-node waits for a write's "drain" before it ends the answer, and a
 * response closed under that wait emits neither "drain" nor "error": the
 * call would stay suspended for good. The error fails the write, as for a
 * stream cut off (see cutOffWhenStalled in rpc/http.ts).
 */
function boundWriteOut(res: ServerResponse | Http2ServerResponse, ms: number): void {
  let timer: NodeJS.Timeout | undefined;
  let waiting = false;
  let closed = false;
  const start = () => {
    if (closed || timer) return;
    timer = setTimeout(() => {
      if (!closed) cutOff(res);
    }, ms);
    timer.unref();
  };
  const stop = () => {
    clearTimeout(timer);
    timer = undefined;
  };
  res.on("drain", () => {
    waiting = false;
    if (!res.writableEnded) stop();
  });
  // HTTP/1.1: the end is in the socket's hands. (An HTTP/2 answer's
  // "finish" only comes with its "close".)
  res.once("finish", () => {
    closed = true;
    stop();
  });
  res.once("close", () => {
    closed = true;
    stop();
    if (waiting && res.listenerCount("error") > 0) {
      res.emit("error", new Error("the answer was cut off: its client did not read it"));
    }
  });
  const write = res.write.bind(res) as (...args: unknown[]) => boolean;
  (res as { write: (...args: unknown[]) => boolean }).write = (...args) => {
    const flushed = write(...args);
    if (!flushed) {
      waiting = true;
      start();
    }
    return flushed;
  };
  const end = res.end.bind(res) as (...args: unknown[]) => typeof res;
  (res as { end: (...args: unknown[]) => typeof res }).end = (...args) => {
    const ended = end(...args);
    stop();
    start();
    return ended;
  };
}

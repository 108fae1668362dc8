import { setMaxListeners } from "node:events";
import { createServer as createHttp1Server } from "node:http";
import { createServer as createHttp2Server, type Http2Session } from "node:http2";
import { createServer as createNetServer, type Server as NetServer, type Socket } from "node:net";
import { Duplex } from "node:stream";
import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../gen/health/v1/health_pb.js";
import { AvailabilityService } from "../gen/holdfast/v1/availability_pb.js";
import { BookingService } from "../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../gen/holdfast/v1/tenant_pb.js";
import { WebhookService } from "../gen/holdfast/v1/webhook_pb.js";
import type { Config } from "./config.js";
import { CatalogCache } from "./db/catalog-cache.js";
import { startMaintenance } from "./db/maintenance.js";
import { migrate, readMigrations } from "./db/migrate.js";
import { createPool, type Pool, poolDb } from "./db/pool.js";
import { sharedSecret } from "./db/secrets.js";
import { Signals } from "./db/signals.js";
import { bootstrapDefaultTenant } from "./db/tenants.js";
import { EventFeed } from "./events/feed.js";
import { startWebhookDelivery } from "./events/webhooks.js";
import { log, setLogLevel } from "./log.js";
import { authInterceptor, Keyring } from "./rpc/auth.js";
import { availabilityService } from "./rpc/availability-service.js";
import { bookingService } from "./rpc/booking-service.js";
import { catalogService } from "./rpc/catalog-service.js";
import { errorInterceptor } from "./rpc/errors.js";
import { eventService, eventStreams } from "./rpc/event-service.js";
import { EVENT_STREAM_PATH, eventStreamHandler } from "./rpc/event-stream.js";
import { registerHealth } from "./rpc/health.js";
import { rpcRequestHandler } from "./rpc/http.js";
import { idempotent } from "./rpc/idempotency.js";
import { keyService } from "./rpc/key-service.js";
import { localizeDeliveryBody, localTimesInterceptor, zonesOf } from "./rpc/local-times.js";
import { registerReflection } from "./rpc/reflection.js";
import { resourceService } from "./rpc/resource-service.js";
import { SlotFinder } from "./rpc/slots.js";
import { tenantService } from "./rpc/tenant-service.js";
import { webhookService } from "./rpc/webhook-service.js";

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
];

export type Holdfast = {
  /** http://host:port, for every protocol. */
  url: string;
  port: number;
  /** Set when this start created tenant `default` and its operator key: print it once. */
  operatorKey: string | undefined;
  pool: Pool;
  close(): Promise<void>;
};

/**
 * Starts one Holdfast instance on `databaseUrl`: applies migrations, makes
 * sure tenant `default` exists, opens the notification connection, and
 * serves every protocol on one port. Several instances may share a database.
 */
export async function startHoldfast(config: Config, databaseUrl: string): Promise<Holdfast> {
  setLogLevel(config.logLevel);
  const pool = createPool(databaseUrl, config.dbPoolSize);
  const signals = new Signals(databaseUrl);
  const shutdown = new AbortController();
  // Every request in flight listens on it, so the default cap of 10 would
  // warn about a leak under ordinary concurrency.
  setMaxListeners(0, shutdown.signal);
  try {
    await migrate(pool);
    const schemaVersion = Math.max(...(await readMigrations()).map((m) => m.version));
    const db = poolDb(pool);
    const { tenantId, operatorSecret } = await bootstrapDefaultTenant(
      db,
      config.adminKey === undefined,
    );
    await signals.start();
    const keyring = new Keyring(pool, tenantId, config.adminKey, signals);
    const catalogCache = new CatalogCache(pool, signals);
    const slotFinder = new SlotFinder(pool, catalogCache, await sharedSecret(pool, "slot-ids"));
    const feed = new EventFeed(pool, signals, config.eventPollMs);
    const zones = zonesOf(catalogCache);
    const openEventStream = eventStreams(pool, feed, {
      buffer: config.streamBuffer,
      maxLagMs: config.streamMaxLagMs,
    });
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
    };

    const routes = (router: ConnectRouter) => {
      router.service(TenantService, idempotent(TenantService, tenantService(db), pool));
      router.service(KeyService, idempotent(KeyService, keyService(db, keyring), pool));
      router.service(ResourceService, idempotent(ResourceService, resourceService(db), pool));
      router.service(CatalogService, idempotent(CatalogService, catalogService(db), pool));
      router.service(AvailabilityService, availabilityService(catalogCache, slotFinder));
      router.service(EventService, eventService(pool, openEventStream));
      router.service(
        WebhookService,
        idempotent(WebhookService, webhookService(db, feed, webhookSettings), pool),
      );
      router.service(
        BookingService,
        idempotent(BookingService, bookingService(db, catalogCache, slotFinder, feed), pool, {
          storesOwnOutcomes: true,
        }),
      );
      registerHealth(
        router,
        pool,
        API_SERVICES.map((s) => s.typeName),
        schemaVersion,
      );
      registerReflection(router, [...API_SERVICES, Health]);
    };
    const rpc = rpcRequestHandler({
      routes,
      interceptors: [errorInterceptor, authInterceptor(keyring), localTimesInterceptor(zones)],
      maxRequestBytes: config.maxRequestBytes,
      shutdownSignal: shutdown.signal,
    });
    const eventStream = eventStreamHandler({
      keyring,
      open: openEventStream,
      zones,
      heartbeatMs: config.streamHeartbeatMs,
      maxLagMs: config.streamMaxLagMs,
      shutdownSignal: shutdown.signal,
    });
    // One path outside the RPC router: WatchEvents as Server-Sent Events.
    const handler: NodeHandler = (req, res) =>
      (req.url ?? "").split("?", 1)[0] === EVENT_STREAM_PATH
        ? eventStream(req, res)
        : rpc(req, res);
    const maintenance = startMaintenance(pool, {
      sweepIntervalMs: config.sweepIntervalMs,
      eventRetentionMs: config.eventRetentionDays * 86_400_000,
      onExpired: () => feed.committed(),
    });
    const delivery = startWebhookDelivery(db, feed, webhookSettings, (d) =>
      localizeDeliveryBody(d.body, d.tenantId, zones),
    );
    const listener = await listenOnOnePort(handler, config.host, config.port);
    const port = listener.port;
    log.info("holdfast listening", { host: config.host, port });

    return {
      url: `http://${config.host.includes(":") ? `[${config.host}]` : config.host}:${port}`,
      port,
      operatorKey: operatorSecret,
      pool,
      async close() {
        shutdown.abort();
        await feed.stop();
        await listener.close();
        await delivery.stop();
        await maintenance.stop();
        await signals.stop();
        await pool.end();
      },
    };
  } catch (err) {
    await signals.stop();
    await pool.end();
    throw err;
  }
}

type NodeHandler = Parameters<typeof createHttp1Server>[1] &
  Parameters<typeof createHttp2Server>[1];

const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const FIRST_BYTES_TIMEOUT_MS = 5_000;

/**
 * One port for HTTP/1.1 and HTTP/2 without TLS (h2c with prior knowledge).
 * Plain HTTP/2 has no ALPN to choose with, so the first bytes decide: the
 * HTTP/2 connection preface goes to the h2c server, anything else to the
 * HTTP/1.1 server.
 */
async function listenOnOnePort(
  handler: NodeHandler,
  host: string,
  port: number,
): Promise<{ port: number; close(): Promise<void> }> {
  const http1 = createHttp1Server({ keepAliveTimeout: 65_000 }, handler);
  // Node checks headersTimeout and requestTimeout (slow or stalled
  // requests) from a timer it starts when a server starts listening; this
  // one never listens itself, so start it.
  http1.emit("listening");
  const http2 = createHttp2Server({}, handler);
  const sockets = new Set<Socket>();
  const sessions = new Set<Http2Session>();
  http2.on("session", (session: Http2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });

  const net: NetServer = createNetServer({ noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
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
      socket.setTimeout(0);
      socket.pause();
      if (couldBeH2) {
        // http2 reads from the socket's handle, past anything unshifted:
        // give it a stream that replays the bytes already read.
        http2.emit("connection", new ReplayedSocket(socket, seen));
      } else {
        socket.unshift(seen);
        http1.emit("connection", socket);
        socket.resume();
      }
    };
    socket.on("data", sniff);
  });

  await new Promise<void>((resolve, reject) => {
    net.once("error", reject);
    net.listen(port, host, () => resolve());
  });
  const address = net.address();
  return {
    port: typeof address === "object" && address ? address.port : port,
    async close() {
      await new Promise<void>((resolve) => {
        net.close(() => resolve());
        // Idle connections go now; HTTP/2 sessions get GOAWAY and finish
        // their in-flight calls. Whatever is left after a grace period
        // (long-lived streams) is cut.
        http1.closeIdleConnections();
        for (const session of sessions) session.close();
        setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 3_000).unref();
      });
    },
  };
}

/** A socket whose first bytes are replayed before the rest of its data. */
class ReplayedSocket extends Duplex {
  constructor(
    private readonly socket: Socket,
    head: Buffer,
  ) {
    super();
    this.push(head);
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause();
    });
    socket.on("end", () => this.push(null));
    socket.on("close", () => this.destroy());
    socket.on("error", (err) => this.destroy(err));
    socket.resume();
  }

  get remoteAddress() {
    return this.socket.remoteAddress;
  }

  get remotePort() {
    return this.socket.remotePort;
  }

  setNoDelay(noDelay?: boolean) {
    this.socket.setNoDelay(noDelay);
    return this;
  }

  setKeepAlive(enable?: boolean, delay?: number) {
    this.socket.setKeepAlive(enable, delay);
    return this;
  }

  setTimeout(ms: number, cb?: () => void) {
    this.socket.setTimeout(ms, cb);
    return this;
  }

  override _read() {
    this.socket.resume();
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, done: (err?: Error | null) => void) {
    this.socket.write(chunk, encoding, done);
  }

  // HTTP/2 writes several frames at a time (headers, data, trailers): send
  // them as one write instead of one system call each.
  override _writev(chunks: { chunk: Buffer }[], done: (err?: Error | null) => void) {
    this.socket.write(Buffer.concat(chunks.map((c) => c.chunk)), done);
  }

  override _final(done: (err?: Error | null) => void) {
    this.socket.end(done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void) {
    this.socket.destroy(err ?? undefined);
    done(err);
  }
}

import { z } from "zod";
import { MAX_RATE, type RateLimit } from "./domain/rate-limit.js";
import { parseRetrySchedule } from "./domain/webhooks.js";
import "./zod-messages.js";

/**
 * Everything the server reads from its environment, validated in one place.
 * A bad value stops start-up with a message that names the variable.
 */
const positiveInt = z.coerce.number().int().min(1);

const boolean = z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1");

/** 32 bytes, as base64 or 64 hex digits. */
const key32 = z.string().transform((text, ctx) => {
  const bytes = /^[0-9a-f]{64}$/i.test(text)
    ? Buffer.from(text, "hex")
    : Buffer.from(text, "base64");
  if (bytes.length !== 32) {
    ctx.addIssue({ code: "custom", message: "must be 32 bytes, as base64 or 64 hex digits" });
    return z.NEVER;
  }
  return bytes;
});

/** An origin as browsers send it: scheme, host and optional port, nothing more. */
function isOrigin(text: string): boolean {
  if (!URL.canParse(text)) return false;
  const url = new URL(text);
  return (url.protocol === "http:" || url.protocol === "https:") && url.origin === text;
}

const schema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65535).default(8080),
    HOST: z.string().min(1).default("127.0.0.1"),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, "must be a postgres:// or postgresql:// URL")
      .optional(),
    HOLDFAST_DATA_DIR: z.string().min(1).default(".data"),
    HOLDFAST_ADMIN_KEY: z
      .string()
      .min(16, "must be at least 16 characters")
      .max(256)
      .regex(/^[\x21-\x7e]+$/, "must be printable ASCII without spaces")
      .optional(),
    HOLDFAST_DB_POOL_SIZE: positiveInt.max(500).default(24),
    HOLDFAST_WRITE_LANES: positiveInt.max(500).default(4),
    HOLDFAST_DB_STATEMENT_TIMEOUT_MS: positiveInt.max(3_600_000).default(30_000),
    HOLDFAST_DB_LOCK_TIMEOUT_MS: positiveInt.max(3_600_000).default(5_000),
    HOLDFAST_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS: positiveInt.max(3_600_000).default(10_000),
    HOLDFAST_KEY_CACHE_SIZE: positiveInt.max(1_000_000).default(10_000),
    HOLDFAST_KEY_CACHE_TTL_MS: positiveInt.max(3_600_000).default(30_000),
    HOLDFAST_SHUTDOWN_GRACE_MS: positiveInt.max(600_000).default(5_000),
    HOLDFAST_MAX_REQUEST_BYTES: positiveInt.max(16 * 1024 * 1024).default(256 * 1024),
    HOLDFAST_MAX_CONNECTIONS: positiveInt.max(1_000_000).default(1000),
    HOLDFAST_METRICS: boolean.default(true),
    HOLDFAST_CORS_ORIGINS: z
      .string()
      .default("")
      .transform((text, ctx) => {
        const origins = text
          .split(",")
          .map((o) => o.trim())
          .filter((o) => o !== "");
        const bad = origins.find((o) => o !== "*" && !isOrigin(o));
        if (bad !== undefined || origins.length > 100) {
          ctx.addIssue({
            code: "custom",
            message: `must be "*" or a comma-separated list of up to 100 origins such as "https://app.example.com"${bad === undefined ? "" : `; "${bad}" is not an origin`}`,
          });
          return z.NEVER;
        }
        return origins;
      }),
    HOLDFAST_METRICS_PORT: z.coerce.number().int().min(0).max(65535).optional(),
    HOLDFAST_REQUEST_LOG_LEVEL: z.enum(["info", "debug"]).default("info"),
    HOLDFAST_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
    HOLDFAST_SWEEP_INTERVAL_MS: positiveInt.max(60_000).default(500),
    HOLDFAST_SECRET_KEY: key32.optional(),
    HOLDFAST_EVENT_RETENTION_DAYS: positiveInt.max(3650).default(7),
    HOLDFAST_STREAM_BUFFER: positiveInt.max(1_000_000).default(10_000),
    HOLDFAST_EVENT_POLL_MS: positiveInt.max(600_000).default(1_000),
    HOLDFAST_STREAM_MAX_LAG_MS: positiveInt.max(3_600_000).default(30_000),
    HOLDFAST_STREAM_HEARTBEAT_MS: positiveInt.max(600_000).default(15_000),
    HOLDFAST_STREAMS_PER_TENANT: positiveInt.max(100_000).default(100),
    HOLDFAST_STREAMS_MAX: positiveInt.max(1_000_000).default(1_000),
    HOLDFAST_WEBHOOK_ALLOW_PRIVATE: boolean.default(false),
    HOLDFAST_WEBHOOK_TIMEOUT_MS: positiveInt.max(120_000).default(10_000),
    HOLDFAST_WEBHOOK_RETRY_SCHEDULE: z
      .string()
      .default("5s,30s,2m,10m,30m,1h,2h,4h,8h,8h")
      .transform((text, ctx) => {
        const schedule = parseRetrySchedule(text);
        if (!schedule) {
          ctx.addIssue({
            code: "custom",
            message:
              'must be a comma-separated list of up to 100 durations of at most 7d, such as "5s,1m,1h"',
          });
          return z.NEVER;
        }
        return schedule;
      }),
    HOLDFAST_WEBHOOK_DISABLE_AFTER: positiveInt.max(10_000).default(25),
    HOLDFAST_TENANT_RATE_PER_SECOND: positiveInt.max(MAX_RATE).default(200),
    HOLDFAST_TENANT_RATE_BURST: positiveInt.max(MAX_RATE).default(400),
    HOLDFAST_KEY_RATE_PER_SECOND: positiveInt.max(MAX_RATE).default(50),
    HOLDFAST_KEY_RATE_BURST: positiveInt.max(MAX_RATE).default(100),
  })
  // A lock wait is part of a statement: a lock timeout above the statement
  // timeout would never fire, and lock waits would be reported as slow statements.
  .refine((c) => c.HOLDFAST_DB_LOCK_TIMEOUT_MS <= c.HOLDFAST_DB_STATEMENT_TIMEOUT_MS, {
    path: ["HOLDFAST_DB_LOCK_TIMEOUT_MS"],
    message: "must not exceed HOLDFAST_DB_STATEMENT_TIMEOUT_MS",
  })
  .refine((c) => c.HOLDFAST_METRICS_PORT === undefined || c.HOLDFAST_METRICS, {
    path: ["HOLDFAST_METRICS_PORT"],
    message: "is set but HOLDFAST_METRICS is false: unset one of them",
  })
  .refine((c) => !c.HOLDFAST_METRICS_PORT || c.HOLDFAST_METRICS_PORT !== c.PORT, {
    path: ["HOLDFAST_METRICS_PORT"],
    message: "must differ from PORT (leave it unset to serve /metrics on PORT)",
  });

export type Config = {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  dataDir: string;
  adminKey: string | undefined;
  dbPoolSize: number;
  /** Single-resource creates of one tenant written at once; more wait and go as one batch. */
  writeLanes: number;
  /** Limits Postgres enforces on every pool connection (see docs/operations.md). */
  dbTimeouts: DbTimeouts;
  /** The cache of valid API keys: how many, and how long each is trusted without the database. */
  keyCache: { size: number; ttlMs: number };
  /** How long a stop waits for calls in flight before it cuts them. */
  shutdownGraceMs: number;
  maxRequestBytes: number;
  /**
   * Connections open at once on the port; more are closed as they arrive,
   * so what requests still arriving hold is bounded (at most this many
   * times maxRequestBytes).
   */
  maxConnections: number;
  logLevel: "debug" | "info" | "warn" | "error";
  /** The level of the one line logged per RPC. */
  requestLogLevel: "info" | "debug";
  /** Prometheus metrics at GET /metrics and their per-call bookkeeping. */
  metrics: boolean;
  /** Origins whose browser apps may call the API (CORS); empty: none, "*": any. */
  corsOrigins: readonly string[];
  /** Serve /metrics (and /healthz, /readyz) on this port of HOST instead of PORT (0: any free one). */
  metricsPort: number | undefined;
  sweepIntervalMs: number;
  /** Seals webhook signing secrets at rest; without it a key kept in the database is used. */
  secretKey: Buffer | undefined;
  eventRetentionDays: number;
  streamBuffer: number;
  streamMaxLagMs: number;
  /**
   * How long a stream's write may wait for a client that does not read
   * before the stream is cut off: twice the lag, so a client that pauses
   * and then reads again gets CONSUMER_TOO_SLOW with its cursor first.
   */
  streamStallMs: number;
  /**
   * After this long without a message, an event stream sends its cursor if
   * that has moved (a heartbeat); an idle Server-Sent Events stream also sends
   * a comment this often, so proxies keep it open.
   */
  streamHeartbeatMs: number;
  /** Event streams (WatchEvents and Server-Sent Events) a tenant may have open on one instance. */
  streamsPerTenant: number;
  /** Event streams one instance serves at once, all tenants together. */
  streamsMax: number;
  /** How often the outbox is read without a notification, as a safety net. */
  eventPollMs: number;
  webhookAllowPrivate: boolean;
  webhookTimeoutMs: number;
  webhookRetryScheduleMs: number[];
  webhookDisableAfter: number;
  /** Rate limits for tenants and keys without their own (see docs/limits.md). */
  rateLimits: { tenant: RateLimit; key: RateLimit };
};

export type DbTimeouts = {
  statementMs: number;
  lockMs: number;
  idleInTransactionMs: number;
};

export class ConfigError extends Error {}

/**
 * Start-up cannot go on for a reason the operator can fix (the port or the
 * data directory is taken): printed as one plain line, without a stack.
 */
export class StartError extends Error {}

/** Reads the configuration from `env`; throws ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // Empty strings count as unset, as in most shells' `VAR= cmd`.
  const present = Object.fromEntries(
    Object.entries(env).filter(([, v]) => v !== undefined && v !== ""),
  );
  const parsed = schema.safeParse(present);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join(".")}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join("\n")}`);
  }
  const c = parsed.data;
  return {
    port: c.PORT,
    host: c.HOST,
    databaseUrl: c.DATABASE_URL,
    dataDir: c.HOLDFAST_DATA_DIR,
    adminKey: c.HOLDFAST_ADMIN_KEY,
    dbPoolSize: c.HOLDFAST_DB_POOL_SIZE,
    writeLanes: c.HOLDFAST_WRITE_LANES,
    dbTimeouts: {
      statementMs: c.HOLDFAST_DB_STATEMENT_TIMEOUT_MS,
      lockMs: c.HOLDFAST_DB_LOCK_TIMEOUT_MS,
      idleInTransactionMs: c.HOLDFAST_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS,
    },
    keyCache: { size: c.HOLDFAST_KEY_CACHE_SIZE, ttlMs: c.HOLDFAST_KEY_CACHE_TTL_MS },
    shutdownGraceMs: c.HOLDFAST_SHUTDOWN_GRACE_MS,
    maxRequestBytes: c.HOLDFAST_MAX_REQUEST_BYTES,
    maxConnections: c.HOLDFAST_MAX_CONNECTIONS,
    logLevel: c.HOLDFAST_LOG_LEVEL,
    metrics: c.HOLDFAST_METRICS,
    corsOrigins: c.HOLDFAST_CORS_ORIGINS,
    metricsPort: c.HOLDFAST_METRICS_PORT,
    requestLogLevel: c.HOLDFAST_REQUEST_LOG_LEVEL,
    sweepIntervalMs: c.HOLDFAST_SWEEP_INTERVAL_MS,
    secretKey: c.HOLDFAST_SECRET_KEY,
    eventRetentionDays: c.HOLDFAST_EVENT_RETENTION_DAYS,
    streamBuffer: c.HOLDFAST_STREAM_BUFFER,
    streamMaxLagMs: c.HOLDFAST_STREAM_MAX_LAG_MS,
    streamStallMs: 2 * c.HOLDFAST_STREAM_MAX_LAG_MS,
    streamHeartbeatMs: c.HOLDFAST_STREAM_HEARTBEAT_MS,
    streamsPerTenant: c.HOLDFAST_STREAMS_PER_TENANT,
    streamsMax: c.HOLDFAST_STREAMS_MAX,
    eventPollMs: c.HOLDFAST_EVENT_POLL_MS,
    webhookAllowPrivate: c.HOLDFAST_WEBHOOK_ALLOW_PRIVATE,
    webhookTimeoutMs: c.HOLDFAST_WEBHOOK_TIMEOUT_MS,
    webhookRetryScheduleMs: c.HOLDFAST_WEBHOOK_RETRY_SCHEDULE,
    webhookDisableAfter: c.HOLDFAST_WEBHOOK_DISABLE_AFTER,
    rateLimits: {
      tenant: { perSecond: c.HOLDFAST_TENANT_RATE_PER_SECOND, burst: c.HOLDFAST_TENANT_RATE_BURST },
      key: { perSecond: c.HOLDFAST_KEY_RATE_PER_SECOND, burst: c.HOLDFAST_KEY_RATE_BURST },
    },
  };
}

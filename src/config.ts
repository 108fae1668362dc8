import { z } from "zod";

/**
 * Everything the server reads from its environment, validated in one place.
 * A bad value stops start-up with a message that names the variable.
 */
const positiveInt = z.coerce.number().int().positive();

const schema = z.object({
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
  HOLDFAST_MAX_REQUEST_BYTES: positiveInt.max(16 * 1024 * 1024).default(256 * 1024),
  HOLDFAST_LOG_LEVEL: z.enum(["debug", "info", "warn", "error"]).default("info"),
  HOLDFAST_SWEEP_INTERVAL_MS: positiveInt.max(60_000).default(500),
});

export type Config = {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  dataDir: string;
  adminKey: string | undefined;
  dbPoolSize: number;
  maxRequestBytes: number;
  logLevel: "debug" | "info" | "warn" | "error";
  sweepIntervalMs: number;
};

export class ConfigError extends Error {}

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
    maxRequestBytes: c.HOLDFAST_MAX_REQUEST_BYTES,
    logLevel: c.HOLDFAST_LOG_LEVEL,
    sweepIntervalMs: c.HOLDFAST_SWEEP_INTERVAL_MS,
  };
}

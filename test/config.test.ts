import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.js";

describe("loadConfig", () => {
  it("has working defaults for a fresh machine", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      port: 8080,
      host: "127.0.0.1",
      databaseUrl: undefined,
      dataDir: ".data",
      adminKey: undefined,
    });
  });

  it("limits tenants and keys by default, the tenant above the key", () => {
    expect(loadConfig({}).rateLimits).toEqual({
      tenant: { perSecond: 200, burst: 400 },
      key: { perSecond: 50, burst: 100 },
    });
    expect(
      loadConfig({ HOLDFAST_KEY_RATE_PER_SECOND: "5", HOLDFAST_KEY_RATE_BURST: "7" }).rateLimits
        .key,
    ).toEqual({ perSecond: 5, burst: 7 });
  });

  it("treats empty variables as unset", () => {
    expect(loadConfig({ PORT: "", DATABASE_URL: "" })).toMatchObject({
      port: 8080,
      databaseUrl: undefined,
    });
  });

  it("reads and coerces values", () => {
    const c = loadConfig({
      PORT: "9000",
      HOST: "0.0.0.0",
      DATABASE_URL: "postgresql://u@h/db",
      HOLDFAST_DB_POOL_SIZE: "8",
      HOLDFAST_WRITE_LANES: "2",
    });
    expect(c).toMatchObject({
      port: 9000,
      host: "0.0.0.0",
      databaseUrl: "postgresql://u@h/db",
      dbPoolSize: 8,
      writeLanes: 2,
    });
  });

  it.each([
    ["PORT", "http"],
    ["PORT", "70000"],
    ["DATABASE_URL", "mysql://x"],
    ["HOLDFAST_ADMIN_KEY", "short"],
    ["HOLDFAST_ADMIN_KEY", "has a space in it okay"],
    ["HOLDFAST_DB_POOL_SIZE", "0"],
    ["HOLDFAST_WRITE_LANES", "0"],
    ["HOLDFAST_WRITE_LANES", "1.5"],
    ["HOLDFAST_LOG_LEVEL", "loud"],
    ["HOLDFAST_DB_LOCK_TIMEOUT_MS", "0"],
    ["HOLDFAST_DB_STATEMENT_TIMEOUT_MS", "-1"],
    ["HOLDFAST_DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", "soon"],
    ["HOLDFAST_SHUTDOWN_GRACE_MS", "0"],
    ["HOLDFAST_KEY_CACHE_SIZE", "0"],
    ["HOLDFAST_KEY_CACHE_TTL_MS", "forever"],
    ["HOLDFAST_TENANT_RATE_PER_SECOND", "0"],
    ["HOLDFAST_TENANT_RATE_BURST", "-3"],
    ["HOLDFAST_KEY_RATE_PER_SECOND", "2.5"],
    ["HOLDFAST_KEY_RATE_BURST", "1000001"],
    ["HOLDFAST_CORS_ORIGINS", "app.example.com"],
    ["HOLDFAST_CORS_ORIGINS", "https://app.example.com/"],
    ["HOLDFAST_CORS_ORIGINS", "https://ok.example,ftp://files.example"],
    ["HOLDFAST_METRICS_PORT", "65536"],
    ["HOLDFAST_METRICS_PORT", "metrics"],
    ["HOLDFAST_METRICS_PORT", "8080"],
  ])("refuses %s=%s, naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });

  it.each([
    ["PORT", "abc", "PORT: must be a number"],
    ["PORT", "65536", "PORT: must be at most 65535"],
    ["HOLDFAST_TENANT_RATE_PER_SECOND", "0", "HOLDFAST_TENANT_RATE_PER_SECOND: must be at least 1"],
    ["HOLDFAST_KEY_RATE_PER_SECOND", "2.5", "HOLDFAST_KEY_RATE_PER_SECOND: must be a whole number"],
    [
      "HOLDFAST_LOG_LEVEL",
      "loud",
      'HOLDFAST_LOG_LEVEL: must be one of "debug", "info", "warn" or "error"',
    ],
  ])("says what %s=%s must be, in words", (name, value, message) => {
    expect(() => loadConfig({ [name]: value })).toThrow(message);
  });

  it("reads CORS origins as a list, off when unset", () => {
    expect(loadConfig({}).corsOrigins).toEqual([]);
    expect(
      loadConfig({ HOLDFAST_CORS_ORIGINS: " https://a.example, http://localhost:5173 " })
        .corsOrigins,
    ).toEqual(["https://a.example", "http://localhost:5173"]);
    expect(loadConfig({ HOLDFAST_CORS_ORIGINS: "*" }).corsOrigins).toEqual(["*"]);
  });

  it("has time limits toward Postgres that never exceed one another", () => {
    expect(loadConfig({})).toMatchObject({
      dbTimeouts: { statementMs: 30_000, lockMs: 5_000, idleInTransactionMs: 10_000 },
      shutdownGraceMs: 5_000,
      keyCache: { size: 10_000, ttlMs: 30_000 },
    });
    const tooLong = { HOLDFAST_DB_LOCK_TIMEOUT_MS: "40000" };
    expect(() => loadConfig(tooLong)).toThrow("HOLDFAST_DB_LOCK_TIMEOUT_MS");
    expect(
      loadConfig({ ...tooLong, HOLDFAST_DB_STATEMENT_TIMEOUT_MS: "60000" }).dbTimeouts,
    ).toMatchObject({ lockMs: 40_000, statementMs: 60_000 });
  });

  it("serves metrics on PORT unless HOLDFAST_METRICS_PORT names another, and only with metrics on", () => {
    expect(loadConfig({}).metricsPort).toBeUndefined();
    expect(loadConfig({ HOLDFAST_METRICS_PORT: "9464" }).metricsPort).toBe(9464);
    expect(loadConfig({ PORT: "0", HOLDFAST_METRICS_PORT: "0" }).metricsPort).toBe(0);
    expect(() => loadConfig({ PORT: "9464", HOLDFAST_METRICS_PORT: "9464" })).toThrow(
      "HOLDFAST_METRICS_PORT: must differ from PORT",
    );
    expect(() => loadConfig({ HOLDFAST_METRICS: "false", HOLDFAST_METRICS_PORT: "9464" })).toThrow(
      "HOLDFAST_METRICS_PORT: is set but HOLDFAST_METRICS is false",
    );
  });
});

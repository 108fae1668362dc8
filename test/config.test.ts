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
    });
    expect(c).toMatchObject({
      port: 9000,
      host: "0.0.0.0",
      databaseUrl: "postgresql://u@h/db",
      dbPoolSize: 8,
    });
  });

  it.each([
    ["PORT", "http"],
    ["PORT", "70000"],
    ["DATABASE_URL", "mysql://x"],
    ["HOLDFAST_ADMIN_KEY", "short"],
    ["HOLDFAST_ADMIN_KEY", "has a space in it okay"],
    ["HOLDFAST_DB_POOL_SIZE", "0"],
    ["HOLDFAST_LOG_LEVEL", "loud"],
  ])("refuses %s=%s, naming the variable", (name, value) => {
    expect(() => loadConfig({ [name]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [name]: value })).toThrow(name);
  });
});

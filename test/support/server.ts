import { afterAll } from "vitest";
import { type Config, loadConfig } from "../../src/config.js";
import { type Holdfast, type StartOptions, startHoldfast } from "../../src/server.js";
import { freshDatabase } from "./database.js";

/** The operator key every test server accepts (HOLDFAST_ADMIN_KEY). */
export const ADMIN_KEY = "hf_test_operator_key_0123456789";

export type TestServer = Holdfast & { databaseUrl: string };

/**
 * A real Holdfast instance on a free port over a fresh database, closed
 * after the calling file's tests (unless a test closed it first, as a
 * graceful stop does: `close` runs once). `env` adds or overrides
 * configuration.
 */
export async function startTestServer(
  env: Record<string, string> = {},
  databaseUrl?: string,
  options: StartOptions = {},
): Promise<TestServer> {
  const url = databaseUrl ?? (await freshDatabase());
  const config: Config = loadConfig({
    PORT: "0",
    HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    HOLDFAST_LOG_LEVEL: "error",
    HOLDFAST_DB_POOL_SIZE: "10",
    // Generous, so that only the tests about rate limits meet them.
    HOLDFAST_TENANT_RATE_PER_SECOND: "100000",
    HOLDFAST_TENANT_RATE_BURST: "100000",
    HOLDFAST_KEY_RATE_PER_SECOND: "100000",
    HOLDFAST_KEY_RATE_BURST: "100000",
    ...env,
  });
  const server = await startHoldfast(config, url, undefined, options);
  const stop = server.close.bind(server);
  let closed: Promise<void> | undefined;
  const close = () => {
    closed ??= stop();
    return closed;
  };
  afterAll(close);
  return Object.assign(server, { close, databaseUrl: url });
}

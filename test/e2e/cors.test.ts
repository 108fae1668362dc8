import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * Browser apps on another origin call the API only when the operator names
 * that origin in HOLDFAST_CORS_ORIGINS. The browser itself is the judge: a
 * page served from a second port (another origin) calls GetCaller with fetch
 * in headless Chromium.
 */

const CHROMIUM = "/usr/bin/chromium";
const GET_CALLER = "/holdfast.v1.KeyService/GetCaller";

let page: Server;
let pageOrigin: string;
let browser: Browser;
let open: TestServer;
let closed: TestServer;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`);
  }
  page = createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html" });
    res.end("<!doctype html><title>app</title>");
  });
  await new Promise<void>((resolve) => page.listen(0, "127.0.0.1", resolve));
  pageOrigin = `http://127.0.0.1:${(page.address() as AddressInfo).port}`;
  open = await startTestServer({
    HOLDFAST_CORS_ORIGINS: `https://elsewhere.example,${pageOrigin}`,
  });
  closed = await startTestServer();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"],
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  page?.close();
});

/** What a page on pageOrigin sees when it calls GetCaller on `api` with fetch. */
async function callFromPage(
  api: string,
): Promise<{ status?: number; body?: string; ratelimit?: string | null; error?: string }> {
  const tab = await browser.newPage();
  try {
    await tab.goto(pageOrigin);
    return await tab.evaluate(
      async ({ url, key }) => {
        try {
          const res = await fetch(url, {
            method: "POST",
            headers: {
              "content-type": "application/json",
              "connect-protocol-version": "1",
              authorization: `Bearer ${key}`,
              "idempotency-key": "cors-check",
            },
            body: "{}",
          });
          return {
            status: res.status,
            body: await res.text(),
            ratelimit: res.headers.get("ratelimit"),
          };
        } catch (err) {
          return { error: String(err) };
        }
      },
      { url: `${api}${GET_CALLER}`, key: ADMIN_KEY },
    );
  } finally {
    await tab.close();
  }
}

describe("CORS", { timeout: 60_000 }, () => {
  it("lets a page on a named origin call the API and read the rate-limit headers", async () => {
    const seen = await callFromPage(open.url);
    expect(seen.error).toBeUndefined();
    expect(seen.status).toBe(200);
    expect(JSON.parse(seen.body ?? "{}").tenantId).toBeTruthy();
    expect(seen.ratelimit).toMatch(/r=\d+/);
  });

  it("is off by default: the browser refuses the same call", async () => {
    const seen = await callFromPage(closed.url);
    expect(seen.status).toBeUndefined();
    expect(seen.error).toMatch(/Failed to fetch/);
  });

  it("answers a preflight for a named origin only", async () => {
    const preflight = (origin: string) =>
      fetch(`${open.url}${GET_CALLER}`, {
        method: "OPTIONS",
        headers: {
          origin,
          "access-control-request-method": "POST",
          "access-control-request-headers": "content-type,authorization,idempotency-key",
        },
      });
    const allowed = await preflight(pageOrigin);
    expect(allowed.status).toBe(204);
    expect(allowed.headers.get("access-control-allow-origin")).toBe(pageOrigin);
    expect(allowed.headers.get("access-control-allow-headers")?.toLowerCase()).toContain(
      "idempotency-key",
    );
    expect(allowed.headers.get("access-control-allow-credentials")).toBeNull();
    const other = await preflight("https://attacker.example");
    expect(other.headers.get("access-control-allow-origin")).toBeNull();
  });
});

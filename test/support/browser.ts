import { existsSync } from "node:fs";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll } from "vitest";

/**
 * Debian's Chromium, headless, driven by playwright-core, closed after the
 * calling file's tests. .ci/run installs it when it is missing.
 */

const CHROMIUM = "/usr/bin/chromium";

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`);
  }
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--no-first-run",
    ],
  });
  afterAll(() => browser.close());
  return browser;
}

/** A new page signed in to the console with `key`, once its event stream is live (or it has none). */
export async function signedIn(
  browser: Browser,
  baseUrl: string,
  key: string,
  opts: { width?: number; height?: number; hash?: string; live?: boolean } = {},
): Promise<Page> {
  const page = await browser.newPage({
    viewport: { width: opts.width ?? 1280, height: opts.height ?? 900 },
  });
  await page.goto(`${baseUrl}/console/${opts.hash ?? ""}`);
  await page.fill("#api-key", key);
  await page.click("button[type=submit]");
  await page
    .locator(opts.live === false ? "header.top" : ".live-live, h2")
    .first()
    .waitFor();
  return page;
}

/** Whether the page scrolls sideways: wider content than the viewport. */
export async function overflowsSideways(page: Page): Promise<boolean> {
  return page.evaluate<boolean>(
    "document.documentElement.scrollWidth > document.documentElement.clientWidth",
  );
}

import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Browser, chromium, type Page } from "playwright-core";
import { Temporal } from "temporal-polyfill";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { MINUTE, minutes, seconds } from "../support/booking.js";
import { clientFor, newTenant } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The console in a real browser: Debian's Chromium driven by playwright-core
 * against a real server, with the API as the other side of every check.
 * .ci/run installs Chromium when it is missing.
 */

const CHROMIUM = "/usr/bin/chromium";
const ZONE = "America/New_York";

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: apt-get update && apt-get install -y chromium`);
  }
  server = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "200" });
  browser = await chromium.launch({
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
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

/** 10:00 (plus `hoursLater`) tomorrow on New York's wall clock. */
function tomorrowAt(hour: number): number {
  return Temporal.Now.plainDateISO(ZONE)
    .add({ days: 1 })
    .toZonedDateTime({ timeZone: ZONE, plainTime: { hour } }).epochMilliseconds;
}

/**
 * A tenant with one New York resource and a 30-minute service; the resource
 * is open at all hours unless `workingDays` gives it a schedule on every day.
 */
async function world(workingDays = false) {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const windows = [1, 2, 3, 4, 5, 6, 7].flatMap((weekday) => [
    { weekday, startTime: "08:00", endTime: "12:30" },
    { weekday, startTime: "13:30", endTime: "17:00" },
  ]);
  const { resource } = await resources.createResource({
    name: "Dr Smith",
    timeZone: ZONE,
    weeklySchedule: workingDays ? { windows } : undefined,
  });
  const { service } = await clientFor(CatalogService, server.url, key).createService({
    name: "Consultation",
    resourceIds: [resource?.id as string],
    policy: { durations: [minutes(30)], slotInterval: minutes(30) },
  });
  const bookings = clientFor(BookingService, server.url, key);
  const at = (startMs: number) => ({
    serviceId: service?.id as string,
    resourceId: resource?.id as string,
    startTime: timestampFromMs(startMs),
    endTime: timestampFromMs(startMs + 30 * MINUTE),
  });
  return { key, bookings, at, resourceId: resource?.id as string };
}

/** Signs in with `key` and shows tomorrow as a day view, where the tests' bookings are. */
async function signIn(key: string, width = 1280): Promise<Page> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  await page.goto(`${server.url}/console`);
  await page.fill("#api-key", key);
  await page.click("button[type=submit]");
  await page.locator(".live-live").waitFor();
  await page.getByRole("button", { name: "Day", exact: true }).click();
  await page.getByRole("button", { name: "Next", exact: true }).click();
  return page;
}

const card = (page: Page, id: string) => page.locator(`[data-booking="${id}"]`);

// A browser per file and a page per test: slower than the API tests, more so under load.
describe("the console", { timeout: 90_000 }, () => {
  it("signs in with a key kept in the tab's session storage, never in a cookie or the URL", async () => {
    const { key } = await world();
    const page = await signIn(key);
    await expect(page.getByRole("link", { name: "API keys" }).isVisible()).resolves.toBe(true);
    expect(await page.evaluate("sessionStorage.getItem('holdfast.apiKey')")).toBe(key);
    expect(await page.context().cookies()).toEqual([]);
    expect(page.url()).not.toContain(key);
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("#api-key").waitFor();
    expect(await page.evaluate("sessionStorage.getItem('holdfast.apiKey')")).toBeNull();
    await page.close();
  });

  it("shows a hold made through the API live, counts it down, and frees it when it lapses", async () => {
    const w = await world();
    const page = await signIn(w.key);
    const startMs = tomorrowAt(10);
    const { booking } = await w.bookings.createHold({ ...w.at(startMs), ttl: seconds(10) });
    const id = booking?.id as string;
    // Appears without a reload, from the event stream.
    await card(page, id).waitFor();
    expect(await card(page, id).getAttribute("data-status")).toBe("held");
    await expect(card(page, id).locator(".countdown").textContent()).resolves.toMatch(
      /^0:(0\d|10)$/,
    );
    // Runs out: the hold fades, the sweeper's booking.expired arrives, the slot is free again.
    await page
      .locator(`[data-booking="${id}"][data-status="expired"]`)
      .waitFor({ timeout: 20_000 });
    await page.locator(`.slot[data-start="${startMs}"]`).waitFor();
    await page.close();
  });

  it("confirms and cancels from the console, and the API and its events agree", async () => {
    const w = await world();
    const events = clientFor(EventService, server.url, w.key);
    const page = await signIn(w.key);
    const { booking } = await w.bookings.createHold({
      ...w.at(tomorrowAt(11)),
      attendee: { name: "Ada" },
    });
    const id = booking?.id as string;
    await card(page, id).click();
    await page.getByRole("dialog").getByRole("button", { name: "Confirm" }).click();
    await page.locator(`[data-booking="${id}"][data-status="confirmed"]`).waitFor();
    expect((await w.bookings.getBooking({ bookingId: id })).booking?.status).toBe(
      BookingStatus.CONFIRMED,
    );

    await card(page, id).click();
    await page.getByLabel("Reason").fill("patient called");
    await page.getByRole("button", { name: "Cancel booking" }).click();
    await page.locator(`[data-booking="${id}"][data-status="cancelled"]`).waitFor();
    const after = (await w.bookings.getBooking({ bookingId: id })).booking;
    expect(after?.status).toBe(BookingStatus.CANCELLED);
    expect(after?.cancelReason).toBe("patient called");
    const { events: recorded } = await events.listEvents({
      filter: { resourceIds: [w.resourceId] },
    });
    expect(recorded.map((e) => e.type)).toEqual([
      "booking.held",
      "booking.confirmed",
      "booking.cancelled",
    ]);
    await page.close();
  });

  it("shows a conflict with its reason and the free times offered, and takes one", async () => {
    const w = await world();
    const page = await signIn(w.key);
    const taken = tomorrowAt(9);
    await w.bookings.createBooking(w.at(taken));
    const { booking } = await w.bookings.createBooking(w.at(tomorrowAt(14)));
    const id = booking?.id as string;
    await card(page, id).click();
    const local = Temporal.Instant.fromEpochMilliseconds(taken)
      .toZonedDateTimeISO(ZONE)
      .toPlainDateTime()
      .toString({ smallestUnit: "minute" });
    await page.getByLabel(/New start/).fill(local);
    await page.getByRole("button", { name: "Move" }).click();
    const problem = page.getByRole("dialog").getByRole("alert");
    await expect(problem.locator(".reason").textContent()).resolves.toBe("SLOT_UNAVAILABLE");
    const offered = problem.locator("button.alternative");
    expect(await offered.count()).toBeGreaterThan(0);
    await offered.first().click();
    await page.getByRole("dialog").waitFor({ state: "detached" });
    const moved = (await w.bookings.getBooking({ bookingId: id })).booking;
    expect(moved?.status).toBe(BookingStatus.CONFIRMED);
    expect(Number(moved?.startTime?.seconds) * 1000).not.toBe(tomorrowAt(14));
    expect(Number(moved?.startTime?.seconds) * 1000).not.toBe(taken);
    await page.close();
  });

  it("offers a read-only key no write action", async () => {
    const w = await world();
    const { booking } = await w.bookings.createHold({ ...w.at(tomorrowAt(12)) });
    const { apiKey } = await clientFor(KeyService, server.url, w.key).createApiKey({
      scopes: ["bookings.read", "catalog.read", "events.read"],
      description: "wall screen",
    });
    const page = await signIn(apiKey);
    const id = booking?.id as string;
    await card(page, id).waitFor();
    expect(await page.locator(".slot").count()).toBeGreaterThan(0);
    expect(await page.locator("button.slot").count()).toBe(0);
    await card(page, id).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    expect(await dialog.getByRole("button").allTextContents()).toEqual(["×"]);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    const pages = await page.getByRole("navigation").getByRole("link").allTextContents();
    expect(pages).toEqual(["Calendar", "Resources & services", "Events"]);
    await page.close();
  });

  it("fits a phone-width screen, and saves the week view for the README", async () => {
    const w = await world(true);
    for (const [hour, name] of [
      [9, "Ada"],
      [10, "Grace"],
      [14, "Alan"],
    ] as const) {
      await w.bookings.createBooking({ ...w.at(tomorrowAt(hour)), attendee: { name } });
    }
    await w.bookings.createHold({ ...w.at(tomorrowAt(11)), attendee: { name: "Edsger" } });
    const phone = await signIn(w.key, 390);
    expect(await phone.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(390);
    await phone.close();

    const page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    await page.goto(`${server.url}/console/`);
    await page.fill("#api-key", w.key);
    await page.click("button[type=submit]");
    await page.locator(".live-live").waitFor();
    // The week that holds tomorrow.
    if (Temporal.Now.plainDateISO(ZONE).dayOfWeek === 7) {
      await page.getByRole("button", { name: "Next", exact: true }).click();
    }
    await page.locator(".booking").first().waitFor();
    const dir = process.env.HOLDFAST_SCREENSHOT_DIR ?? (await mkdtemp(join(tmpdir(), "console-")));
    await page.screenshot({ path: join(dir, "console-week.png") });
    expect(existsSync(join(dir, "console-week.png"))).toBe(true);
    await page.close();
  });
});

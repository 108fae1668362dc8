import { existsSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { Temporal } from "temporal-polyfill";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { OverrideKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { MINUTE, minutes, seconds } from "../support/booking.js";
import { launchChromium, overflowsSideways, signedIn } from "../support/browser.js";
import { clientFor, newTenant } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The console in a real browser: Debian's Chromium driven by playwright-core
 * against a real server, with the API as the other side of every check.
 * .ci/run installs Chromium when it is missing.
 */

const ZONE = "America/New_York";
const LONDON = "Europe/London";

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "200" });
  browser = await launchChromium();
}, 60_000);

/** `hour` tomorrow (New York's tomorrow) on `zone`'s wall clock. */
function tomorrowAt(hour: number, zone = ZONE): number {
  const minute = Math.round((hour % 1) * 60);
  return Temporal.Now.plainDateISO(ZONE)
    .add({ days: 1 })
    .toZonedDateTime({ timeZone: zone, plainTime: { hour: Math.floor(hour), minute } })
    .epochMilliseconds;
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

/**
 * A clinic: Dr Smith and Room 4 in New York (08:00–12:30 and 13:30–17:00
 * every day; Dr Smith blocked tomorrow 14:00–16:00 for a team meeting) and
 * Dr Jones in London (09:00–17:00), all offering one 30-minute service.
 */
async function clinic() {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const days = [1, 2, 3, 4, 5, 6, 7];
  const make = async (name: string, timeZone: string, windows: [string, string][]) =>
    (
      await resources.createResource({
        name,
        timeZone,
        weeklySchedule: {
          windows: days.flatMap((weekday) =>
            windows.map(([startTime, endTime]) => ({ weekday, startTime, endTime })),
          ),
        },
      })
    ).resource?.id as string;
  const nyHours: [string, string][] = [
    ["08:00", "12:30"],
    ["13:30", "17:00"],
  ];
  const smith = await make("Dr Smith", ZONE, nyHours);
  const room = await make("Room 4", ZONE, nyHours);
  const jones = await make("Dr Jones", LONDON, [["09:00", "17:00"]]);
  const tomorrow = Temporal.Now.plainDateISO(ZONE).add({ days: 1 }).toString();
  await resources.createOverride({
    resourceId: smith,
    kind: OverrideKind.BLOCK,
    title: "Team meeting",
    startDate: tomorrow,
    startTime: "14:00",
    endTime: "16:00",
  });
  const { service } = await clientFor(CatalogService, server.url, key).createService({
    name: "Consultation",
    resourceIds: [smith, room, jones],
    policy: { durations: [minutes(30)], slotInterval: minutes(30) },
  });
  const bookings = clientFor(BookingService, server.url, key);
  const at = (resourceId: string, startMs: number) => ({
    serviceId: service?.id as string,
    resourceId,
    startTime: timestampFromMs(startMs),
    endTime: timestampFromMs(startMs + 30 * MINUTE),
  });
  return { key, bookings, at, smith, room, jones, resources };
}

/** Shows `names` side by side (ticking them in the resource picker), then closes the picker. */
async function choose(page: Page, ...names: string[]): Promise<void> {
  await page.locator(".picker summary").click();
  for (const name of names) await page.getByRole("checkbox", { name }).check();
  await page.locator(".picker summary").click();
  for (const name of names) {
    await page.locator(".resource-head", { hasText: name }).first().waitFor();
  }
}

/** One property of an element's inline style, as the console set it. */
async function styleOf(l: ReturnType<Page["locator"]>, property: string) {
  const style = (await l.getAttribute("style")) ?? "";
  return new RegExp(`(?:^|; )${property}: ([^;]+)`).exec(style)?.[1];
}

/** The column of `resourceId` on `dateMs`'s day. */
const column = (page: Page, resourceId: string) =>
  page.locator(`.cal-body .day[data-resource="${resourceId}"]`);

/** Signs in with `key` and shows tomorrow as a day view, where the tests' bookings are. */
async function signIn(key: string, width = 1280): Promise<Page> {
  const page = await signedIn(browser, server.url, key, { width });
  await page.getByRole("button", { name: "Day", exact: true }).click();
  await page.getByRole("button", { name: "Next", exact: true }).click();
  return page;
}

const card = (page: Page, id: string) => page.locator(`[data-booking="${id}"]`);

// A browser per file and a page per test: slower than the API tests, more so under load.
// Under the whole suite's load on two cores, a test here failed now and then
// (2 of 5 full runs on 2026-11-27, never alone): a hold's card vanished after
// its event had shown it, or a hold made from the keyboard never showed. One
// cause was found in the console (a reload's list, read before the hold, was
// applied after it: see changedDuringReload in console/src/calendar.ts). Until
// full runs show no more, a test that fails runs again, on a fresh page and
// tenant; one that fails every time still fails.
describe("the console", { timeout: 90_000, retry: 2 }, () => {
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

  it("shows several resources side by side, each on its own clock, in the day and the week", async () => {
    const c = await clinic();
    const page = await signIn(c.key);
    await choose(page, "Room 4", "Dr Jones");
    const columns = page.locator(".cal-body .day");
    expect(
      await columns.evaluateAll((els) => els.map((e) => e.getAttribute("data-resource"))),
    ).toEqual([c.smith, c.room, c.jones]);
    // A hold on Room 4 appears live in Room 4's column, and only there.
    const { booking: held } = await c.bookings.createHold(c.at(c.room, tomorrowAt(10)));
    await column(page, c.room).locator(`[data-booking="${held?.id}"]`).waitFor();
    expect(await column(page, c.smith).locator(".booking").count()).toBe(0);
    // 10:00 in London sits at 10:00 in Dr Jones's column, whatever New York's clock says.
    const { booking: london } = await c.bookings.createBooking(
      c.at(c.jones, tomorrowAt(10, LONDON)),
    );
    const londonCard = column(page, c.jones).locator(`[data-booking="${london?.id}"]`);
    await londonCard.waitFor();
    expect(await styleOf(londonCard, "top")).toBe("calc(var(--hour) * 10)");
    expect(await page.locator(".resource-head").allTextContents()).toEqual([
      "Dr SmithNew York",
      "Room 4New York",
      "Dr JonesLondon",
    ]);

    // The week: seven days of three columns, readable without scrolling sideways at 1280 px.
    await page.getByRole("button", { name: "Week", exact: true }).click();
    await page.locator(".day-head").nth(6).waitFor();
    expect(await page.locator(".cal-body .day").count()).toBe(21);
    const tomorrow = Temporal.Now.plainDateISO(ZONE).add({ days: 1 }).toString();
    await page
      .locator(
        `.day[data-resource="${c.room}"][data-date="${tomorrow}"] [data-booking="${held?.id}"]`,
      )
      .waitFor();
    expect(await overflowsSideways(page)).toBe(false);
    const wrap = page.locator(".cal-wrap");
    expect(await wrap.evaluate((e) => e.scrollWidth <= e.clientWidth)).toBe(true);
    await page.close();
  });

  it("hatches override blocks apart from the shaded working time, and offers no slot in them", async () => {
    const c = await clinic();
    const page = await signIn(c.key);
    const smith = column(page, c.smith);
    const block = smith.locator(".block");
    await block.waitFor();
    expect(await block.textContent()).toBe("Team meeting");
    const top = (l: typeof block) =>
      l.evaluateAll((els) =>
        els.map((e) => /top: ([^;]+)/.exec(e.getAttribute("style") ?? "")?.[1]),
      );
    expect(await top(block)).toEqual(["calc(var(--hour) * 14)"]);
    expect(await styleOf(block, "height")).toBe("calc(var(--hour) * 2)");
    // Working time as availability reads it: the schedule less the block.
    expect(await top(smith.locator(".work"))).toEqual([
      "calc(var(--hour) * 8)",
      "calc(var(--hour) * 13.5)",
      "calc(var(--hour) * 16)",
    ]);
    await smith.locator(".slot").first().waitFor();
    const starts = (await smith
      .locator(".slot")
      .evaluateAll((els) => els.map((e) => Number(e.getAttribute("data-start"))))) as number[];
    expect(starts).toContain(tomorrowAt(13.5));
    expect(starts).toContain(tomorrowAt(16));
    expect(starts.filter((s) => s >= tomorrowAt(14) && s < tomorrowAt(16))).toEqual([]);
    await page.close();
  });

  it("moves a booking dragged onto a free slot once confirmed, with an Idempotency-Key, and shows a refusal with the times offered", async () => {
    const c = await clinic();
    const events = clientFor(EventService, server.url, c.key);
    const { booking } = await c.bookings.createBooking({
      ...c.at(c.smith, tomorrowAt(10)),
      attendee: { name: "Ada" },
    });
    const id = booking?.id as string;
    const page = await signIn(c.key);
    await choose(page, "Room 4");
    const keys: string[] = [];
    page.on("request", (r) => {
      if (r.url().endsWith("/RescheduleBooking")) keys.push(r.headers()["idempotency-key"] ?? "");
    });

    const dragTo = async (target: ReturnType<Page["locator"]>) => {
      // Both on screen first: the calendar re-renders as the last move's events arrive.
      await card(page, id).waitFor();
      await target.waitFor();
      const from = await card(page, id).boundingBox();
      const to = await target.boundingBox();
      if (!from || !to) throw new Error("not on screen");
      await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
      await page.mouse.down();
      await page.mouse.move(to.x + to.width / 2, to.y + to.height / 2, { steps: 12 });
      await page.mouse.up();
    };
    const slotAt = (resourceId: string, ms: number) =>
      column(page, resourceId).locator(`.slot[data-start="${ms}"]`);

    // Dropped on Room 4 at 15:00: nothing moves until the move is confirmed.
    await dragTo(slotAt(c.room, tomorrowAt(15)));
    const dialog = page.getByRole("dialog");
    await expect(dialog.locator(".move-to").textContent()).resolves.toMatch(/15:00.*Room 4/);
    await dialog.getByRole("button", { name: "Keep it where it is" }).click();
    await dialog.waitFor({ state: "detached" });
    expect(keys).toEqual([]);
    expect((await c.bookings.getBooking({ bookingId: id })).booking?.resourceId).toBe(c.smith);

    await dragTo(slotAt(c.room, tomorrowAt(15)));
    await dialog.getByRole("button", { name: "Move", exact: true }).click();
    await dialog.waitFor({ state: "detached" });
    await column(page, c.room).locator(`[data-booking="${id}"]`).waitFor();
    const moved = (await c.bookings.getBooking({ bookingId: id })).booking;
    expect(moved?.resourceId).toBe(c.room);
    expect(Number(moved?.startTime?.seconds) * 1000).toBe(tomorrowAt(15));
    expect(moved?.status).toBe(BookingStatus.CONFIRMED);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^console-[0-9a-f]{32}$/);

    // The slot is taken between the drop and the confirmation: the refusal and its offers.
    await dragTo(slotAt(c.room, tomorrowAt(16)));
    await c.bookings.createBooking(c.at(c.room, tomorrowAt(16)));
    await dialog.getByRole("button", { name: "Move", exact: true }).click();
    const problem = dialog.getByRole("alert");
    await expect(problem.locator(".reason").textContent()).resolves.toBe("SLOT_UNAVAILABLE");
    const offered = problem.locator("button.alternative");
    expect(await offered.count()).toBeGreaterThan(0);
    await offered.first().click();
    await dialog.waitFor({ state: "detached" });
    const after = (await c.bookings.getBooking({ bookingId: id })).booking;
    expect(Number(after?.startTime?.seconds) * 1000).not.toBe(tomorrowAt(16));
    expect(Number(after?.startTime?.seconds) * 1000).not.toBe(tomorrowAt(15));
    expect(new Set(keys).size).toBe(keys.length);
    const { events: recorded } = await events.listEvents({ filter: { resourceIds: [c.room] } });
    expect(recorded.filter((e) => e.booking?.id === id).map((e) => e.type)).toEqual([
      "booking.rescheduled",
      "booking.rescheduled",
    ]);
    await page.close();
  });

  it("is usable by keyboard: Tab to a free slot, Enter holds it; Enter on the hold, Tab, Enter confirms", async () => {
    const w = await world();
    const page = await signIn(w.key);
    await page.locator("button.slot").first().waitFor();
    const focused = () => page.evaluate<string>("document.activeElement?.className ?? ''");
    const tabTo = async (cls: string) => {
      for (let i = 0; i < 60 && !(await focused()).split(" ").includes(cls); i++) {
        await page.keyboard.press("Tab");
      }
      expect((await focused()).split(" ")).toContain(cls);
    };
    await tabTo("slot");
    const start = Number(await page.evaluate("document.activeElement?.getAttribute('data-start')"));
    await page.keyboard.press("Enter");
    await page.locator('.booking[data-status="held"]').waitFor();
    const { bookings: held } = await w.bookings.listBookings({ resourceId: w.resourceId });
    expect(held.map((b) => [b.status, Number(b.startTime?.seconds) * 1000])).toEqual([
      [BookingStatus.HELD, start],
    ]);
    await tabTo("booking");
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await page.keyboard.press("Tab");
    expect(await page.evaluate("document.activeElement?.textContent")).toBe("Confirm");
    await page.keyboard.press("Enter");
    await page.locator('.booking[data-status="confirmed"]').waitFor();
    expect((await w.bookings.getBooking({ bookingId: held[0]?.id })).booking?.status).toBe(
      BookingStatus.CONFIRMED,
    );
    await page.close();
  });

  it("saves the week of two resources for the README: working time, a block, holds and bookings", async () => {
    const c = await clinic();
    for (const [hour, name, resourceId] of [
      [9, "Ada", c.smith],
      [10.5, "Grace", c.smith],
      [16.5, "Alan", c.smith],
      [9.5, "Barbara", c.room],
      [13.5, "Edsger", c.room],
    ] as const) {
      await c.bookings.createBooking({ ...c.at(resourceId, tomorrowAt(hour)), attendee: { name } });
    }
    await c.bookings.createHold({ ...c.at(c.room, tomorrowAt(11)), attendee: { name: "Donald" } });
    await c.bookings.createHold({
      ...c.at(c.smith, tomorrowAt(12)),
      attendee: { name: "Frances" },
    });
    const page = await signedIn(browser, server.url, c.key, { width: 1280, height: 860 });
    await choose(page, "Room 4");
    // The week that holds tomorrow.
    if (Temporal.Now.plainDateISO(ZONE).dayOfWeek === 7) {
      await page.getByRole("button", { name: "Next", exact: true }).click();
    }
    await page.locator(".booking").nth(6).waitFor();
    await page.locator(".block").first().waitFor();
    const dir = process.env.HOLDFAST_SCREENSHOT_DIR ?? (await mkdtemp(join(tmpdir(), "console-")));
    await page.screenshot({ path: join(dir, "console-week.png") });
    expect(existsSync(join(dir, "console-week.png"))).toBe(true);
    await page.close();
  });
});

import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { Browser, Page } from "playwright-core";
import { beforeAll, describe, expect, it } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import {
  OverrideKind,
  RecurrenceFrequency,
  ResourceService,
} from "../../gen/holdfast/v1/resource_pb.js";
import { WebhookService } from "../../gen/holdfast/v1/webhook_pb.js";
import { DAY, MINUTE, minutes } from "../support/booking.js";
import { launchChromium, overflowsSideways, signedIn } from "../support/browser.js";
import { clientFor, newTenant } from "../support/clients.js";
import { webhookReceiver } from "../support/receiver.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The console's pages other than the calendar, in Debian's Chromium against
 * a real server: the event log, API keys, webhooks, resources and services,
 * what a read-only key is offered, and a phone-width screen.
 */

let server: TestServer;
let browser: Browser;

beforeAll(async () => {
  server = await startTestServer({
    HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
    // Only the console's Retry now sends a failed delivery again within a test.
    HOLDFAST_WEBHOOK_RETRY_SCHEDULE: "10m",
    HOLDFAST_WEBHOOK_TIMEOUT_MS: "2000",
  });
  browser = await launchChromium();
}, 60_000);

/** A tenant with two resources (open at all hours) and a 30-minute service on both. */
async function world() {
  const { key } = await newTenant(server.url);
  const resources = clientFor(ResourceService, server.url, key);
  const a = (await resources.createResource({ name: "Room A", timeZone: "UTC" })).resource
    ?.id as string;
  const b = (await resources.createResource({ name: "Room B", timeZone: "UTC" })).resource
    ?.id as string;
  const catalog = clientFor(CatalogService, server.url, key);
  const { service } = await catalog.createService({
    name: "Fitting",
    resourceIds: [a, b],
    policy: { durations: [minutes(30)], slotInterval: minutes(30) },
  });
  const bookings = clientFor(BookingService, server.url, key);
  const base = Math.ceil((Date.now() + 2 * DAY) / DAY) * DAY;
  let next = 0;
  /** A booking (or hold) on `resourceId` at a time no other test booking has. */
  const at = (resourceId: string) => {
    const start = base + next++ * 30 * MINUTE;
    return {
      serviceId: service?.id as string,
      resourceId,
      startTime: timestampFromMs(start),
      endTime: timestampFromMs(start + 30 * MINUTE),
    };
  };
  return { key, a, b, bookings, at, catalog, resources, serviceId: service?.id as string };
}

const rows = (page: Page) => page.locator("tr[data-event]");
const ids = (page: Page) =>
  rows(page).evaluateAll((els) => els.map((e) => e.getAttribute("data-event")));

describe("the console's pages", { timeout: 120_000 }, () => {
  it("the event log reads the history page by page, then goes live from where it ended, without repeats; its filters go to the server", async () => {
    const w = await world();
    const events = clientFor(EventService, server.url, w.key);
    // 101 events: more than one page of ListEvents (100 a page).
    for (let i = 0; i < 100; i += 10) {
      await Promise.all(Array.from({ length: 10 }, () => w.bookings.createBooking(w.at(w.a))));
    }
    await w.bookings.createHold(w.at(w.b));
    const page = await signedIn(browser, server.url, w.key, { hash: "#/events" });
    const status = page.getByRole("status");
    await expect
      .poll(() => status.textContent(), { timeout: 30_000 })
      .toMatch(/^101 from history · live$/);
    const listed: string[] = [];
    for (let after = "", more = true; more; ) {
      const res = await events.listEvents({ after, pageSize: 1000 });
      listed.push(...res.events.map((e) => e.id));
      after = res.nextCursor;
      more = res.events.length > 0;
    }
    expect(listed).toHaveLength(101);
    expect(await ids(page)).toEqual([...listed].reverse());

    // A new event arrives live, once, on top.
    const { booking: live } = await w.bookings.createHold(w.at(w.b));
    await page.locator(`tr[data-source="live"][data-type="booking.held"]`).waitFor();
    expect(await rows(page).count()).toBe(102);
    expect(new Set(await ids(page)).size).toBe(102);
    expect(await rows(page).first().locator("td").nth(2).textContent()).toBe(live?.id);

    // By type: the server's filter, history and live alike.
    await page.locator("#event-type").selectOption("booking.held");
    await expect.poll(() => status.textContent()).toMatch(/^2 from history · live$/);
    expect(
      await rows(page).evaluateAll((els) => els.map((e) => e.getAttribute("data-type"))),
    ).toEqual(["booking.held", "booking.held"]);
    // By resource: Room A's events only; Room B's new hold stays out, Room A's comes in.
    await page.locator("#event-type").selectOption("");
    await page.locator("#event-resource").selectOption({ label: "Room A" });
    await expect.poll(() => status.textContent()).toMatch(/^100 from history · live$/);
    await w.bookings.createHold(w.at(w.b));
    const { booking: onA } = await w.bookings.createHold(w.at(w.a));
    await page.locator(`tr[data-source="live"]`).waitFor();
    expect(await rows(page).count()).toBe(101);
    expect(await rows(page).first().locator("td").nth(2).textContent()).toBe(onA?.id);
    await page.close();
  });

  it("API keys: a new key's secret is shown once and works; Revoke stops it at once", async () => {
    const w = await world();
    const page = await signedIn(browser, server.url, w.key, { hash: "#/keys" });
    await page.getByRole("checkbox", { name: "bookings.read" }).check();
    await page.getByLabel("Description").fill("front desk");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = await page.getByLabel("New API key").inputValue();
    expect(secret).toMatch(/^hf_/);
    const caller = await clientFor(KeyService, server.url, secret).getCaller({});
    expect(caller.scopes).toEqual(["bookings.read"]);
    const row = page.locator("tr", { hasText: "front desk" });
    await row.waitFor();
    // Shown once: back on the page, only the prefix is left.
    await page.goto(`${server.url}/console/#/calendar`);
    await page.goto(`${server.url}/console/#/keys`);
    await row.waitFor();
    expect(await page.getByLabel("New API key").count()).toBe(0);
    expect(await page.content()).not.toContain(secret);
    page.once("dialog", (d) => void d.accept());
    await row.getByRole("button", { name: "Revoke" }).click();
    await row.waitFor({ state: "detached" });
    await expect(clientFor(KeyService, server.url, secret).getCaller({})).rejects.toThrow(
      /unauthenticated|revoked|invalid/i,
    );
    await page.close();
  });

  it("webhooks: the delivery log shows each attempt, and Retry now delivers a failed one", async () => {
    const w = await world();
    const receiver = await webhookReceiver({
      secrets: () => [],
      respond: (n) => (n === 1 ? 500 : 200),
    });
    const { webhook } = await clientFor(WebhookService, server.url, w.key).createWebhook({
      url: receiver.url(),
      eventTypes: ["booking.held"],
    });
    await w.bookings.createHold(w.at(w.a));
    await receiver.waitFor((r) => r.length >= 1);
    const page = await signedIn(browser, server.url, w.key, { hash: "#/webhooks" });
    await page.getByRole("button", { name: "Deliveries" }).click();
    const delivery = page.locator(".delivery-status");
    await page.locator("tr", { hasText: "500" }).waitFor();
    expect(await delivery.textContent()).not.toBe("succeeded");
    await page.getByRole("button", { name: "Retry now" }).click();
    await page.locator(".delivery-status", { hasText: "succeeded" }).waitFor({ timeout: 20_000 });
    expect(receiver.received).toHaveLength(2);
    expect(await page.locator(".detail tr", { hasText: "booking.held" }).textContent()).toMatch(
      /500.*200/,
    );
    expect(webhook?.id).toBeTruthy();
    await receiver.stop();
    await page.close();
  });

  it("resources and services: schedules, overrides (added and deleted from the console) and policy versions", async () => {
    const w = await world();
    await w.resources.setWeeklySchedule({
      resourceId: w.a,
      weeklySchedule: { windows: [{ weekday: 1, startTime: "09:00", endTime: "17:00" }] },
    });
    await w.resources.createOverride({
      resourceId: w.a,
      kind: OverrideKind.BLOCK,
      title: "Repairs",
      startDate: "2031-05-06",
      allDay: true,
    });
    await w.resources.createOverride({
      resourceId: w.a,
      kind: OverrideKind.BLOCK,
      title: "Inventory",
      startDate: "2031-05-30",
      allDay: true,
      recurrence: { frequency: RecurrenceFrequency.MONTHLY, weekOfMonth: -1, weekday: 5 },
    });
    await w.catalog.updateService({
      service: { id: w.serviceId, policy: { durations: [minutes(45)], slotInterval: minutes(15) } },
      updateMask: { paths: ["policy"] },
    });
    const page = await signedIn(browser, server.url, w.key, { hash: "#/catalog" });
    const roomA = page.locator("tr", { hasText: "Room A" }).first();
    await expect(roomA.textContent()).resolves.toContain("Mon 09:00–17:00");
    await roomA.getByRole("button", { name: "Overrides" }).click();
    await expect(page.locator(".detail tr", { hasText: "Repairs" }).textContent()).resolves.toMatch(
      /block.*Repairs.*2031-05-06.*all dayDelete$/,
    );
    await expect(
      page.locator(".detail tr", { hasText: "Inventory" }).textContent(),
    ).resolves.toMatch(/Inventory.*all daymonthly on the last Fri/);

    // Adding an override from the console: the server has it as entered.
    const form = page.locator(".detail form");
    await form.getByLabel("Kind").selectOption({ label: "open (extra time)" });
    await form.getByLabel("Title").fill("Late opening");
    await form.getByLabel("From").fill("2031-06-02");
    await form.getByLabel("To", { exact: true }).fill("2031-06-03");
    await form.getByLabel("All day").uncheck();
    await form.getByLabel("Starts").fill("18:00");
    await form.getByLabel("Ends").fill("21:00");
    await form.getByRole("button", { name: "Add override" }).click();
    await expect(
      page.locator(".detail tr", { hasText: "Late opening" }).textContent(),
    ).resolves.toMatch(/open.*Late opening.*2031-06-02.*2031-06-03.*18:00–21:00/);
    const listed = async () =>
      (await w.resources.listOverrides({ resourceId: w.a })).overrides.map((o) => ({
        kind: o.kind,
        title: o.title,
        from: o.startDate,
        to: o.endDate,
        times: o.allDay ? "all day" : `${o.startTime}-${o.endTime}`,
      }));
    expect(await listed()).toEqual([
      {
        kind: OverrideKind.BLOCK,
        title: "Repairs",
        from: "2031-05-06",
        to: "",
        times: "all day",
      },
      {
        kind: OverrideKind.BLOCK,
        title: "Inventory",
        from: "2031-05-30",
        to: "",
        times: "all day",
      },
      {
        kind: OverrideKind.OPEN,
        title: "Late opening",
        from: "2031-06-02",
        to: "2031-06-03",
        times: "18:00-21:00",
      },
    ]);

    // A repeating one: every other week, on Mondays and Wednesdays, until the end of June.
    await form.getByLabel("Title").fill("Lunch");
    await form.getByLabel("From").fill("2031-06-02");
    await form.getByLabel("All day").uncheck();
    await form.getByLabel("Starts").fill("12:00");
    await form.getByLabel("Ends").fill("13:00");
    await form.getByLabel("Repeats").selectOption({ label: "weekly" });
    await form.getByLabel("Every").fill("2");
    await form.getByLabel("Mon", { exact: true }).check();
    await form.getByLabel("Wed", { exact: true }).check();
    await form.getByLabel("Until").fill("2031-06-30");
    await form.getByRole("button", { name: "Add override" }).click();
    await expect(page.locator(".detail tr", { hasText: "Lunch" }).textContent()).resolves.toMatch(
      /block.*Lunch.*2031-06-02.*12:00–13:00.*weekly every 2 weeks Mon, Wed until 2031-06-30/,
    );
    const lunch = (await w.resources.listOverrides({ resourceId: w.a })).overrides.find(
      (o) => o.title === "Lunch",
    );
    expect(lunch?.recurrence).toMatchObject({
      frequency: RecurrenceFrequency.WEEKLY,
      interval: 2,
      weekdays: [1, 3],
      monthDay: 0,
      until: "2031-06-30",
    });

    // One the server refuses shows its reason and field, and adds nothing.
    await form.getByLabel("Title").fill("Backwards");
    await form.getByLabel("From").fill("2031-07-10");
    await form.getByLabel("To", { exact: true }).fill("2031-07-01");
    await form.getByLabel("All day").check();
    await form.getByRole("button", { name: "Add override" }).click();
    const problem = page.locator(".detail .problem");
    await expect(problem.locator(".reason").textContent()).resolves.toBe("VALIDATION_ERROR");
    expect(await problem.textContent()).toContain("end_date");
    expect(await listed()).toHaveLength(4);

    // Deleting one, after the browser's confirmation.
    page.once("dialog", (d) => void d.accept());
    await page
      .locator(".detail tr", { hasText: "Repairs" })
      .getByRole("button", { name: "Delete" })
      .click();
    await page.locator(".detail tr", { hasText: "Repairs" }).waitFor({ state: "detached" });
    expect((await listed()).map((o) => o.title)).toEqual(["Inventory", "Late opening", "Lunch"]);
    await page
      .locator("tr", { hasText: "Fitting" })
      .getByRole("button", { name: "Policy versions" })
      .click();
    await page.locator(".detail tr", { hasText: "v2" }).waitFor();
    expect(await page.locator(".detail tr", { hasText: "v2" }).textContent()).toContain("45 min");
    expect(await page.locator(".detail tr", { hasText: "v1" }).textContent()).toContain("30 min");
    await page.close();
  });

  it("resources past the first page (100) are listed on the catalog page and can be picked in the calendar", async () => {
    const w = await world();
    // 111 more: 113 resources, more than one page of ListResources.
    const names = Array.from({ length: 111 }, (_, i) => `Desk ${String(i + 1).padStart(3, "0")}`);
    for (let i = 0; i < names.length; i += 25) {
      await Promise.all(
        names.slice(i, i + 25).map((name) => w.resources.createResource({ name, timeZone: "UTC" })),
      );
    }
    const page = await signedIn(browser, server.url, w.key, { hash: "#/catalog" });
    await page.locator("tr", { hasText: "Desk 111" }).waitFor();
    expect(await page.locator("tr", { hasText: /Desk \d{3}/ }).count()).toBe(111);
    expect(await page.locator("[data-cut]").count()).toBe(0);

    await page.goto(`${server.url}/console/#/calendar`);
    await page.locator(".picker summary").click();
    await page.getByRole("checkbox", { name: "Desk 111" }).check();
    await page.locator(".picker summary").click();
    await page.locator(".resource-head", { hasText: "Desk 111" }).first().waitFor();
    expect(await page.locator(".picker summary").textContent()).toContain("Desk 111");
    await page.close();
  });

  it("a week with more bookings than the calendar reads (1,000) says so above the calendar", async () => {
    const { key } = await newTenant(server.url);
    const resources = clientFor(ResourceService, server.url, key);
    const { resource } = await resources.createResource({
      name: "Hall",
      timeZone: "UTC",
      capacity: 2000,
    });
    const hall = resource?.id as string;
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Seat",
      resourceIds: [hall],
      policy: { durations: [minutes(30)], slotInterval: minutes(30) },
    });
    const bookings = clientFor(BookingService, server.url, key);
    const first = Math.ceil((Date.now() + 2 * 60 * MINUTE) / (30 * MINUTE)) * 30 * MINUTE;
    const at = (i: number) => {
      const start = first + (i % 4) * 30 * MINUTE;
      return {
        serviceId: service?.id as string,
        resourceId: hall,
        startTime: timestampFromMs(start),
        endTime: timestampFromMs(start + 30 * MINUTE),
      };
    };
    // 1,001 confirmed bookings: one more than the calendar reads per resource and week.
    for (let i = 0; i < 1001; i += 50) {
      await Promise.all(
        Array.from({ length: Math.min(50, 1001 - i) }, (_, j) => bookings.createBooking(at(i + j))),
      );
    }
    const page = await signedIn(browser, server.url, key, { hash: "#/calendar" });
    await page.locator('[data-focus="view-week"]').click();
    // The bookings' week: the next one when they start after Sunday midnight.
    const mondayOf = (ms: number) => {
      const day = Math.floor(ms / DAY);
      return day - ((day + 3) % 7);
    };
    if (mondayOf(first + 2 * 30 * MINUTE) !== mondayOf(Date.now())) {
      await page.locator('[data-focus="next"]').click();
    }
    const warning = page.locator("[data-cut]");
    await expect
      .poll(() => warning.textContent(), { timeout: 30_000 })
      .toBe(
        "Hall: showing the first 1,000 bookings of this week; later ones are not shown, narrow to one day.",
      );
    expect(await page.locator("[data-booking]").count()).toBe(1000);
    await page.close();
  }, 180_000);

  it("a key without write scopes is offered no write action on any page", async () => {
    const w = await world();
    const { apiKey } = await clientFor(KeyService, server.url, w.key).createApiKey({
      scopes: ["bookings.read", "catalog.read", "events.read"],
    });
    await w.bookings.createHold(w.at(w.a));
    const page = await signedIn(browser, server.url, apiKey);
    const nav = await page.getByRole("navigation").getByRole("link").allTextContents();
    expect(nav).toEqual(["Calendar", "Resources & services", "Events"]);
    await page.locator(".slot").first().waitFor();
    expect(await page.locator("button.slot").count()).toBe(0);
    expect(await page.locator(".booking.movable").count()).toBe(0);
    await page.goto(`${server.url}/console/#/catalog`);
    await page.locator("tr", { hasText: "Room A" }).first().waitFor();
    // Reading only (a calendar feed needs bookings.read, no more).
    expect(new Set(await page.locator("main button").allTextContents())).toEqual(
      new Set(["Overrides", "Policy versions", "Calendar feed"]),
    );
    // A resource's overrides are shown without the form or a Delete.
    await w.resources.createOverride({
      resourceId: w.a,
      kind: OverrideKind.BLOCK,
      title: "Closed",
      startDate: "2031-05-06",
      allDay: true,
      recurrence: { frequency: RecurrenceFrequency.WEEKLY },
    });
    await page
      .locator("tr", { hasText: "Room A" })
      .getByRole("button", { name: "Overrides" })
      .click();
    // Weekly without weekdays: on its start date's, a Tuesday.
    await expect(page.locator(".detail tr", { hasText: "Closed" }).textContent()).resolves.toMatch(
      /all dayweekly Tue$/,
    );
    expect(await page.locator(".detail form").count()).toBe(0);
    expect(await page.locator(".detail button").count()).toBe(0);
    await page.goto(`${server.url}/console/#/events`);
    await page.locator("tr[data-event]").first().waitFor();
    expect(await page.locator("main button").count()).toBe(0);
    await page.close();
  });

  it("at phone width (390 px) no page scrolls sideways and each page's main actions can be reached", async () => {
    const w = await world();
    const noon = Math.floor(Date.now() / DAY) * DAY + DAY + 12 * 60 * MINUTE;
    await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.a,
      startTime: timestampFromMs(noon),
      endTime: timestampFromMs(noon + 30 * MINUTE),
    });
    await clientFor(KeyService, server.url, w.key).createApiKey({ scopes: ["events.read"] });
    const receiver = await webhookReceiver({ secrets: () => [] });
    await clientFor(WebhookService, server.url, w.key).createWebhook({
      url: receiver.url(),
      eventTypes: ["*"],
    });
    const page = await signedIn(browser, server.url, w.key, { width: 390, height: 844 });
    const reachable = async (name: string | RegExp, role: "button" | "link" = "button") => {
      const target = page.getByRole(role, { name }).first();
      await target.scrollIntoViewIfNeeded();
      const box = await target.boundingBox();
      expect(box, String(name)).not.toBeNull();
      expect((box?.x ?? -1) >= 0 && (box?.x ?? 0) + (box?.width ?? 0) <= 390, String(name)).toBe(
        true,
      );
      await target.click({ trial: true });
    };
    // The calendar opens as a day on a phone.
    await page.getByRole("button", { name: "Day", pressed: true }).waitFor();
    await page.getByRole("button", { name: "Next", exact: true }).click();
    await page.locator(".booking").first().waitFor();
    expect(await overflowsSideways(page)).toBe(false);
    for (const name of ["Previous", "Today", "Next", "Week", "Sign out"]) await reachable(name);
    await reachable(/^Hold /);
    await reachable(/^held /);
    for (const [hash, actions] of [
      ["#/catalog", ["Overrides", "Policy versions", "Calendar feed"]],
      ["#/events", []],
      ["#/webhooks", ["Deliveries"]],
      ["#/keys", ["Create key", "Revoke"]],
    ] as const) {
      await page.goto(`${server.url}/console/${hash}`);
      await page.locator("h2").waitFor();
      await page.locator("table, p").first().waitFor();
      expect(await overflowsSideways(page), hash).toBe(false);
      for (const name of ["Calendar", "Resources & services", "Events", "Webhooks", "API keys"]) {
        await reachable(name, "link");
      }
      for (const name of actions) await reachable(name);
    }
    // A resource's overrides, with the form adding one.
    await page.goto(`${server.url}/console/#/catalog`);
    await page.getByRole("button", { name: "Overrides" }).first().click();
    await page.locator(".detail form").waitFor();
    expect(await overflowsSideways(page), "overrides").toBe(false);
    await reachable("Add override");
    await receiver.stop();
    await page.close();
  });
});

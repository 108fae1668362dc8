import type { Browser, Page } from "playwright-core";
import { beforeAll, describe, expect, it, vi } from "vitest";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { loadConfig } from "../../src/config.js";
import { type Holdfast, startHoldfast } from "../../src/server.js";
import { at, bookingWorld } from "../support/booking.js";
import { launchChromium, signedIn } from "../support/browser.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase, retireAll } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import { freePort } from "../support/process.js";
import { relay } from "../support/relay.js";
import { ADMIN_KEY, startTestServer } from "../support/server.js";

/**
 * The console's live event log in Debian's Chromium, against a real server
 * that stops and starts again on the same port (the console's origin).
 */

let browser: Browser;

beforeAll(async () => {
  browser = await launchChromium();
}, 60_000);

/** The event log's rows, newest first: the booking each is about, and where it came from. */
const shown = (page: Page) =>
  page.locator("tr[data-event]").evaluateAll((rows) =>
    rows.map((r) => ({
      booking: r.querySelectorAll("td")[2]?.textContent,
      source: r.getAttribute("data-source"),
    })),
  );

describe("the console's event log", { timeout: 180_000 }, () => {
  it("resumes after a server's stop from the cursor the stop gives it, past events its filter skipped, though retention deleted them", async () => {
    const databaseUrl = await freshDatabase();
    const config = loadConfig({
      PORT: String(await freePort()),
      HOLDFAST_LOG_LEVEL: "error",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    });
    let server: Holdfast = await startHoldfast(config, databaseUrl);
    let page: Page | undefined;
    try {
      const w = await bookingWorld(server.url, { resources: 2 });
      const [watched, other] = w.resourceIds as [string, string];
      const hold = async (resourceId: string, hour: number) =>
        (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(6, hour) }))
          .booking?.id as string;
      const matched = await hold(watched, 9);

      page = await signedIn(browser, server.url, w.key, { hash: "#/events" });
      await page.locator("#event-resource").selectOption({ label: "R0" });
      const status = page.getByRole("status");
      await expect.poll(() => status.textContent()).toBe("1 from history · live");
      // The log's stream and the console's own (the calendar's live updates).
      const metrics = () => scrape(server.url);
      await vi.waitFor(
        async () => expect((await metrics()).get("holdfast_event_streams")).toBe(2),
        { timeout: 30_000, interval: 50 },
      );

      // Only events the log's filter skips, read by every stream.
      for (let h = 10; h < 13; h++) await hold(other, h);
      await vi.waitFor(
        async () => {
          const m = await metrics();
          expect(m.get("holdfast_event_streams")).toBe(2);
          expect(m.get("holdfast_event_stream_lag_events")).toBe(0);
          const { events } = await clientFor(EventService, server.url, w.key).listEvents({});
          expect(events).toHaveLength(4);
        },
        { timeout: 30_000, interval: 50 },
      );

      // A graceful stop ends the streams with UNAVAILABLE and a cursor; longer
      // than the retention later, every event so far is deleted.
      await server.close();
      await retireAll(databaseUrl);
      server = await startHoldfast(config, databaseUrl);
      const meanwhile = await hold(watched, 14);
      // The log resumed from past the skipped events: the new event comes
      // live, under the one from history. Before the fix it resumed from the
      // history's cursor, was refused (CURSOR_EXPIRED) and read the history
      // again, which retention had emptied of the first event.
      await expect
        .poll(() => shown(page as Page), { timeout: 60_000 })
        .toEqual([
          { booking: meanwhile, source: "live" },
          { booking: matched, source: "history" },
        ]);
      expect(await status.textContent()).toBe("1 from history · live");
    } finally {
      await page?.close();
      await server.close();
    }
  });

  it("resumes after a dropped connection from the cursor of its stream's heartbeat, past events its filter skipped, though retention deleted them", async () => {
    const server = await startTestServer({ HOLDFAST_STREAM_HEARTBEAT_MS: "200" });
    // The page talks to the server through a relay that can drop its connections.
    const through = await relay(server.url);
    let page: Page | undefined;
    try {
      const w = await bookingWorld(server.url, { resources: 2 });
      const [watched, other] = w.resourceIds as [string, string];
      const hold = async (resourceId: string, hour: number) =>
        (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(6, hour) }))
          .booking?.id as string;
      const matched = await hold(watched, 9);

      page = await signedIn(browser, through.url, w.key, { hash: "#/events" });
      await page.locator("#event-resource").selectOption({ label: "R0" });
      const status = page.getByRole("status");
      await expect.poll(() => status.textContent()).toBe("1 from history · live");
      await vi.waitFor(
        async () => expect((await scrape(server.url)).get("holdfast_event_streams")).toBe(2),
        { timeout: 30_000, interval: 50 },
      );

      // Only events the log's filter skips.
      for (let h = 10; h < 13; h++) await hold(other, h);
      let skippedLast = "";
      await vi.waitFor(
        async () => {
          const { events } = await clientFor(EventService, server.url, w.key).listEvents({});
          expect(events).toHaveLength(4); // the matching one and the three skipped
          skippedLast = events.at(-1)?.cursor as string;
        },
        { timeout: 30_000, interval: 50 },
      );
      // The log's stream sends the cursor past them in a heartbeat (a
      // message with a cursor alone; the console's own stream, unfiltered,
      // had that cursor in its last event).
      await vi.waitFor(() => expect(through.received()).toContain(`{"cursor":"${skippedLast}"}`), {
        timeout: 30_000,
        interval: 50,
      });

      // The connections drop: no error carries a cursor. Meanwhile, longer
      // than the retention later, every event so far is deleted.
      through.drop();
      await retireAll(server.databaseUrl);
      through.restore();
      const meanwhile = await hold(watched, 14);
      // Before the fix the log resumed from the history's cursor, was
      // refused (CURSOR_EXPIRED) and read the history again, without the
      // first event.
      await expect
        .poll(() => shown(page as Page), { timeout: 60_000 })
        .toEqual([
          { booking: meanwhile, source: "live" },
          { booking: matched, source: "history" },
        ]);
      expect(await status.textContent()).toBe("1 from history · live");
    } finally {
      await page?.close();
      await through.close();
    }
  });
});

import { describe, expect, it, vi } from "vitest";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { at, bookingWorld } from "../support/booking.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase, retireAll } from "../support/database.js";
import { scrape } from "../support/metrics.js";
import {
  type CommandRun,
  freePort,
  type ServerProcess,
  spawnServer,
  startCli,
} from "../support/process.js";
import { relay } from "../support/relay.js";
import { ADMIN_KEY, startTestServer } from "../support/server.js";

/**
 * `holdfast events tail` as its own process, against a server process that
 * stops and starts again on the same port while the command runs.
 */

/** Waits for an observable state, failing with what the commands said if it never comes. */
const until = (check: () => void) => vi.waitFor(check, { timeout: 60_000, interval: 50 });

describe("holdfast events tail", () => {
  it("resumes after a server's stop from the cursor the stop gives it: past events its filter skipped, though retention deleted them, and having printed nothing", async () => {
    const databaseUrl = await freshDatabase();
    const env = {
      DATABASE_URL: databaseUrl,
      PORT: String(await freePort()),
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    };
    let server: ServerProcess = await spawnServer(env);
    const tails: ReturnType<typeof startCli>[] = [];
    try {
      const w = await bookingWorld(server.url, { resources: 2 });
      const [watched, other] = w.resourceIds as [string, string];
      const hold = async (resourceId: string, hour: number) =>
        (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(5, hour) }))
          .booking?.id as string;
      const { nextCursor } = await clientFor(EventService, server.url, w.key).listEvents({});
      const cli = { HOLDFAST_URL: server.url, HOLDFAST_KEY: w.key };
      // One tail gets a matching event before the stop, the other none at all.
      const byResource = startCli(
        ["events", "tail", "--resource", watched, "--after", nextCursor],
        cli,
      );
      const confirmed = startCli(
        ["events", "tail", "--type", "booking.confirmed", "--after", nextCursor],
        cli,
      );
      tails.push(byResource, confirmed);
      const streams = async () => (await scrape(server.url)).get("holdfast_event_streams");
      await until(async () => expect(await streams()).toBe(2));

      const matched = await hold(watched, 9);
      await until(() => expect(byResource.output().stdout).toContain(matched));
      const skipped: string[] = [];
      for (let h = 10; h < 13; h++) skipped.push(await hold(other, h));
      // Every stream has been offered every event: the tails' cursors are past the skipped ones.
      await until(async () => {
        const m = await scrape(server.url);
        expect(m.get("holdfast_event_streams")).toBe(2);
        expect(m.get("holdfast_event_stream_lag_events")).toBe(0);
        const { events } = await clientFor(EventService, server.url, w.key).listEvents({});
        expect(events).toHaveLength(4);
      });

      // A graceful stop (SIGTERM) ends both streams with UNAVAILABLE and a cursor.
      expect(await server.stop()).toBe(0);
      // Longer than the retention later, every event so far is deleted.
      await retireAll(databaseUrl);
      server = await spawnServer(env);
      const meanwhile = await hold(watched, 14);
      await w.bookings.confirmBooking({ bookingId: skipped[0] as string });
      await until(() => {
        // Not given up: before the fix, one resumed from its last event
        // (CURSOR_EXPIRED) and the other, having printed nothing, did not try.
        for (const tail of tails) expect(tail.output().code, tail.output().stderr).toBeNull();
        expect(byResource.output().stdout).toContain(meanwhile);
        expect(confirmed.output().stdout).toContain("booking.confirmed");
      });
      const lines = (run: CommandRun) => run.stdout.trim().split("\n");
      expect(lines(byResource.output())).toHaveLength(2);
      expect(lines(byResource.output())[0]).toContain(matched);
      expect(lines(confirmed.output())).toHaveLength(1);
      expect(lines(confirmed.output())[0]).toMatch(
        new RegExp(`booking\\.confirmed +${skipped[0]} +CONFIRMED`),
      );
      for (const tail of tails) {
        expect(tail.output().code, tail.output().stderr).toBeNull();
        expect(tail.output().stderr).toMatch(/stream interrupted: .*; resuming/);
        expect(tail.output().stderr).not.toContain("CURSOR_EXPIRED");
        tail.kill("SIGINT");
      }
      await until(() => {
        for (const tail of tails) expect(tail.output().code).toBe(0);
      });
    } finally {
      for (const tail of tails) tail.kill("SIGKILL");
      await server.stop();
    }
  }, 300_000);

  it("resumes from the cursor of the stream's heartbeat after a dropped connection, past events its filter skipped, though retention deleted them", async () => {
    const server = await startTestServer({ HOLDFAST_STREAM_HEARTBEAT_MS: "200" });
    const w = await bookingWorld(server.url, { resources: 2 });
    const [watched, other] = w.resourceIds as [string, string];
    const events = clientFor(EventService, server.url, w.key);
    const hold = async (resourceId: string, hour: number) =>
      (await w.bookings.createHold({ serviceId: w.serviceId, resourceId, ...at(5, hour) })).booking
        ?.id as string;
    const { nextCursor } = await events.listEvents({});
    // Each tail through a relay of its own: one from now, one after a cursor.
    const relays = [await relay(server.url), await relay(server.url)];
    const args = [
      ["events", "tail", "--resource", watched],
      ["events", "tail", "--resource", watched, "--after", nextCursor],
    ];
    const tails = relays.map((r, i) =>
      startCli(args[i] as string[], { HOLDFAST_URL: r.url, HOLDFAST_KEY: w.key }),
    );
    try {
      // Only events their filter skips.
      await until(async () =>
        expect((await scrape(server.url)).get("holdfast_event_streams")).toBe(2),
      );
      for (let h = 9; h < 12; h++) await hold(other, h);
      let skippedLast = "";
      await until(async () => {
        const all = (await events.listEvents({})).events;
        expect(all).toHaveLength(3);
        skippedLast = all.at(-1)?.cursor as string;
      });
      // The cursor past them reaches each tail in a heartbeat (it is no event's it is sent).
      await until(() => {
        for (const r of relays) expect(r.received()).toContain(skippedLast);
      });
      // The connections drop: no error carries a cursor. Meanwhile,
      // longer than the retention later, the skipped events are deleted.
      for (const r of relays) r.drop();
      await retireAll(server.databaseUrl);
      for (const r of relays) r.restore();
      const match = await hold(watched, 13);
      await until(() => {
        // Before heartbeats, the tail from now had no cursor and gave up,
        // and the other resumed from its --after: CURSOR_EXPIRED.
        for (const tail of tails) {
          expect(tail.output().code, tail.output().stderr).toBeNull();
          expect(tail.output().stdout).toContain(match);
        }
      });
      for (const tail of tails) {
        expect(tail.output().stdout.trim().split("\n")).toHaveLength(1);
        expect(tail.output().stderr).toMatch(/stream interrupted: .*; resuming/);
        tail.kill("SIGINT");
      }
      await until(() => {
        for (const tail of tails) expect(tail.output().code).toBe(0);
      });
    } finally {
      for (const tail of tails) tail.kill("SIGKILL");
      for (const r of relays) await r.close();
    }
  }, 300_000);
});

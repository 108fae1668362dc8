import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Temporal } from "temporal-polyfill";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { clientFor } from "../support/clients.js";
import {
  type CommandRun,
  runCommand,
  type ServerProcess,
  spawnServer,
} from "../support/process.js";

/**
 * The README's quickstart and TypeScript snippets, run exactly as written
 * against a fresh server started the way a newcomer starts it (`npm start`
 * with its embedded Postgres), so a change that breaks the README fails CI.
 */

const README = readFileSync("README.md", "utf8");

/** The text under a `## ` heading, up to the next one. */
function section(markdown: string, heading: string): string {
  const start = markdown.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`README has no section "${heading}"`);
  const end = markdown.indexOf("\n## ", start + 1);
  return markdown.slice(start, end < 0 ? undefined : end);
}

/** Fenced code blocks of a language, each with the prose before it; list-item indentation removed. */
function codeBlocks(markdown: string, lang: string): { code: string; before: string }[] {
  const fence = new RegExp(`^( *)\`\`\`${lang}\\n([\\s\\S]*?)^\\1\`\`\`$`, "gm");
  const blocks: { code: string; before: string }[] = [];
  let previousEnd = 0;
  for (const m of markdown.matchAll(fence)) {
    const indent = (m[1] ?? "").length;
    const code = (m[2] ?? "")
      .split("\n")
      .map((line) => line.slice(indent))
      .join("\n");
    blocks.push({ code, before: markdown.slice(previousEnd, m.index) });
    previousEnd = (m.index ?? 0) + m[0].length;
  }
  return blocks;
}

function bash(script: string, env: Record<string, string>): Promise<CommandRun> {
  return runCommand("bash", ["-c", script], {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/root",
    ...env,
  });
}

/** The wall-clock time of an RFC 3339 instant in New York: "Mon 09:00". */
function newYork(rfc3339: string): string {
  const t = Temporal.Instant.from(rfc3339).toZonedDateTimeISO("America/New_York");
  const day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][t.dayOfWeek - 1];
  return `${day} ${String(t.hour).padStart(2, "0")}:${String(t.minute).padStart(2, "0")}`;
}

const QUICKSTART_VARIABLES = [
  "TENANT_KEY",
  "AGENT_KEY",
  "RESOURCE_ID",
  "SERVICE_ID",
  "MONDAY",
  "SLOT_ID",
  "BOOKING_ID",
];

describe("README", () => {
  let server: ServerProcess;
  let dataDir: string;
  let env: Record<string, string>;
  /** The shell variables the quickstart left set, for the snippets that run after it. */
  const variables: Record<string, string> = {};

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "holdfast-readme-"));
    server = await spawnServer({ HOLDFAST_DATA_DIR: dataDir, PORT: "0" });
    // What a newcomer's second terminal has: the checkout, and PORT only if
    // they chose one (here: the free port the server took).
    env = { PORT: String(new URL(server.url).port), HOLDFAST_DATA_DIR: dataDir };
  });

  afterAll(async () => {
    await server?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("quickstart: every shell step runs as written and answers as the README says", async () => {
    const steps = codeBlocks(section(README, "Quickstart"), "sh").map((b) => b.code);
    expect(steps).toHaveLength(10);
    const script = [
      "set -euo pipefail",
      ...steps.flatMap((step, i) => [step, `echo "@@ step ${i + 1} done"`]),
      ...QUICKSTART_VARIABLES.map((v) => `echo "@@ ${v}=$${v}"`),
    ].join("\n");
    const run = await bash(script, env);
    expect(run.code, `${run.stdout}\n${run.stderr}`).toBe(0);

    const out = run.stdout.split(/^@@ step \d+ done\n/m).map((s) => s.trim());
    for (const m of run.stdout.matchAll(/^@@ (\w+)=(.*)$/gm))
      variables[m[1] as string] = m[2] ?? "";
    for (const v of QUICKSTART_VARIABLES) expect(variables[v], v).not.toBe("");

    expect(out[0]).toBe(""); // 1: the helper only
    expect(out[1]).toMatch(/^hf_\S+$/); // 2: the tenant's key
    expect(out[2]).toMatch(/^hf_\S+$/); // 3: the agent's key
    expect(out[3]).toBe(variables.RESOURCE_ID);
    expect(out[3]).toMatch(/^rsc_/);
    expect(out[4]).toMatch(/^svc_/);

    // 6: three slots, the first at 09:00 New York time next Monday, whatever today is.
    const listed = JSON.parse(out[5] as string) as {
      slots: { slotId: string; startTime: string; localStartTime: string }[];
      timeZones: Record<string, string>;
    };
    expect(listed.slots.map((s) => newYork(s.startTime))).toEqual([
      "Mon 09:00",
      "Mon 09:30",
      "Mon 10:00",
    ]);
    expect(listed.slots[0]?.startTime.slice(0, 10)).toBe(variables.MONDAY);
    expect(listed.slots[0]?.localStartTime).toMatch(/^\d{4}-\d\d-\d\dT09:00:00-0[45]:00$/);
    expect(Date.parse(listed.slots[0]?.startTime ?? "")).toBeGreaterThan(Date.now());
    expect(listed.timeZones[variables.RESOURCE_ID as string]).toBe("America/New_York");
    expect(variables.SLOT_ID).toBe(listed.slots[0]?.slotId);

    expect(out[6]).toBe(variables.BOOKING_ID); // 7: the hold
    // 8: the conflict names its reason and offers the next free times; the second caller takes the first.
    const [reason, alternatives, secondHold] = (out[7] as string).split("\n");
    expect(reason).toBe("SLOT_UNAVAILABLE");
    const offered = JSON.parse(alternatives as string) as { startTime: string }[];
    expect(offered.map((s) => newYork(s.startTime))).toEqual([
      "Mon 09:30",
      "Mon 10:00",
      "Mon 10:30",
    ]);
    expect(secondHold).toBe("BOOKING_STATUS_HELD");
    expect(out[8]).toBe("BOOKING_STATUS_CONFIRMED"); // 9

    // 10: the three events, in commit order, on Dr Smith's clock.
    const events = (out[9] as string).split("\n");
    expect(events).toHaveLength(3);
    expect(events.map((line) => line.split(/\s+/)[1])).toEqual([
      "booking.held",
      "booking.held",
      "booking.confirmed",
    ]);
    expect(events[0]).toContain(variables.BOOKING_ID);
    expect(events[2]).toContain(variables.BOOKING_ID);
    for (const line of events)
      expect(line).toMatch(/Mon \d{4}-\d{2}-\d{2} 09:[03]0-\d\d:\d\d {2}America\/New_York/);

    // What the shell saw is what the server holds.
    const bookings = clientFor(BookingService, server.url, variables.TENANT_KEY);
    const { booking } = await bookings.getBooking({ bookingId: variables.BOOKING_ID as string });
    expect(booking?.status).toBe(BookingStatus.CONFIRMED);
    expect(booking?.attendee?.name).toBe("Ada");
  }, 300_000);

  it("every TypeScript snippet type-checks, and runs as its text says", async () => {
    expect(variables.SERVICE_ID, "the quickstart ran first").toBeDefined();
    const blocks = codeBlocks(README, "ts");
    // Next to the repository's own code, so `./src/...` and `./gen/...` imports resolve.
    const files = blocks.map((_, i) => `.readme-snippet-${process.pid}-${i}.ts`);
    const tsconfig = `.readme-snippet-${process.pid}.tsconfig.json`;
    try {
      // What `npm install` of the client package provides, from its sources here.
      const here = (code: string) =>
        code
          .replaceAll('from "@holdfast/client/web"', 'from "./clients/typescript/src/web.js"')
          .replaceAll('from "@holdfast/client"', 'from "./clients/typescript/src/index.js"');
      await Promise.all(blocks.map((b, i) => writeFile(files[i] as string, here(b.code))));
      await writeFile(tsconfig, JSON.stringify({ extends: "./tsconfig.json", include: files }));
      const typecheck = await bash(`node_modules/.bin/tsc --noEmit -p ${tsconfig}`, {});
      expect(typecheck.code, typecheck.stdout + typecheck.stderr).toBe(0);

      const outputs = new Map<string, string>();
      for (const [i, block] of blocks.entries()) {
        // The prose says how to run it, e.g. `HOLDFAST_KEY=$TENANT_KEY npx tsx room.ts`.
        const said = [...block.before.matchAll(/`((?:\w+=\$\w+ )*)npx tsx (\w+\.ts)`/g)].at(-1);
        const command = `${said?.[1] ?? ""}npx tsx ${files[i]}`;
        const run = await bash(command, { HOLDFAST_URL: server.url, ...variables });
        expect(run.code, `${command}\n${run.stdout}\n${run.stderr}`).toBe(0);
        if (said) outputs.set(said[2] as string, run.stdout.trim());
      }
      expect([...outputs.keys()]).toEqual(["room.ts", "hold.ts"]);
      expect(outputs.get("room.ts")).toMatch(/^rsc_\S+ Room 4$/);
      const [held, refused] = (outputs.get("hold.ts") ?? "").split("\n");
      expect(held).toMatch(/^bkg_\S+ CONFIRMED$/);
      // As many alternatives as are free near the taken time; late on a Friday
      // in the resource's zone, they come from the next week.
      expect(refused).toMatch(/^SLOT_UNAVAILABLE( slot_\S+)+$/);
    } finally {
      await Promise.all([...files, tsconfig].map((f) => rm(f, { force: true })));
    }
  }, 300_000);
});

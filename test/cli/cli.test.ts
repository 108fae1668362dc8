import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import pg from "pg";
import { Temporal } from "temporal-polyfill";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { loadConfig } from "../../src/config.js";
import { recordWebhookDisabled } from "../../src/db/outbox.js";
import { startHoldfast } from "../../src/server.js";
import { clientFor, newTenant, rejected } from "../support/clients.js";
import { emptyDatabase, freshDatabase } from "../support/database.js";
import { type CommandRun, freePort, startCli } from "../support/process.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

/**
 * The `holdfast` command, run as its own process (what `npx holdfast` runs)
 * against a real server and database.
 */

function holdfast(args: string[], env: Record<string, string>): Promise<CommandRun> {
  const child = startCli(args, env);
  return new Promise((resolve) => child.once("close", () => resolve(child.output())));
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 600 && !check(); i++) await new Promise((r) => setTimeout(r, 50));
  if (!check()) throw new Error(`timed out waiting for ${what}`);
}

const STACK_FRAME = /\n\s+at /;

/**
 * Text a tenant or the public could set before the API refused it (rows
 * written then may hold it): an OSC title, a screen clear, a
 * colour, a line break and a fake key row, bidi overrides, a C1 CSI and a
 * line separator. Ends in "!" so no name check trims it.
 */
const HOSTILE =
  "x\u001b]0;pwned\u0007\u001b[2J\u001b[31mFAKE\nkey_fake  hf_  tenants.manage\u202e\u2066\u009b\u2028!";
/** HOSTILE as the commands print it. */
const HOSTILE_SHOWN =
  "x\\x1b]0;pwned\\x07\\x1b[2J\\x1b[31mFAKE\\nkey_fake  hf_  tenants.manage\\u202e\\u2066\\x9b\\u2028!";

/** What a terminal acts on or reorders a line by, a line break too: none may reach it inside a line. */
const TERMINAL_CONTROL =
  /[\p{Cc}\p{Zl}\p{Zp}\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]/u;

/** The lines of `text` (each ended by a line break) that carry a control character. */
function linesWithControls(text: string): string[] {
  return text
    .replace(/\n$/, "")
    .split("\n")
    .filter((line) => TERMINAL_CONTROL.test(line));
}

/** Next Monday (after today) at `hh:mm` New York time, with its offset: "2030-03-04T09:00:00-05:00". */
function nextMondayInNewYork(hhmm: string): { date: string; at: string } {
  const today = Temporal.Now.plainDateISO("America/New_York");
  const date = today.add({ days: 8 - today.dayOfWeek });
  const at = Temporal.PlainDateTime.from(`${date.toString()}T${hhmm}`)
    .toZonedDateTime("America/New_York")
    .toString({ timeZoneName: "never", smallestUnit: "second" });
  return { date: date.toString(), at };
}

describe("holdfast (command line)", () => {
  let server: TestServer;
  let database: Record<string, string>;

  beforeAll(async () => {
    server = await startTestServer();
    database = { DATABASE_URL: server.databaseUrl };
  });

  it("answers bad arguments with the usage and exit code 2, never a stack trace", async () => {
    const api = { HOLDFAST_URL: server.url, HOLDFAST_KEY: "hf_any" };
    const cases: [string[], Record<string, string>, RegExp][] = [
      [[], {}, /Usage: holdfast/],
      [["bogus"], {}, /unknown command 'bogus'/],
      [["hold", "--start", "2030-03-04T09:00"], api, /expected a time with an offset/],
      [["hold", "--slot", "s", "--start", "2030-03-04T09:00Z"], api, /not both/],
      // Checked inside the API call, yet still a usage error, like `hold`.
      [["reschedule", "bkg_x"], api, /error: give --slot, or --start with --end or --duration\n/],
      [["slots"], api, /required option '--service <service-id>'/],
      [["slots", "--service", "svc_1"], { HOLDFAST_URL: server.url }, /set HOLDFAST_KEY/],
      // Named by the flag given, not the API's field (scopes[0]).
      [
        ["keys", "create", "--scopes", "everything"],
        database,
        /--scopes \(value 1\): is not a scope/,
      ],
      // A line a setting, as the server says them.
      [
        ["status"],
        { DATABASE_URL: "mysql://nope" },
        /error: invalid configuration:\n {2}DATABASE_URL: must be a postgres/,
      ],
    ];
    const runs = await Promise.all(cases.map(([args, env]) => holdfast(args, env)));
    runs.forEach((run, i) => {
      const [args, , message] = cases[i] as (typeof cases)[number];
      const said = `holdfast ${args.join(" ")}:\n${run.stderr}`;
      expect(run.code, said).toBe(2);
      expect(run.stderr, said).toMatch(message);
      expect(run.stderr, said).toMatch(/usage/i);
      expect(run.stderr, said).not.toMatch(STACK_FRAME);
      expect(run.stdout, said).toBe("");
    });

    const help = await holdfast(["hold", "--help"], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("Usage: holdfast hold [options]");
  }, 300_000);

  it("creates tenants and keys in the database, and the running server honours them at once", async () => {
    const made = await holdfast(["--json", "tenants", "create", "CLI Clinic"], database);
    expect(made.code, made.stderr).toBe(0);
    const tenant = JSON.parse(made.stdout) as {
      tenant: { id: string; name: string };
      apiKey: string;
    };
    expect(tenant.tenant.name).toBe("CLI Clinic");
    const resources = clientFor(ResourceService, server.url, tenant.apiKey);
    expect((await resources.listResources({})).resources).toEqual([]);

    const again = await holdfast(["tenants", "create", "CLI Clinic"], database);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain("TENANT_NAME_TAKEN");
    expect(again.stderr).not.toMatch(STACK_FRAME);

    const key = await holdfast(
      [
        "keys",
        "create",
        "--tenant",
        "CLI Clinic",
        "--scopes",
        "bookings.read",
        "--description",
        "agent",
      ],
      database,
    );
    expect(key.code, key.stderr).toBe(0);
    const secret = /^\s+(hf_\S+)$/m.exec(key.stdout)?.[1] as string;
    const keyId = /Created key (key_\S+)/.exec(key.stdout)?.[1] as string;
    const bookings = clientFor(BookingService, server.url, secret);
    expect((await bookings.listBookings({})).bookings).toEqual([]);
    await rejected(
      clientFor(ResourceService, server.url, secret).listResources({}),
      Code.PermissionDenied,
      "MISSING_SCOPE",
    );

    const listed = await holdfast(
      ["--json", "keys", "list", "--tenant", tenant.tenant.id],
      database,
    );
    const keys = (JSON.parse(listed.stdout) as { keys: { id: string; scopes: string[] }[] }).keys;
    expect(keys.map((k) => k.id)).toContain(keyId);
    expect(keys.find((k) => k.id === keyId)?.scopes).toEqual(["bookings.read"]);
    expect(listed.stdout).not.toContain(secret);

    // The server has the key cached from the call above; the revocation reaches it anyway.
    const revoked = await holdfast(["keys", "revoke", keyId, "--tenant", "CLI Clinic"], database);
    expect(revoked.code, revoked.stderr).toBe(0);
    await rejected(bookings.listBookings({}), Code.Unauthenticated, "UNAUTHENTICATED");
    const table = await holdfast(
      ["keys", "list", "--tenant", "CLI Clinic", "--include-revoked"],
      database,
    );
    expect(table.stdout).toMatch(new RegExp(`${keyId}.*bookings\\.read.*agent.*Z\\s+\\S+Z\\n`));

    const unknown = await holdfast(["keys", "revoke", "key_nope"], database);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no key key_nope in tenant "default"');
    const nobody = await holdfast(["keys", "list", "--tenant", "Nobody"], database);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toContain('no tenant with the id or name "Nobody"');
  }, 300_000);

  it("sets a tenant's rate limit and quotas and shows its usage; the running server honours them", async () => {
    const name = `Limits ${Math.random().toString(36).slice(2)}`;
    const t = await newTenant(server.url, name);
    const limited = await holdfast(
      ["tenants", "rate-limit", name, "--requests-per-second", "7", "--burst", "9"],
      database,
    );
    expect(limited.code, limited.stderr).toBe(0);
    expect(limited.stdout).toContain("7 calls a second, 9 at once");
    let header: Headers | undefined;
    const resources = clientFor(ResourceService, server.url, t.key);
    await resources.listResources(
      {},
      {
        onHeader: (h) => {
          header = h;
        },
      },
    );
    expect(header?.get("ratelimit-policy")).toBe('"tenant";q=9;w=2, "key";q=9;w=2');

    const capped = await holdfast(["tenants", "quotas", t.tenantId, "--resources", "1"], database);
    expect(capped.code, capped.stderr).toBe(0);
    expect(capped.stdout).toContain("resources 1");
    await resources.createResource({ name: "A", timeZone: "UTC", capacity: 1 });
    await rejected(
      resources.createResource({ name: "B", timeZone: "UTC", capacity: 1 }),
      Code.ResourceExhausted,
      "LIMIT_REACHED",
    );

    const usage = await holdfast(["--json", "tenants", "usage", name], database);
    expect(usage.code, usage.stderr).toBe(0);
    const shown = JSON.parse(usage.stdout) as {
      tenantId: string;
      rateLimits: { policy: string; rateLimit: { requestsPerSecond: number; burst: number } }[];
      quotas: { quota: string; limit?: number; usage: string }[];
    };
    expect(shown.tenantId).toBe(t.tenantId);
    expect(shown.rateLimits).toMatchObject([
      { policy: "tenant", rateLimit: { requestsPerSecond: 7, burst: 9 } },
    ]);
    expect(shown.quotas.find((q) => q.quota === "resources")).toEqual({
      quota: "resources",
      limit: 1,
      usage: "1",
    });
    expect(shown.quotas.find((q) => q.quota === "active_holds")?.limit).toBeUndefined();
    const table = await holdfast(["tenants", "usage", name], database);
    expect(table.stdout).toMatch(/rate limit\s+7\/s, burst 9/);
    expect(table.stdout).toMatch(/resources\s+1\s+1\n/);

    // Back to the default, and every quota unlimited.
    const reset = await holdfast(["tenants", "rate-limit", name, "--default"], database);
    expect(reset.stdout).toContain("(the configured default)");
    expect((await holdfast(["tenants", "quotas", name], database)).stdout).toContain(
      "none (unlimited)",
    );
    await resources.createResource({ name: "B", timeZone: "UTC", capacity: 1 });

    // Bad numbers get the usage and exit code 2, naming the field.
    const bad: [string[], RegExp][] = [
      [
        ["tenants", "rate-limit", name, "--requests-per-second", "0", "--burst", "1"],
        /error: invalid request: --requests-per-second: must be at least 1/,
      ],
      [
        ["tenants", "rate-limit", name, "--requests-per-second", "5", "--burst", "2000000"],
        /error: invalid request: --burst: must be at most 1000000/,
      ],
      [["tenants", "rate-limit", name, "--default", "--burst", "2"], /or --default/],
      // One of the two alone is named, not passed on to the API's field check.
      [
        ["tenants", "rate-limit", name, "--requests-per-second", "10"],
        /error: --burst is required with --requests-per-second/,
      ],
      [
        ["tenants", "rate-limit", name, "--burst", "10"],
        /error: --requests-per-second is required with --burst/,
      ],
      [
        ["tenants", "quotas", name, "--active-holds", "1.5"],
        /error: invalid request: --active-holds: must be a whole number/,
      ],
      [
        ["tenants", "quotas", name, "--webhooks", "-3"],
        /error: invalid request: --webhooks: must be at least 1/,
      ],
      // Not a number at all: refused by the command, in its words, not zod's.
      [
        ["tenants", "rate-limit", name, "--requests-per-second", "abc", "--burst", "5"],
        /option '--requests-per-second <n>' argument 'abc' is invalid\. expected a number/,
      ],
      [
        ["tenants", "quotas", name, "--resources", "lots"],
        /option '--resources <n>' argument 'lots' is invalid\. expected a number/,
      ],
    ];
    const [nobody, ...runs] = await Promise.all([
      holdfast(["tenants", "usage", "Nobody"], database),
      ...bad.map(([args]) => holdfast(args, database)),
    ]);
    runs.forEach((run, i) => {
      const [args, message] = bad[i] as (typeof bad)[number];
      expect(run.code, `${args.join(" ")}: ${run.stderr}`).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stderr).not.toMatch(/rate_limit\.|quotas\./);
      expect(run.stderr).not.toMatch(STACK_FRAME);
    });
    expect(nobody?.code).toBe(1);
    expect(nobody?.stderr).toContain('no tenant with the id or name "Nobody"');
  }, 600_000);

  it("rotates the operator key: the new one manages tenants, the old one stops working", async () => {
    const first = await holdfast(["--json", "operator-key", "rotate"], database);
    expect(first.code, first.stderr).toBe(0);
    const one = JSON.parse(first.stdout) as {
      apiKey: string;
      key: { id: string; scopes: string[] };
    };
    expect(one.key.scopes).toContain("tenants.manage");
    const tenantsOne = clientFor(TenantService, server.url, one.apiKey);
    expect((await tenantsOne.listTenants({})).tenants.map((t) => t.name)).toContain("default");

    const second = await holdfast(["--json", "operator-key", "rotate"], database);
    const two = JSON.parse(second.stdout) as { apiKey: string; revoked: { id: string }[] };
    expect(two.revoked.map((k) => k.id)).toEqual([one.key.id]);
    await rejected(tenantsOne.listTenants({}), Code.Unauthenticated, "UNAUTHENTICATED");
    const tenantsTwo = clientFor(TenantService, server.url, two.apiKey);
    expect((await tenantsTwo.createTenant({ name: "made by the new key" })).tenant?.name).toBe(
      "made by the new key",
    );
  }, 300_000);

  it("migrates, and reports schema, instances and delivery backlog", async () => {
    const empty = { DATABASE_URL: await emptyDatabase() };
    const refused = await holdfast(["keys", "list"], empty);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/schema is at version 0 of \d+: run `holdfast migrate`/);
    const before = JSON.parse((await holdfast(["--json", "status"], empty)).stdout) as {
      schema: { applied: number; latest: number };
      outbox?: unknown;
    };
    expect(before.schema.applied).toBe(0);
    expect(before.schema.latest).toBeGreaterThan(0);
    expect(before.outbox).toBeUndefined();

    const migrated = await holdfast(["migrate"], empty);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(
      new RegExp(`^Applied 1, 2, .*; schema version ${before.schema.latest}\\.`),
    );
    expect((await holdfast(["migrate"], empty)).stdout).toBe(
      `Schema up to date (version ${before.schema.latest}).\n`,
    );
    expect((await holdfast(["tenants", "list"], empty)).stdout).toBe("(none)\n");

    // The server's database: this test's server is running on it.
    const { key } = await newTenant(server.url);
    const status = await holdfast(["--json", "status"], database);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout) as {
      schema: { applied: number; latest: number };
      instances: { since: string }[];
      webhooks: { undispatched: number; pending: number };
    };
    expect(s.schema.applied).toBe(s.schema.latest);
    expect(s.instances.length).toBeGreaterThanOrEqual(1);
    expect(s.webhooks.pending).toBe(0);
    const text = await holdfast(["status"], database);
    expect(text.stdout).toMatch(/^schema +version \d+ of \d+ \(up to date\)$/m);
    expect(text.stdout).toMatch(
      /^webhooks +dispatch \d+ events behind; 0 deliveries pending, 0 due$/m,
    );
    expect(key).toMatch(/^hf_/);
  }, 300_000);

  it("finds, holds, confirms, moves, lists and cancels bookings on the resource's clock", async () => {
    const { key } = await newTenant(server.url);
    const { resource } = await clientFor(ResourceService, server.url, key).createResource({
      name: "Dr Smith",
      kind: ResourceKind.PERSON,
      timeZone: "America/New_York",
      weeklySchedule: {
        windows: [1, 2, 3, 4, 5].map((weekday) => ({
          weekday,
          startTime: "09:00",
          endTime: "17:00",
        })),
      },
    });
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Consultation",
      resourceIds: [resource?.id as string],
      policy: { durations: [{ seconds: 1800n }] },
    });
    const api = { HOLDFAST_URL: server.url, HOLDFAST_KEY: key };
    const serviceId = service?.id as string;
    const monday = nextMondayInNewYork("10:00");
    const day = monday.date;

    const slots = await holdfast(
      ["slots", "--service", serviceId, "--date", day, "--limit", "3"],
      api,
    );
    expect(slots.code, slots.stderr).toBe(0);
    const lines = slots.stdout.trim().split("\n");
    expect(lines[0]).toMatch(/^WHEN \(LOCAL\) +ZONE +RESOURCE +LEFT +SLOT$/);
    expect(lines.slice(1).map((l) => l.split("  America")[0])).toEqual([
      `Mon ${day} 09:00-09:30`,
      `Mon ${day} 09:30-10:00`,
      `Mon ${day} 10:00-10:30`,
    ]);
    expect(lines[1]).toMatch(/America\/New_York \(-0[45]:00\) +rsc_\S+ +1 +slot_\S+$/);
    const firstSlot = lines[1]?.split(/\s+/).at(-1) as string;

    const held = await holdfast(["--json", "hold", "--slot", firstSlot, "--name", "Ada"], api);
    expect(held.code, held.stderr).toBe(0);
    const ada = (JSON.parse(held.stdout) as { booking: { id: string; status: string } }).booking;
    expect(ada.status).toBe("BOOKING_STATUS_HELD");

    const taken = await holdfast(["hold", "--slot", firstSlot, "--name", "Grace"], api);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toContain("SLOT_UNAVAILABLE");
    // On the resource's clock, like every other time the commands show.
    expect(taken.stderr).toMatch(
      new RegExp(`in the way: Mon ${day} 09:00-09:30  America/New_York \\(-0[45]:00\\) \\(HELD\\)`),
    );
    expect(taken.stderr).toMatch(
      new RegExp(`free instead:\\n  Mon ${day} 09:30-10:00  America/New_York`),
    );
    expect(taken.stderr).not.toMatch(STACK_FRAME);

    const byTime = await holdfast(
      [
        "hold",
        "--service",
        serviceId,
        "--start",
        monday.at,
        "--duration",
        "30m",
        "--name",
        "Grace",
      ],
      api,
    );
    expect(byTime.code, byTime.stderr).toBe(0);
    expect(byTime.stdout).toMatch(
      new RegExp(`HELD +Mon ${day} 10:00-10:30 +America/New_York.* Grace +in \\d+s`),
    );

    // The same key twice: one hold, answered twice.
    const keyed = [
      "--json",
      "hold",
      "--service",
      serviceId,
      "--start",
      nextMondayInNewYork("12:00").at,
    ];
    const once = await holdfast(
      [...keyed, "--duration", "30m", "--idempotency-key", "cli-test-1"],
      api,
    );
    const twice = await holdfast(
      [...keyed, "--duration", "30m", "--idempotency-key", "cli-test-1"],
      api,
    );
    expect(JSON.parse(twice.stdout)).toEqual(JSON.parse(once.stdout));

    const confirmed = await holdfast(["confirm", ada.id], api);
    expect(confirmed.stdout).toMatch(new RegExp(`${ada.id} +CONFIRMED +Mon ${day} 09:00-09:30`));
    const moved = await holdfast(
      ["reschedule", ada.id, "--start", nextMondayInNewYork("11:00").at],
      api,
    );
    expect(moved.code, moved.stderr).toBe(0);
    expect(moved.stdout).toMatch(new RegExp(`${ada.id} +CONFIRMED +Mon ${day} 11:00-11:30`));

    const listed = await holdfast(["--json", "bookings", "--status", "confirmed"], api);
    const confirmedOnes = (JSON.parse(listed.stdout) as { bookings: { id: string }[] }).bookings;
    expect(confirmedOnes.map((b) => b.id)).toEqual([ada.id]);
    const all = await holdfast(["bookings", "--service", serviceId], api);
    expect(all.stdout.trim().split("\n")).toHaveLength(4); // header and three bookings, by start

    const cancelled = await holdfast(
      ["--json", "cancel", ada.id, "--reason", "changed plans"],
      api,
    );
    const after = (
      JSON.parse(cancelled.stdout) as { booking: { status: string; cancelReason: string } }
    ).booking;
    expect(after).toMatchObject({
      status: "BOOKING_STATUS_CANCELLED",
      cancelReason: "changed plans",
    });

    const events = await holdfast(
      [
        "--json",
        "events",
        "tail",
        "--from-beginning",
        "--resource",
        resource?.id as string,
        "--limit",
        "6",
      ],
      api,
    );
    expect(events.code, events.stderr).toBe(0);
    const types = events.stdout
      .trim()
      .split("\n")
      .map((l) => (JSON.parse(l) as { type: string }).type);
    expect(types).toEqual([
      "booking.held",
      "booking.held",
      "booking.held",
      "booking.confirmed",
      "booking.rescheduled",
      "booking.cancelled",
    ]);

    const missing = await holdfast(["confirm", "bkg_nope"], api);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("BOOKING_NOT_FOUND");

    // A value only the server can judge is still a bad argument: exit code 2
    // and the usage, as for one the command checks itself, with the reason.
    // A field the message already names is not listed under it again.
    const badType = await holdfast(["events", "tail", "--type", "booking.nope"], api);
    expect(badType.code, badType.stderr).toBe(2);
    expect(badType.stderr).toContain("error: VALIDATION_ERROR: ");
    expect(badType.stderr).toContain("usage: holdfast events tail [options]");
    expect(badType.stderr.split("is not an event type").length - 1, badType.stderr).toBe(1);
    const badSlot = await holdfast(["hold", "--slot", "slot_forged", "--name", "Eve"], api);
    expect(badSlot.code, badSlot.stderr).toBe(2);
    expect(badSlot.stderr).toContain("error: INVALID_SLOT_ID: ");
    expect(badSlot.stderr).toContain("usage: holdfast hold [options]");
    expect(badSlot.stderr).not.toMatch(STACK_FRAME);
  }, 300_000);

  it("names, in a refusal by the server, the flag the person gave, never the API's field", async () => {
    const { key } = await newTenant(server.url);
    const { resource } = await clientFor(ResourceService, server.url, key).createResource({
      name: "Dr Jones",
      timeZone: "America/New_York",
      weeklySchedule: {
        windows: [1, 2, 3, 4, 5].map((weekday) => ({
          weekday,
          startTime: "09:00",
          endTime: "17:00",
        })),
      },
    });
    const { service } = await clientFor(CatalogService, server.url, key).createService({
      name: "Consultation",
      resourceIds: [resource?.id as string],
      policy: { durations: [{ seconds: 1800n }] },
    });
    const serviceId = service?.id as string;
    const api = { HOLDFAST_URL: server.url, HOLDFAST_KEY: key };
    const nine = nextMondayInNewYork("09:00").at;
    const held = await holdfast(
      ["--json", "hold", "--service", serviceId, "--start", nine, "--duration", "30m"],
      api,
    );
    expect(held.code, held.stderr).toBe(0);
    const bookingId = (JSON.parse(held.stdout) as { booking: { id: string } }).booking.id;
    const eleven = nextMondayInNewYork("11:00").at;
    const quarterToTwelve = nextMondayInNewYork("11:45").at;

    // Exit code 2 for a value refused as invalid (InvalidArgument), 1 for a
    // refusal of what was asked in the state things are in.
    const cases: [string[], RegExp, number][] = [
      // The refused length is the --duration the person typed (the API calls it end_time) ...
      [
        ["reschedule", bookingId, "--start", eleven, "--duration", "45m"],
        /INVALID_DURATION: .*\n {2}--duration: the duration must be one of 30 min\n/,
        1,
      ],
      // ... or the --end.
      [
        ["reschedule", bookingId, "--start", eleven, "--end", quarterToTwelve],
        /INVALID_DURATION: .*\n {2}--end: the duration must be one of 30 min\n/,
        1,
      ],
      [
        ["hold", "--service", serviceId, "--start", eleven, "--duration", "45m"],
        /\n {2}--duration: the duration must be one of 30 min\n/,
        1,
      ],
      [
        ["reschedule", bookingId, "--start", nextMondayInNewYork("11:10").at],
        /OFF_GRID: .*\n {2}--start: must be on the 30-minute grid\n/,
        1,
      ],
      [
        ["reschedule", bookingId, "--slot", "slot_nope"],
        /INVALID_SLOT_ID: --slot is not a slot id this server issued/,
        2,
      ],
      [
        ["hold", "--service", serviceId, "--start", eleven, "--duration", "30m", "--ttl", "500ms"],
        /VALIDATION_ERROR: invalid request: --ttl: must be at least 1 s\n/,
        2,
      ],
      [["confirm", "bkg_nope"], /BOOKING_NOT_FOUND: no booking with id "bkg_nope"\n/, 1],
      [
        ["slots", "--service", "svc_nope"],
        /SERVICE_NOT_FOUND: .*\n {2}--service: no such service\n/,
        1,
      ],
      [
        [
          "slots",
          "--service",
          serviceId,
          "--from",
          "2030-01-01T00:00Z",
          "--to",
          "2030-06-01T00:00Z",
        ],
        /invalid request: --to: must be at most 62 days after --from\n/,
        2,
      ],
      [
        ["slots", "--service", serviceId, "--resource", `${resource?.id},rsc_nope`],
        /RESOURCE_NOT_IN_SERVICE: .*\n {2}--resource \(value 2\): is not one of the service's resources\n/,
        1,
      ],
      [
        ["events", "tail", "--type", "booking.nope"],
        /invalid request: --type \(value 1\): is not an event type/,
        2,
      ],
      [
        ["events", "tail", "--after", "junk"],
        /INVALID_CURSOR: .*\n {2}--after: is not a cursor/,
        2,
      ],
    ];
    const runs = await Promise.all(cases.map(([args]) => holdfast(args, api)));
    runs.forEach((run, i) => {
      const [args, message, code] = cases[i] as (typeof cases)[number];
      const said = `holdfast ${args.join(" ")}:\n${run.stderr}`;
      expect(run.code, said).toBe(code);
      expect(run.stderr, said).toMatch(message);
      expect(run.stderr, said).not.toMatch(
        /(?<![-\w.])(end_time|start_time|slot_id|service_id|resource_ids?|filter\.\w+|(ttl|after)(?=:))/,
      );
      expect(run.stderr, said).not.toMatch(STACK_FRAME);
    });
  }, 300_000);

  it("events tail follows the stream until Ctrl-C, across a server restart", async () => {
    // Its own server on a port of its own, so it can stop and start again on it.
    const url = await freshDatabase();
    const port = await freePort();
    const config = loadConfig({
      PORT: String(port),
      HOLDFAST_LOG_LEVEL: "error",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
    });
    let instance = await startHoldfast(config, url);
    const { key } = await newTenant(instance.url, "tail");
    const { resource } = await clientFor(ResourceService, instance.url, key).createResource({
      name: "Room",
      timeZone: "Europe/London",
    });
    const { service } = await clientFor(CatalogService, instance.url, key).createService({
      name: "Hire",
      resourceIds: [resource?.id as string],
      policy: { durations: [{ seconds: 3600n }] },
    });
    const hold = (hours: number) => {
      const startMs = (Math.floor(Date.now() / 3_600_000) + 24 * 7 + hours) * 3_600_000;
      return clientFor(BookingService, instance.url, key).createHold({
        serviceId: service?.id as string,
        resourceId: resource?.id as string,
        startTime: { seconds: BigInt(startMs / 1000) },
        endTime: { seconds: BigInt(startMs / 1000 + 3600) },
      });
    };
    // Start after the current end of the stream, so no event is missed however fast it connects.
    const { nextCursor } = await clientFor(EventService, instance.url, key).listEvents({});
    const tail = startCli(["events", "tail", "--after", nextCursor], {
      HOLDFAST_URL: instance.url,
      HOLDFAST_KEY: key,
    });
    try {
      const first = (await hold(1)).booking?.id as string;
      await until(() => tail.output().stdout.includes(first), "the first event");
      expect(tail.output().stdout).toMatch(
        /booking\.held +bkg_\S+ +HELD +\w{3} \S+ \d\d:00(-| - \w{3} \S+ )\d\d:00 +Europe\/London/,
      );

      await instance.close();
      instance = await startHoldfast(config, url);
      const second = (await hold(2)).booking?.id as string;
      await until(() => tail.output().stdout.includes(second), "the event after the restart");
      expect(tail.output().stdout.trim().split("\n")).toHaveLength(2);

      tail.kill("SIGINT");
      await until(() => tail.output().code !== null, "the command to stop");
      expect(tail.output().code).toBe(0);
    } finally {
      tail.kill("SIGKILL");
      await instance.close();
    }
  }, 300_000);

  it("prints text from tenants, the public and the server with its control characters visible", async () => {
    const unique = Math.random().toString(36).slice(2);
    const tenantName = `${HOSTILE} ${unique}`;
    const tenantShown = `${HOSTILE_SHOWN} ${unique}`;
    const t = await newTenant(server.url, `tenant ${unique}`);
    const { key: hostileKey } = await clientFor(KeyService, server.url, t.key).createApiKey({
      scopes: ["bookings.read"],
      description: "reader",
    });
    const { resource } = await clientFor(ResourceService, server.url, t.key).createResource({
      name: "Room",
      timeZone: "UTC",
    });
    const { service } = await clientFor(CatalogService, server.url, t.key).createService({
      name: "Hire",
      resourceIds: [resource?.id as string],
      policy: { durations: [{ seconds: 3600n }] },
    });
    // An attendee name as any agent could send it before the API refused it.
    const attendee = "Bob\u001b[2K\u001b[1A\rEVIL\u202egnp.exe";
    const startMs = (Math.floor(Date.now() / 3_600_000) + 24 * 7) * 3_600_000;
    const { booking } = await clientFor(BookingService, server.url, t.key).createHold({
      serviceId: service?.id as string,
      resourceId: resource?.id as string,
      startTime: { seconds: BigInt(startMs / 1000) },
      endTime: { seconds: BigInt(startMs / 1000 + 3600) },
      attendee: { name: "Bob" },
    });
    const db = new pg.Client({ connectionString: server.databaseUrl });
    await db.connect();
    try {
      // The API refuses these now (src/domain/text.ts), but rows written
      // before it did may hold them.
      await db.query("UPDATE tenants SET name = $2 WHERE id = $1", [t.tenantId, tenantName]);
      await db.query("UPDATE api_keys SET description = $2 WHERE id = $1", [
        hostileKey?.id,
        HOSTILE,
      ]);
      await db.query(
        "UPDATE bookings SET attendee = jsonb_build_object('name', $2::text) WHERE id = $1",
        [booking?.id, attendee],
      );
      // The one event without a booking carries the server's own words.
      await recordWebhookDisabled(db, t.tenantId, "whk_1", HOSTILE);
    } finally {
      await db.end();
    }
    const api = { HOLDFAST_URL: server.url, HOLDFAST_KEY: t.key };
    const badId = "bkg_\u001b]0;pwned\u0007\nerror: FAKE\u202e";

    const tail = [
      "events",
      "tail",
      "--from-beginning",
      "--type",
      "webhook.disabled",
      "--limit",
      "1",
    ];
    const [keys, keysJson, tenants, usage, bookings, bookingsJson, events, eventsJson] =
      await Promise.all([
        holdfast(["keys", "list", "--tenant", t.tenantId], database),
        holdfast(["--json", "keys", "list", "--tenant", t.tenantId], database),
        holdfast(["tenants", "list"], database),
        holdfast(["tenants", "usage", t.tenantId], database),
        holdfast(["bookings"], api),
        holdfast(["--json", "bookings"], api),
        holdfast(tail, api),
        holdfast(["--json", ...tail], api),
      ]);
    const [taken, noKey, notFound] = await Promise.all([
      holdfast(["tenants", "create", tenantName], database),
      holdfast(["keys", "revoke", "key_nope", "--tenant", t.tenantId], database),
      holdfast(["confirm", badId], api),
    ]);
    const runs = { keys, keysJson, tenants, usage, bookings, bookingsJson, events, eventsJson };
    for (const [what, run] of Object.entries(runs)) {
      expect(run.code, `${what}: ${run.stderr}`).toBe(0);
      expect(linesWithControls(run.stdout), what).toEqual([]);
    }
    for (const [what, run] of Object.entries({ taken, noKey, notFound })) {
      // The name refused by the command itself is a usage error.
      expect(run.code, `${what}: ${run.stderr}`).toBe(run === taken ? 2 : 1);
      expect(linesWithControls(run.stderr), what).toEqual([]);
      expect(run.stderr, what).not.toMatch(STACK_FRAME);
    }

    // One row a key, the description in it with its controls shown.
    const keyLines = keys.stdout.trim().split("\n");
    expect(keyLines).toHaveLength(3);
    expect(keys.stdout).toContain(HOSTILE_SHOWN);
    expect(keyLines.filter((l) => l.includes("tenants.manage"))).toEqual([
      expect.stringMatching(/^key_\S+ +hf_\S+ +bookings\.read +x\\x1b\]0;pwned/),
    ]);
    // JSON is for programs: the text exactly as it was set.
    const listed = JSON.parse(keysJson.stdout) as { keys: { description: string }[] };
    expect(listed.keys.map((k) => k.description)).toContain(HOSTILE);

    expect(tenants.stdout).toMatch(new RegExp(`ten_\\S+ +${escapeRegExp(tenantShown)} +\\S+Z\\n`));
    expect(usage.stdout.split("\n")[0]).toMatch(
      new RegExp(`^TENANT ${escapeRegExp(tenantShown)} +LIMIT +IN USE$`),
    );

    const bookingLines = bookings.stdout.trim().split("\n");
    expect(bookingLines).toHaveLength(2);
    expect(bookingLines[1]).toContain(" Bob\\x1b[2K\\x1b[1A\\rEVIL\\u202egnp.exe ");
    const { bookings: exact } = JSON.parse(bookingsJson.stdout) as {
      bookings: { attendee: { name: string } }[];
    };
    expect(exact.map((b) => b.attendee.name)).toEqual([attendee]);

    expect(events.stdout).toMatch(
      new RegExp(`^\\S+Z  webhook\\.disabled  whk_1  ${escapeRegExp(HOSTILE_SHOWN)}\\n$`),
    );
    expect((JSON.parse(eventsJson.stdout) as { detail: string }).detail).toBe(HOSTILE);

    // Refusals: of the name itself by the command, and ones that echo what
    // was given, by the database and by the server.
    expect(taken.stderr.split("\n")[0]).toBe(
      "error: invalid request: <name>: must not contain U+001B (no control, line break or bidi override characters)",
    );
    expect(noKey.stderr).toBe(`error: no key key_nope in tenant "${tenantShown}"\n`);
    expect(notFound.stderr).toBe(
      'error: BOOKING_NOT_FOUND: no booking with id "bkg_\\x1b]0;pwned\\x07\\nerror: FAKE\\u202e"\n',
    );
  }, 300_000);

  it("without DATABASE_URL or a running server, runs the embedded Postgres for its own run", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "holdfast-cli-"));
    afterAll(() => rm(dataDir, { recursive: true, force: true }));
    const env = { HOLDFAST_DATA_DIR: dataDir };

    const none = await holdfast(["status"], env);
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/no database: .* does not exist/);

    const migrated = await holdfast(["migrate"], env);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toMatch(/^Applied 1, 2, /);
    const made = await holdfast(["tenants", "create", "Offline"], env);
    expect(made.code, made.stderr).toBe(0);
    expect(made.stdout).toMatch(/^\s+hf_\S+$/m);
    const listed = await holdfast(["tenants", "list"], env);
    expect(listed.stdout).toMatch(/ten_\S+ +Offline/);
    // Each command stopped the Postgres it started.
    expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);
  }, 300_000);
});

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

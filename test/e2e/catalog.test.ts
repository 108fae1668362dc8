import { Code } from "@connectrpc/connect";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  QuotaFailureSchema,
} from "../../gen/google/rpc/error_details_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { OverrideKind, ResourceKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { clientFor, fieldViolations, newTenant, rejected } from "../support/clients.js";
import { startTestServer, type TestServer } from "../support/server.js";

const minutes = (n: number) => ({ seconds: BigInt(n * 60), nanos: 0 });
const seconds = (n: number) => ({ seconds: BigInt(n), nanos: 0 });

let resources: ReturnType<typeof clientFor<typeof ResourceService>>;
let catalog: ReturnType<typeof clientFor<typeof CatalogService>>;

beforeAll(async () => {
  const server = await startTestServer();
  const { key } = await newTenant(server.url);
  resources = clientFor(ResourceService, server.url, key);
  catalog = clientFor(CatalogService, server.url, key, "connect");
});

describe("resources", () => {
  it("are created with defaults and a canonical time zone", async () => {
    const { resource } = await resources.createResource({
      name: "Dr Smith",
      kind: ResourceKind.PERSON,
      timeZone: "america/new_york",
      metadata: { specialty: "dermatology", floor: 2 },
    });
    expect(resource).toMatchObject({
      name: "Dr Smith",
      kind: ResourceKind.PERSON,
      timeZone: "America/New_York",
      capacity: 1,
      active: true,
      metadata: { specialty: "dermatology", floor: 2 },
    });
    expect(resource?.id).toMatch(/^rsc_/);
    expect(resource?.weeklySchedule).toBeUndefined();
    const room = await resources.createResource({ name: "Room", timeZone: "UTC", capacity: 3 });
    expect(room.resource).toMatchObject({ kind: ResourceKind.OTHER, capacity: 3 });
  });

  it("refuse invalid time zones, capacities and kinds, naming each field", async () => {
    const err = await rejected(
      resources.createResource({
        name: "",
        timeZone: "Mars/Olympus",
        capacity: -1,
        kind: 42 as ResourceKind,
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual(["capacity", "kind", "name", "time_zone"]);
    const [capacity] = err
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.filter((v) => v.field === "capacity"));
    expect(capacity?.description).toBe("must be at least 0");
    await rejected(
      resources.createResource({ name: "x", timeZone: "+02:00" }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    await rejected(
      resources.createResource({ name: "x", timeZone: "EST5EDT!" }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("update the fields in the mask, or every set field without one", async () => {
    const { resource } = await resources.createResource({
      name: "Chair",
      timeZone: "Europe/London",
      capacity: 2,
    });
    const id = resource?.id as string;
    const renamed = await resources.updateResource({
      resource: { id, name: "Chair 1", capacity: 5 },
      updateMask: { paths: ["name"] },
    });
    expect(renamed.resource).toMatchObject({ name: "Chair 1", capacity: 2 });
    const implied = await resources.updateResource({
      resource: { id, capacity: 4, timeZone: "Asia/Kolkata" },
    });
    expect(implied.resource).toMatchObject({
      name: "Chair 1",
      capacity: 4,
      timeZone: "Asia/Kolkata",
    });
    expect(implied.resource?.updateTime?.seconds).toBeGreaterThanOrEqual(
      resource?.updateTime?.seconds ?? 0n,
    );
    const err = await rejected(
      resources.updateResource({ resource: { id }, updateMask: { paths: ["weekly_schedule"] } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["update_mask"]);
    await rejected(
      resources.updateResource({ resource: { id, timeZone: "Nowhere/City" } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    await rejected(
      resources.updateResource({ resource: { name: "x" } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("clear a field named in the mask but not set, message fields included (AIP-134)", async () => {
    const { resource } = await resources.createResource({
      name: "Desk",
      timeZone: "UTC",
      metadata: { a: 1 },
    });
    const id = resource?.id as string;
    const cleared = await resources.updateResource({
      resource: { id },
      updateMask: { paths: ["metadata"] },
    });
    expect(cleared.resource?.name).toBe("Desk");
    expect(cleared.resource?.metadata).toEqual({});
    // Without a mask, an unset field is simply not part of the update.
    await resources.updateResource({ resource: { id, metadata: { b: 2 } } });
    const kept = await resources.updateResource({ resource: { id, name: "Desk 2" } });
    expect(kept.resource?.metadata).toEqual({ b: 2 });
    // Where no empty value is allowed, the request is refused, naming the field.
    const err = await rejected(
      resources.updateResource({ resource: { id }, updateMask: { paths: ["name", "time_zone"] } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual(["resource.name", "resource.time_zone"]);
  });

  it("delete softly: hidden from lists unless asked, history kept", async () => {
    const { resource } = await resources.createResource({
      name: "Projector",
      kind: ResourceKind.EQUIPMENT,
      timeZone: "UTC",
    });
    const id = resource?.id as string;
    const deleted = await resources.deleteResource({ resourceId: id });
    expect(deleted.resource?.active).toBe(false);
    expect((await resources.getResource({ resourceId: id })).resource?.active).toBe(false);
    const all = async (includeInactive: boolean) => {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await resources.listResources({ includeInactive, pageToken });
        ids.push(...page.resources.map((r) => r.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return ids;
    };
    expect(await all(false)).not.toContain(id);
    expect(await all(true)).toContain(id);
    const equipment = await resources.listResources({
      includeInactive: true,
      kind: ResourceKind.EQUIPMENT,
    });
    expect(equipment.resources.map((r) => r.id)).toEqual([id]);
    await rejected(
      resources.getResource({ resourceId: "rsc_nope" }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
  });

  it("list those of one service, page by page, the deleted ones only when asked", async () => {
    const made = await Promise.all(
      ["A", "B", "C", "D"].map(async (name) => {
        const { resource } = await resources.createResource({ name, timeZone: "Asia/Kolkata" });
        return resource?.id as string;
      }),
    );
    const [a, b, c, d] = made as [string, string, string, string];
    const { service } = await catalog.createService({
      name: "Three rooms",
      resourceIds: [c, a, b],
      policy: { durations: [minutes(30)] },
    });
    const serviceId = service?.id as string;
    await resources.deleteResource({ resourceId: b });
    const of = async (id: string, includeInactive = false) => {
      const ids: string[] = [];
      let pageToken = "";
      do {
        const page = await resources.listResources({
          serviceId: id,
          includeInactive,
          pageSize: 1,
          pageToken,
        });
        ids.push(...page.resources.map((r) => r.id));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return ids;
    };
    expect(await of(serviceId)).toEqual([a, c].sort());
    expect(await of(serviceId, true)).toEqual([a, b, c].sort());
    expect(await of(serviceId)).not.toContain(d);
    // A filter: a service that is not there has no resources, it is not an error.
    expect(await of("svc_nope")).toEqual([]);
    // A token is for the filter it was issued with.
    const { nextPageToken } = await resources.listResources({ serviceId, pageSize: 1 });
    await rejected(
      resources.listResources({ pageSize: 1, pageToken: nextPageToken }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
  });

  it("keep a weekly schedule, merged and sorted, and clear it", async () => {
    const { resource } = await resources.createResource({
      name: "Dr Lee",
      timeZone: "Europe/London",
    });
    const id = resource?.id as string;
    const set = await resources.setWeeklySchedule({
      resourceId: id,
      weeklySchedule: {
        windows: [
          { weekday: 2, startTime: "13:00", endTime: "24:00" },
          { weekday: 1, startTime: "09:00", endTime: "12:00" },
          { weekday: 1, startTime: "11:00", endTime: "12:30" },
        ],
      },
    });
    expect(
      set.resource?.weeklySchedule?.windows.map((w) => [w.weekday, w.startTime, w.endTime]),
    ).toEqual([
      [1, "09:00", "12:30"],
      [2, "13:00", "24:00"],
    ]);
    const err = await rejected(
      resources.setWeeklySchedule({
        resourceId: id,
        weeklySchedule: {
          windows: [
            { weekday: 8, startTime: "9:00", endTime: "08:00" },
            { weekday: 1, startTime: "10:00", endTime: "09:00" },
          ],
        },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual([
      "weekly_schedule.windows[0].weekday",
      "weekly_schedule.windows[0].start_time",
      "weekly_schedule.windows[1].end_time",
    ]);
    const cleared = await resources.setWeeklySchedule({ resourceId: id });
    expect(cleared.resource?.weeklySchedule).toBeUndefined();
    const closed = await resources.setWeeklySchedule({
      resourceId: id,
      weeklySchedule: { windows: [] },
    });
    expect(closed.resource?.weeklySchedule?.windows).toEqual([]);
  });
});

describe("lowering a resource's capacity", () => {
  let server: TestServer;
  beforeAll(async () => {
    // No sweeper within a test: a lapsed hold stays HELD, past its expire_time.
    server = await startTestServer({ HOLDFAST_SWEEP_INTERVAL_MS: "60000" });
  });

  /**
   * A CONFIRMED copy of booking `sourceId` written straight to the table,
   * past every locked check: `exclusive` as given, and at its source's times
   * unless `at` moves it (intervals from now(), e.g. "-1 hour").
   */
  const copyBooking = (
    sourceId: string,
    id: string,
    exclusive: boolean,
    at?: { from: string; to: string },
  ) =>
    server.pool.query(
      `INSERT INTO bookings (tenant_id, id, resource_id, service_id, start_time, end_time, block_start, block_end,
                             status, attendee, metadata, policy_version, exclusive, create_time, update_time)
       SELECT tenant_id, $2, resource_id, service_id,
              coalesce(now() + $3::interval, start_time), coalesce(now() + $4::interval, end_time),
              coalesce(now() + $3::interval, block_start), coalesce(now() + $4::interval, block_end),
              'confirmed', attendee, metadata, policy_version, $5, now(), now()
       FROM bookings WHERE id = $1`,
      [sourceId, id, at?.from ?? null, at?.to ?? null, exclusive],
    );

  const capacityOf = async (w: Awaited<ReturnType<typeof bookingWorld>>) =>
    (await w.resources.getResource({ resourceId: w.resourceId })).resource?.capacity;

  it("is refused below the live bookings that overlap, naming the first span where they would not fit", async () => {
    const w = await bookingWorld(server.url, { capacity: 3 });
    const book = (hour: number, minute: number, length: number) =>
      w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(2, hour, minute, length),
      });
    // 10:00-11:00 confirmed, 10:30-11:30 held, 10:45-11:15 confirmed: one,
    // two, three, two, then one at once.
    await book(10, 0, 60);
    const held = await w.bookings.createHold({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(2, 10, 30, 60),
      ttl: { seconds: 600n, nanos: 0 },
    });
    await book(10, 45, 30);
    const lower = (capacity: number) =>
      w.resources.updateResource({ resource: { id: w.resourceId, capacity } });

    const toOne = await rejected(lower(1), Code.FailedPrecondition, "CAPACITY_BELOW_BOOKINGS");
    const day = new Date(at(2, 0).startMs).toISOString().slice(0, 10);
    expect(toOne.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
      start_time: `${day}T10:30:00Z`,
      end_time: `${day}T11:15:00Z`,
      local_start_time: `${day}T10:30:00+00:00`,
      local_end_time: `${day}T11:15:00+00:00`,
      time_zone: "UTC",
      bookings: "3",
      min_capacity: "3",
    });
    expect(toOne.rawMessage).toContain(`from ${day} 10:30 to ${day} 11:15 (UTC)`);
    expect(fieldViolations(toOne)).toEqual(["resource.capacity"]);
    const toTwo = await rejected(lower(2), Code.FailedPrecondition, "CAPACITY_BELOW_BOOKINGS");
    expect(toTwo.findDetails(ErrorInfoSchema)[0]?.metadata).toMatchObject({
      start_time: `${day}T10:45:00Z`,
      end_time: `${day}T11:00:00Z`,
      bookings: "3",
    });
    expect(await capacityOf(w)).toBe(3);

    // Cancelled bookings take nothing: without the hold, two fit.
    await w.bookings.cancelBooking({ bookingId: held.booking?.id as string });
    expect((await lower(2)).resource?.capacity).toBe(2);
    await rejected(lower(1), Code.FailedPrecondition, "CAPACITY_BELOW_BOOKINGS");
    // Raising is never refused.
    expect((await lower(5)).resource?.capacity).toBe(5);
  });

  it("leaves the schema's no-overlap constraint backing a capacity lowered to one", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const { booking } = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(5, 9),
    });
    const setCapacity = (capacity: number) =>
      w.resources.updateResource({ resource: { id: w.resourceId, capacity } });
    const exclusive = async () =>
      (
        await server.pool.query<{ exclusive: boolean }>(
          "SELECT exclusive FROM bookings WHERE id = $1",
          [booking?.id],
        )
      ).rows[0]?.exclusive;
    expect(await exclusive()).toBe(false);
    await setCapacity(1);
    expect(await exclusive()).toBe(true);
    // A row written past the locked checks, overlapping it, is refused by the table itself.
    const overlapping = copyBooking(booking?.id as string, "bkg_overlap", true);
    await expect(overlapping).rejects.toMatchObject({ code: "23P01" });
    await setCapacity(2);
    expect(await exclusive()).toBe(false);
  });

  it("lowers a capacity to one beside an ended booking written exclusive that overlaps a live one", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const { booking } = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(6, 9),
    });
    // Written straight to the table: one booking in progress (non-exclusive,
    // as at capacity 2), and one that has ended, written exclusive (as at
    // capacity 1) and overlapping it.
    const source = booking?.id as string;
    await copyBooking(source, "bkg_in_progress", false, { from: "-1 hour", to: "1 hour" });
    await copyBooking(source, "bkg_ended", true, { from: "-2 hours", to: "-30 minutes" });
    const updated = await w.resources.updateResource({
      resource: { id: w.resourceId, capacity: 1 },
    });
    expect(updated.resource?.capacity).toBe(1);
    const { rows } = await server.pool.query<{ id: string; exclusive: boolean }>(
      "SELECT id, exclusive FROM bookings WHERE resource_id = $1 ORDER BY id",
      [w.resourceId],
    );
    expect(Object.fromEntries(rows.map((r) => [r.id, r.exclusive]))).toEqual({
      [booking?.id as string]: true,
      bkg_in_progress: true,
      bkg_ended: false,
    });
  });

  it("counts a hold only until it expires, swept or not", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const hold = (ttl: bigint) =>
      w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9),
        ttl: { seconds: ttl, nanos: 0 },
      });
    await hold(1n);
    await hold(600n);
    await rejected(
      w.resources.updateResource({ resource: { id: w.resourceId, capacity: 1 } }),
      Code.FailedPrecondition,
      "CAPACITY_BELOW_BOOKINGS",
    );
    await sleep(1_100);
    const updated = await w.resources.updateResource({
      resource: { id: w.resourceId, capacity: 1 },
    });
    expect(updated.resource?.capacity).toBe(1);
    // Still HELD in the table: the capacity check read the clock itself.
    const { rows } = await server.pool.query(
      "SELECT status, count(*)::int AS n FROM bookings WHERE resource_id = $1 GROUP BY status",
      [w.resourceId],
    );
    expect(rows).toEqual([{ status: "held", n: 2 }]);
  });

  it("is checked under the resource's lock, so a booking written meanwhile is counted", async () => {
    const w = await bookingWorld(server.url, { capacity: 2 });
    const first = await w.bookings.createBooking({
      serviceId: w.serviceId,
      resourceId: w.resourceId,
      ...at(4, 9),
    });
    // A booking write holds the resource's lock, as create_booking does ...
    const writer = new pg.Client({ connectionString: server.databaseUrl });
    await writer.connect();
    try {
      await writer.query("BEGIN");
      await writer.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
        w.tenantId,
        w.resourceId,
      ]);
      // ... while the capacity is lowered: that waits for the lock ...
      const lowering = w.resources
        .updateResource({ resource: { id: w.resourceId, capacity: 1 } })
        .then(
          (r) => ({ capacity: r.resource?.capacity }),
          (err: unknown) => ({ err }),
        );
      const watcher = new pg.Client({ connectionString: server.databaseUrl });
      await watcher.connect();
      try {
        for (let waited = 0; ; waited += 10) {
          const { rows } = await watcher.query(
            `SELECT 1 FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'`,
          );
          if (rows.length > 0) break;
          expect(waited, "UpdateResource waits for the resource's lock").toBeLessThan(5_000);
          await sleep(10);
        }
      } finally {
        await watcher.end();
      }
      // ... and the write adds a second booking over the first, and commits.
      await writer.query(
        `INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                               status, policy_version, exclusive, create_time, update_time)
         SELECT tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                'confirmed', policy_version, false, now(), now()
         FROM bookings WHERE tenant_id = $1 AND id = $2`,
        [w.tenantId, first.booking?.id],
      );
      await writer.query("COMMIT");
      const outcome = await lowering;
      expect("err" in outcome, JSON.stringify(outcome)).toBe(true);
      await rejected(
        Promise.reject((outcome as { err: unknown }).err),
        Code.FailedPrecondition,
        "CAPACITY_BELOW_BOOKINGS",
      );
      expect(await capacityOf(w)).toBe(2);
    } finally {
      await writer.end();
    }
  });
});

describe("a resource's overrides", () => {
  let server: TestServer;
  let tenantId: string;
  let client: ReturnType<typeof clientFor<typeof ResourceService>>;
  beforeAll(async () => {
    server = await startTestServer();
    const tenant = await newTenant(server.url);
    tenantId = tenant.tenantId;
    client = clientFor(ResourceService, server.url, tenant.key);
  });

  /** A resource that already has `n` overrides, written straight to the table. */
  async function resourceWith(n: number): Promise<string> {
    const { resource } = await client.createResource({ name: "Busy", timeZone: "UTC" });
    const id = resource?.id as string;
    await server.pool.query(
      `INSERT INTO overrides (tenant_id, resource_id, kind, all_day, start_date)
       SELECT $1, $2, 'block', true, date '2030-01-01' + g FROM generate_series(1, $3::int) AS g`,
      [tenantId, id, n],
    );
    return id;
  }
  const block = (resourceId: string) =>
    client.createOverride({
      resourceId,
      kind: OverrideKind.BLOCK,
      title: "Meeting",
      allDay: true,
      startDate: "2031-05-05",
    });

  it("are at most 1000 per resource: one more is LIMIT_REACHED, until one is deleted", async () => {
    const id = await resourceWith(999);
    const last = await block(id);
    const err = await rejected(block(id), Code.ResourceExhausted, "LIMIT_REACHED");
    expect(err.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
      quota: "overrides_per_resource",
      limit: "1000",
      usage: "1000",
      resource_id: id,
    });
    expect(err.findDetails(QuotaFailureSchema)[0]?.violations).toMatchObject([
      { subject: `resource:${id}`, quotaId: "overrides_per_resource", quotaValue: 1000n },
    ]);
    // The bound is per resource: another of the tenant's takes overrides.
    expect((await block(await resourceWith(0))).override?.id).toMatch(/^ovr_/);
    await client.deleteOverride({ resourceId: id, overrideId: last.override?.id as string });
    expect((await block(id)).override?.id).toMatch(/^ovr_/);
    await rejected(block(id), Code.ResourceExhausted, "LIMIT_REACHED");
  });

  it("never go past the bound when added at once", async () => {
    const id = await resourceWith(995);
    const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => block(id)));
    expect(outcomes.filter((o) => o.status === "fulfilled")).toHaveLength(5);
    for (const o of outcomes) {
      if (o.status === "rejected")
        await rejected(Promise.reject(o.reason), Code.ResourceExhausted, "LIMIT_REACHED");
    }
    const { rows } = await server.pool.query(
      "SELECT count(*)::int AS n FROM overrides WHERE tenant_id = $1 AND resource_id = $2",
      [tenantId, id],
    );
    expect(rows[0].n).toBe(1000);
  });
});

describe("services", () => {
  it("start at policy version 1 with defaults filled in", async () => {
    const r = (await resources.createResource({ name: "Advisor", timeZone: "UTC" })).resource;
    const { service } = await catalog.createService({
      name: "Consultation",
      resourceIds: [r?.id as string],
      policy: { durations: [minutes(30), minutes(60)] },
    });
    expect(service).toMatchObject({
      name: "Consultation",
      policyVersion: 1,
      timeZone: "UTC",
      active: true,
      resourceIds: [r?.id],
    });
    expect(service?.policy?.holdTtl).toMatchObject(seconds(120));
    expect(service?.policy?.maxHoldTtl).toMatchObject(minutes(30));
    expect(service?.policy?.durations.map((d) => d.seconds)).toEqual([1800n, 3600n]);
  });

  it("version every policy change and keep the old versions", async () => {
    const r1 = (await resources.createResource({ name: "A", timeZone: "UTC" })).resource
      ?.id as string;
    const r2 = (await resources.createResource({ name: "B", timeZone: "UTC" })).resource
      ?.id as string;
    const created = await catalog.createService({
      name: "Table",
      resourceIds: [r1],
      policy: { durations: [minutes(90)] },
    });
    const id = created.service?.id as string;

    const renamed = await catalog.updateService({
      service: { id, name: "Table for two", resourceIds: [r2, r1] },
    });
    expect(renamed.service).toMatchObject({
      name: "Table for two",
      policyVersion: 1,
      resourceIds: [r2, r1],
    });

    const samePolicy = await catalog.updateService({
      service: { id, policy: { durations: [minutes(90)], holdTtl: seconds(120) } },
    });
    expect(samePolicy.service?.policyVersion).toBe(1);

    const v2 = await catalog.updateService({
      service: {
        id,
        policy: { durations: [minutes(60)], bufferAfter: minutes(15), holdTtl: seconds(300) },
      },
    });
    expect(v2.service?.policyVersion).toBe(2);
    const v3 = await catalog.updateService({
      service: { id, timeZone: "Europe/Paris" },
      updateMask: { paths: ["time_zone"] },
    });
    expect(v3.service?.policyVersion).toBe(3);

    const old = await catalog.getService({ serviceId: id, policyVersion: 1 });
    expect(old.service?.policy?.durations.map((d) => d.seconds)).toEqual([5400n]);
    expect(old.service?.policyVersion).toBe(1);
    expect((await catalog.getService({ serviceId: id })).service?.policyVersion).toBe(3);
    await rejected(
      catalog.getService({ serviceId: id, policyVersion: 9 }),
      Code.NotFound,
      "POLICY_VERSION_NOT_FOUND",
    );

    const versions = await catalog.listPolicyVersions({ serviceId: id, pageSize: 2 });
    expect(versions.versions.map((v) => v.version)).toEqual([3, 2]);
    const rest = await catalog.listPolicyVersions({
      serviceId: id,
      pageSize: 2,
      pageToken: versions.nextPageToken,
    });
    expect(rest.versions.map((v) => [v.version, v.timeZone])).toEqual([[1, "UTC"]]);
    expect(rest.nextPageToken).toBe("");

    const inactive = await catalog.updateService({
      service: { id, active: false },
      updateMask: { paths: ["active"] },
    });
    expect(inactive.service?.active).toBe(false);
    expect((await catalog.listServices({})).services.map((s) => s.id)).not.toContain(id);
    expect(
      (await catalog.listServices({ includeInactive: true, resourceId: r2 })).services.map(
        (s) => s.id,
      ),
    ).toEqual([id]);
  });

  it("clear metadata named in the mask but not set, and refuse an unset policy so named", async () => {
    const { resource } = await resources.createResource({ name: "Bay", timeZone: "UTC" });
    const policy = { durations: [minutes(30)], holdTtl: seconds(120) };
    const { service } = await catalog.createService({
      name: "Wash",
      resourceIds: [resource?.id as string],
      timeZone: "America/New_York",
      policy,
      metadata: { a: 1 },
    });
    const id = service?.id as string;

    // policy is required: named but unset, the whole request is refused.
    const err = await rejected(
      catalog.updateService({
        service: { id },
        updateMask: { paths: ["metadata", "policy", "time_zone"] },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err)).toEqual(["service.policy"]);
    const unchanged = (await catalog.getService({ serviceId: id })).service;
    expect(unchanged).toMatchObject({
      metadata: { a: 1 },
      timeZone: "America/New_York",
      policyVersion: 1,
    });

    const cleared = await catalog.updateService({
      service: { id },
      updateMask: { paths: ["metadata"] },
    });
    expect(cleared.service?.metadata).toEqual({});
    expect(cleared.service?.policyVersion).toBe(1);

    // The same policy, named in the mask, is no new version.
    const same = await catalog.updateService({
      service: { id, policy },
      updateMask: { paths: ["policy"] },
    });
    expect(same.service?.policyVersion).toBe(1);
  });

  it("refuse bad policies, naming each field", async () => {
    const err = await rejected(
      catalog.createService({
        name: "Bad",
        resourceIds: ["rsc_a", "rsc_a"],
        timeZone: "Moon/Base",
        policy: {
          durations: [seconds(90), { seconds: -60n, nanos: 0 }],
          holdTtl: minutes(40),
          maxHoldTtl: minutes(30),
          businessHours: [{ weekday: 0, startTime: "09:00", endTime: "17:00" }],
        },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual([
      "policy.business_hours[0].weekday",
      "policy.durations[0]",
      "policy.durations[1]",
      "policy.hold_ttl",
      "resource_ids[1]",
      "time_zone",
    ]);
    // A negative duration is named as such, on every duration of the policy.
    const negative = { seconds: -60n, nanos: 0 };
    const negatives = await rejected(
      catalog.createService({
        name: "Negative",
        policy: {
          durations: [negative],
          slotInterval: negative,
          bufferBefore: negative,
          bufferAfter: negative,
          minNotice: negative,
          maxAdvance: negative,
          holdTtl: negative,
          maxHoldTtl: negative,
        },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    const described = negatives
      .findDetails(BadRequestSchema)
      .flatMap((b) => b.fieldViolations.map((v) => [v.field, v.description]));
    expect(described.sort()).toEqual(
      [
        "buffer_after",
        "buffer_before",
        "durations[0]",
        "hold_ttl",
        "max_advance",
        "max_hold_ttl",
        "min_notice",
        "slot_interval",
      ].map((f) => [`policy.${f}`, "must not be negative"]),
    );
    expect(negatives.rawMessage).toContain("policy.min_notice: must not be negative");
    const minNotice = await rejected(
      catalog.createService({
        name: "Negative notice",
        policy: { durations: [minutes(30)], minNotice: negative },
      }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(minNotice.rawMessage).toBe("invalid request: policy.min_notice: must not be negative");
    const noPolicy = await rejected(
      catalog.createService({ name: "None" }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(noPolicy)).toEqual(["policy"]);
    const missing = await rejected(
      catalog.createService({
        name: "Ghost",
        resourceIds: ["rsc_ghost"],
        policy: { durations: [minutes(30)] },
      }),
      Code.NotFound,
      "RESOURCE_NOT_FOUND",
    );
    expect(fieldViolations(missing)).toEqual(["resource_ids[0]"]);
  });
});

describe("paging", () => {
  it("walks every row once, caps the page size, and refuses foreign tokens", async () => {
    const server = await startTestServer();
    const { key } = await newTenant(server.url);
    const client = clientFor(ResourceService, server.url, key);
    const made: string[] = [];
    for (let i = 0; i < 7; i++)
      made.push(
        (await client.createResource({ name: `R${i}`, timeZone: "UTC" })).resource?.id as string,
      );

    const seen: string[] = [];
    const sizes: number[] = [];
    let pageToken = "";
    do {
      const page = await client.listResources({ pageSize: 3, pageToken });
      seen.push(...page.resources.map((r) => r.id));
      sizes.push(page.resources.length);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(sizes).toEqual([3, 3, 1]);
    expect(seen).toEqual(made);
    expect((await client.listResources({ pageSize: 1000 })).resources).toHaveLength(7);
    expect((await client.listResources({})).nextPageToken).toBe("");

    const first = await client.listResources({ pageSize: 2 });
    await rejected(
      client.listResources({ pageSize: 2, pageToken: first.nextPageToken, includeInactive: true }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await rejected(
      client.listResources({ pageToken: "garbage!" }),
      Code.InvalidArgument,
      "INVALID_PAGE_TOKEN",
    );
    await rejected(
      client.listResources({ pageSize: -1 }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });
});

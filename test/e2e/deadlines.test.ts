import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import type * as grpc from "@grpc/grpc-js";
import pg from "pg";
import { describe, expect, it, onTestFinished, vi } from "vitest";
import { ListSlotsRequestSchema } from "../../gen/holdfast/v1/availability_pb.js";
import { CreateHoldRequestSchema } from "../../gen/holdfast/v1/booking_pb.js";
import { bookingWorld, DAY, dayStart } from "../support/booking.js";
import {
  envelope,
  grpcJsClient,
  jsonReason,
  postJson,
  rawGrpc,
  rawGrpcWeb,
} from "../support/clients.js";
import { scrape } from "../support/metrics.js";
import { startTestServer } from "../support/server.js";

const LIST_SLOTS = "holdfast.v1.AvailabilityService/ListSlots";
const CREATE_HOLD = "holdfast.v1.BookingService/CreateHold";

describe("deadlines", { timeout: 30_000 }, async () => {
  // Waits on a lock last long, so that only the caller's deadline ends a call.
  const server = await startTestServer({
    HOLDFAST_DB_LOCK_TIMEOUT_MS: "8000",
    HOLDFAST_DB_STATEMENT_TIMEOUT_MS: "8000",
  });
  const world = await bookingWorld(server.url);
  const range = { startTime: dayStart(1), endTime: dayStart(1) + DAY };
  const json = {
    serviceId: world.serviceId,
    startTime: new Date(range.startTime).toISOString(),
    endTime: new Date(range.endTime).toISOString(),
  };
  const binary = envelope(
    toBinary(
      ListSlotsRequestSchema,
      create(ListSlotsRequestSchema, {
        serviceId: world.serviceId,
        startTime: timestampFromMs(range.startTime),
        endTime: timestampFromMs(range.endTime),
      }),
    ),
  );
  const auth = { authorization: `Bearer ${world.key}` };

  /**
   * Another session holds every booking read off until release() (or the
   * test's end). /metrics reads bookings too: scrape outside it.
   */
  async function blockBookingReads() {
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    await holder.query("BEGIN");
    await holder.query("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE");
    let held = true;
    const release = async () => {
      if (!held) return;
      held = false;
      await holder.query("ROLLBACK");
      await holder.end();
    };
    onTestFinished(release);
    return release;
  }

  const count = (samples: Map<string, number>, protocol: string, code: string) =>
    samples.get(
      `holdfast_rpc_requests_total{service="holdfast.v1.AvailabilityService",method="ListSlots",protocol="${protocol}",code="${code}"}`,
    ) ?? 0;

  it("answers a slow call DEADLINE_EXCEEDED once its deadline passes, on every protocol", async () => {
    const before = await scrape(server.url);
    const release = await blockBookingReads();
    const started = Date.now();
    const [connect, grpcReply, grpcWeb] = await Promise.all([
      postJson(server.url, LIST_SLOTS, json, world.key, { "connect-timeout-ms": "300" }),
      rawGrpc(server.url, LIST_SLOTS, binary, { ...auth, "grpc-timeout": "300m" }),
      rawGrpcWeb(server.url, LIST_SLOTS, binary, { ...auth, "grpc-timeout": "300m" }),
    ]);
    const took = Date.now() - started;
    await release();
    expect({
      status: connect.status,
      code: connect.body.code,
      reason: jsonReason(connect),
    }).toEqual({ status: 504, code: "deadline_exceeded", reason: "DEADLINE_EXCEEDED" });
    for (const reply of [grpcReply, grpcWeb]) {
      expect({ code: reply.code, reason: reply.reason }).toEqual({
        code: "DeadlineExceeded",
        reason: "DEADLINE_EXCEEDED",
      });
    }
    // At the deadline, not when the lock lets go (8 s).
    expect(took).toBeLessThan(3_000);
    // The observers saw the code the caller got, once, and no late OK.
    const after = await scrape(server.url);
    for (const protocol of ["connect", "grpc", "grpc-web"]) {
      expect(
        count(after, protocol, "DeadlineExceeded") - count(before, protocol, "DeadlineExceeded"),
        protocol,
      ).toBe(1);
      expect(count(after, protocol, "OK") - count(before, protocol, "OK"), protocol).toBe(0);
    }
  });

  it("ends a grpc-js caller's call on the server at its deadline too", async () => {
    const client = grpcJsClient(
      server.url,
      "holdfast/v1/availability.proto",
      "AvailabilityService",
      world.key,
    );
    onTestFinished(() => client.close());
    const before = await scrape(server.url);
    const release = await blockBookingReads();
    const err = (await client
      .call(
        "listSlots",
        {
          serviceId: world.serviceId,
          startTime: { seconds: String(range.startTime / 1000) },
          endTime: { seconds: String(range.endTime / 1000) },
        },
        undefined,
        { deadline: Date.now() + 300 },
      )
      .catch((e: unknown) => e)) as grpc.ServiceError;
    expect(err.code).toBe(4); // DEADLINE_EXCEEDED
    // grpc-js gives up on its own at its deadline and cancels the call. The
    // server must end it then too, by its own deadline or by that cancel
    // (whichever reaches it first), not answer it once the lock lets go.
    await new Promise((r) => setTimeout(r, 500));
    await release();
    const after = await scrape(server.url);
    const grew = (code: string) => count(after, "grpc", code) - count(before, "grpc", code);
    expect(grew("DeadlineExceeded") + grew("Canceled")).toBe(1);
    expect(grew("OK")).toBe(0);
  });

  it.each([
    ["CANCEL", http2.constants.NGHTTP2_CANCEL],
    // What Node clients send when they exit or destroy a stream with an error.
    ["INTERNAL_ERROR", http2.constants.NGHTTP2_INTERNAL_ERROR],
  ])("counts a call its caller resets (%s) without a deadline as Canceled, never as a late OK", async (_, code) => {
    const before = await scrape(server.url);
    const release = await blockBookingReads();
    const session = http2.connect(server.url);
    onTestFinished(() => session.close());
    const call = session.request({
      ":method": "POST",
      ":path": `/${LIST_SLOTS}`,
      "content-type": "application/grpc+proto",
      te: "trailers",
      ...auth,
    });
    call.on("error", () => {});
    call.end(binary);
    // Past the edge and waiting on the lock, then reset (RST_STREAM).
    await new Promise((r) => setTimeout(r, 300));
    call.close(code);
    await new Promise((r) => setTimeout(r, 200));
    await release();
    const grew = async (code: string) =>
      count(await scrape(server.url), "grpc", code) - count(before, "grpc", code);
    await vi.waitFor(async () => expect(await grew("Canceled")).toBe(1), { timeout: 5_000 });
    expect(await grew("OK")).toBe(0);
  });

  it("does not make a hold whose deadline passed while it waited for the resource", async () => {
    const before = await scrape(server.url);
    const at = (hour: number) => dayStart(2) + hour * 3_600_000;
    const hold = (hour: number) => ({
      serviceId: world.serviceId,
      resourceId: world.resourceId,
      startTime: timestampFromMs(at(hour)),
      endTime: timestampFromMs(at(hour) + 1_800_000),
    });
    // The resource's lock, held as a write in flight holds it.
    const holder = new pg.Client({ connectionString: server.databaseUrl });
    await holder.connect();
    onTestFinished(() => holder.end());
    await holder.query("BEGIN");
    await holder.query("SELECT pg_advisory_xact_lock(resource_lock_key($1, $2))", [
      world.tenantId,
      world.resourceId,
    ]);
    const first = world.bookings.createHold(hold(9));
    await vi.waitFor(
      async () => {
        const { rows } = await holder.query(
          "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
        );
        expect(rows[0].n).toBe(1);
      },
      { timeout: 5_000 },
    );
    // Two more for the same resource wait behind that write, and their
    // deadlines pass there.
    const [connect, grpcReply] = await Promise.all([
      postJson(
        server.url,
        CREATE_HOLD,
        {
          ...json,
          resourceId: world.resourceId,
          startTime: new Date(at(10)).toISOString(),
          endTime: new Date(at(10) + 1_800_000).toISOString(),
        },
        world.key,
        { "connect-timeout-ms": "300" },
      ),
      rawGrpc(
        server.url,
        CREATE_HOLD,
        envelope(toBinary(CreateHoldRequestSchema, create(CreateHoldRequestSchema, hold(11)))),
        { ...auth, "grpc-timeout": "300m" },
      ),
    ]);
    expect(jsonReason(connect)).toBe("DEADLINE_EXCEEDED");
    expect(grpcReply.reason).toBe("DEADLINE_EXCEEDED");
    await holder.query("ROLLBACK");
    const { booking } = await first;
    // Only the hold whose caller waited for it was made.
    const made = await world.bookings.listBookings({ pageSize: 10 });
    expect(made.bookings.map((b) => b.id)).toEqual([booking?.id]);
    const abandoned =
      'holdfast_booking_write_duration_seconds_count{write="create_booking",result="abandoned"}';
    await vi.waitFor(async () =>
      expect(((await scrape(server.url)).get(abandoned) ?? 0) - (before.get(abandoned) ?? 0)).toBe(
        2,
      ),
    );
  });

  it("answers the same call in full without a deadline, once nothing holds it", async () => {
    const reply = await postJson(server.url, LIST_SLOTS, json, world.key, {
      "connect-timeout-ms": "10000",
    });
    expect(reply.status).toBe(200);
    expect((reply.body.slots as unknown[]).length).toBeGreaterThan(0);
  });
});

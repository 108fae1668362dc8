import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bookingWorld } from "../support/booking.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The Python client (clients/python) as a backend gets it: copied outside
 * the repository, installed there with pip (offline, no build isolation:
 * Debian's setuptools) and run by Debian's /usr/bin/python3 with Debian's
 * python3-grpcio and python3-protobuf, nothing from the Python package
 * index. Its example agent flow runs against a live server over gRPC.
 */

const PYTHON = "/usr/bin/python3";

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startTestServer();
  dir = await mkdtemp(join(tmpdir(), "holdfast-client-py-"));
  await cp("clients/python", join(dir, "src"), { recursive: true });
  await cp("clients/python/examples/agent_flow.py", join(dir, "agent_flow.py"));
  const pip = await python(
    ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index"].concat([
      "--target",
      join(dir, "site"),
      join(dir, "src"),
    ]),
  );
  expect(pip.code, `pip install\n${pip.stdout}\n${pip.stderr}`).toBe(0);
}, 120_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function python(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(PYTHON, args, {
    cwd: dir,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/",
      PYTHONPATH: join(dir, "site"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((done) => child.once("close", (code) => done({ code, stdout, stderr })));
}

describe("the Python client", () => {
  it("runs on Debian's python3 (apt-get install python3-grpcio python3-protobuf)", () => {
    expect(existsSync(PYTHON), `${PYTHON} is missing`).toBe(true);
  });

  it("completes the agent flow against a live server", async () => {
    const w = await bookingWorld(server.url);
    const r = await python(["agent_flow.py", new URL(server.url).host, w.key, w.serviceId]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const flow = JSON.parse(r.stdout) as {
      slotId: string;
      held: string;
      again: string;
      conflict: { reason: string; code: string; alternatives: string[] };
      invalid: { reason: string; fields: string[] };
      confirmed: string;
      cancelled: string;
      events: string[];
    };
    expect(flow.held).toMatch(/^bkg_/);
    expect(flow.again).toBe(flow.held);
    expect(flow.conflict).toMatchObject({ reason: "SLOT_UNAVAILABLE", code: "ABORTED" });
    expect(flow.conflict.alternatives.length).toBeGreaterThan(0);
    expect(flow.conflict.alternatives).not.toContain(flow.slotId);
    expect(flow.invalid.reason).toBe("VALIDATION_ERROR");
    expect(flow.invalid.fields).toContain("time_zone");
    expect(flow.confirmed).toBe("BOOKING_STATUS_CONFIRMED");
    expect(flow.cancelled).toBe("BOOKING_STATUS_CANCELLED");
    expect(flow.events).toEqual(["booking.held", "booking.confirmed", "booking.cancelled"]);

    const { rows } = await server.pool.query(
      "SELECT id, status FROM bookings WHERE tenant_id = $1",
      [w.tenantId],
    );
    expect(rows).toEqual([{ id: flow.held, status: "cancelled" }]);
    // Every mutation carried a key: the hold (once, replayed), the rejected hold, confirm, cancel.
    const keys = await server.pool.query(
      "SELECT method FROM idempotency_keys WHERE tenant_id = $1 ORDER BY create_time",
      [w.tenantId],
    );
    expect(keys.rows.map((k) => k.method)).toEqual([
      "holdfast.v1.BookingService/CreateHold",
      "holdfast.v1.BookingService/CreateHold",
      "holdfast.v1.BookingService/ConfirmBooking",
      "holdfast.v1.BookingService/CancelBooking",
    ]);
  }, 120_000);
});

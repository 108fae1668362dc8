import { existsSync } from "node:fs";
import { cp, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentFlow, expectAgentFlow, protoServices } from "../support/agent-flow.js";
import { bookingWorld } from "../support/booking.js";
import { type CommandRun, runCommand } from "../support/process.js";
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

function python(args: string[]): Promise<CommandRun> {
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, PYTHONPATH: join(dir, "site") };
  return runCommand(PYTHON, args, env, dir);
}

describe("the Python client", () => {
  it("runs on Debian's python3 (apt-get install python3-grpcio python3-protobuf)", () => {
    expect(existsSync(PYTHON), `${PYTHON} is missing`).toBe(true);
  });

  it("offers every service the proto declares", async () => {
    const script = [
      "import json, holdfast_client",
      "c = holdfast_client.Client('127.0.0.1:1', 'hf_none')",
      "print(json.dumps(sorted(v.full_name for v in vars(c).values() if hasattr(v, 'full_name'))))",
    ].join("\n");
    const r = await python(["-c", script]);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toEqual(await protoServices());
  });

  it("completes the agent flow against a live server", async () => {
    const w = await bookingWorld(server.url);
    const r = await python(["agent_flow.py", new URL(server.url).host, w.key, w.serviceId]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    const flow = JSON.parse(r.stdout) as AgentFlow & { conflict: { code: string } };
    expect(flow.conflict.code).toBe("ABORTED");
    await expectAgentFlow(flow, server, w.tenantId, (name) => `BOOKING_STATUS_${name}`);
  }, 120_000);
});

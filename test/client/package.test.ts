import { spawn } from "node:child_process";
import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bookingWorld } from "../support/booking.js";
import { startTestServer, type TestServer } from "../support/server.js";

/**
 * The TypeScript client as people get it: `npm pack` of clients/typescript
 * (its prepack builds dist/), installed into a fresh directory outside the
 * repository, where an agent's flow (clients/typescript/examples) is
 * type-checked against the package's declarations and run against a live
 * server on each transport.
 */

const REPO = resolve(".");
const PACKAGE = join(REPO, "clients/typescript");

type Run = { code: number | null; stdout: string; stderr: string };

/** Runs a command with the environment of a fresh shell (no npm_* of a parent npm). */
function run(command: string, args: string[], cwd: string): Promise<Run> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")),
  );
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
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

function ok(r: Run, what: string): Run {
  expect(r.code, `${what}\n${r.stdout}\n${r.stderr}`).toBe(0);
  return r;
}

let server: TestServer;
let dir: string;

beforeAll(async () => {
  server = await startTestServer();
  dir = await mkdtemp(join(tmpdir(), "holdfast-client-ts-"));
  ok(await run("npm", ["pack", "--pack-destination", dir], PACKAGE), "npm pack");
  const tarball = (await readdir(dir)).find((f) => f.endsWith(".tgz")) as string;
  const app = join(dir, "app");
  await run("mkdir", [app], dir);
  await writeFile(
    join(app, "package.json"),
    JSON.stringify({ name: "agent", private: true, type: "module" }),
  );
  ok(
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, tarball)],
      app,
    ),
    "npm install",
  );
  await copyFile(join(PACKAGE, "examples/agent-flow.ts"), join(app, "agent-flow.ts"));
  await writeFile(
    join(app, "tsconfig.json"),
    JSON.stringify({
      compilerOptions: {
        target: "ES2022",
        lib: ["ES2023", "DOM"],
        module: "NodeNext",
        moduleResolution: "NodeNext",
        strict: true,
        skipLibCheck: true,
        outDir: "out",
        // Node's own types only; everything else comes from the installed package.
        typeRoots: [join(REPO, "node_modules/@types")],
        types: ["node"],
      },
      files: ["agent-flow.ts"],
    }),
  );
  ok(await run(join(REPO, "node_modules/.bin/tsc"), ["-p", "tsconfig.json"], app), "tsc");
}, 300_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("the @holdfast/client package, installed from its tarball", () => {
  it("ships ESM with type declarations and only what it needs", async () => {
    const installed = join(dir, "app/node_modules/@holdfast/client");
    const pkg = (await import(join(installed, "package.json"), { with: { type: "json" } }))
      .default as { name: string; dependencies: Record<string, string> };
    expect(pkg.name).toBe("@holdfast/client");
    expect(Object.keys(pkg.dependencies)).toContain("@connectrpc/connect");
    expect(Object.keys(pkg.dependencies)).toContain("@bufbuild/protobuf");
    const files = await readdir(join(installed, "dist/clients/typescript/src"));
    expect(files).toEqual(expect.arrayContaining(["index.js", "index.d.ts", "web.js", "web.d.ts"]));
  });

  it.each([
    "grpc",
    "connect",
    "web",
  ])("completes the agent flow against a live server (%s)", async (transport) => {
    const w = await bookingWorld(server.url);
    const r = ok(
      await run(
        "node",
        ["out/agent-flow.js", server.url, w.key, w.serviceId, transport],
        join(dir, "app"),
      ),
      "agent flow",
    );
    const flow = JSON.parse(r.stdout) as {
      slotId: string;
      held: string;
      again: string;
      replayed: boolean;
      conflict: { reason: string; isConnectError: boolean; alternatives: string[] };
      invalid: { reason: string; fields: string[] };
      confirmed: string;
      cancelled: string;
      events: string[];
    };
    expect(flow.held).toMatch(/^bkg_/);
    expect(flow.again).toBe(flow.held);
    expect(flow.replayed).toBe(true);
    expect(flow.conflict.reason).toBe("SLOT_UNAVAILABLE");
    expect(flow.conflict.isConnectError).toBe(true);
    expect(flow.conflict.alternatives.length).toBeGreaterThan(0);
    expect(flow.conflict.alternatives).not.toContain(flow.slotId);
    expect(flow.invalid.reason).toBe("VALIDATION_ERROR");
    expect(flow.invalid.fields).toContain("time_zone");
    expect(flow.confirmed).toBe("CONFIRMED");
    expect(flow.cancelled).toBe("CANCELLED");
    expect(flow.events).toEqual(["booking.held", "booking.confirmed", "booking.cancelled"]);

    // What the flow saw is what the server holds: one booking, cancelled.
    const { rows } = await server.pool.query(
      "SELECT id, status FROM bookings WHERE tenant_id = $1",
      [w.tenantId],
    );
    expect(rows).toEqual([{ id: flow.held, status: "cancelled" }]);
  }, 120_000);
});

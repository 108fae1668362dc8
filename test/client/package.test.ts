import { copyFile, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AgentFlow, expectAgentFlow } from "../support/agent-flow.js";
import { bookingWorld } from "../support/booking.js";
import { type CommandRun, runCommand } from "../support/process.js";
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

/** A command with the environment of a fresh shell (no npm_* of a parent npm). */
function run(command: string, args: string[], cwd: string): Promise<CommandRun> {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith("npm_")),
  );
  return runCommand(command, args, env, cwd);
}

function ok(r: CommandRun, what: string): CommandRun {
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
      .default as { name: string; dependencies: Record<string, string>; files: string[] };
    expect(pkg.name).toBe("@holdfast/client");
    // Every entry of "files" is shipped (npm pack skips a missing one silently).
    expect(await readdir(installed)).toEqual(expect.arrayContaining(pkg.files));
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
    const flow = JSON.parse(r.stdout) as AgentFlow & {
      replayed: boolean;
      conflict: { isConnectError: boolean };
    };
    expect(flow.replayed).toBe(true);
    expect(flow.conflict.isConnectError).toBe(true);
    await expectAgentFlow(flow, server, w.tenantId, (name) => name);
  }, 120_000);
});

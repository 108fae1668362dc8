import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll } from "vitest";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { minutes } from "./booking.js";
import { clientFor, newTenant } from "./clients.js";

/** Every tool's name, in the order tools/list gives them to a key with every scope. */
export const ALL_TOOLS = [
  "cancel_booking",
  "confirm_booking",
  "extend_hold",
  "find_slots",
  "get_booking",
  "hold_slot",
  "list_bookings",
  "list_resources",
  "list_services",
  "reschedule_booking",
];

const opened: Client[] = [];
afterAll(async () => {
  await Promise.all(opened.map((c) => c.close().catch(() => undefined)));
});

/** The SDK's own client, over Streamable HTTP at `${url}/mcp`, with `key` as the bearer. */
export async function mcpOverHttp(url: string, key: string): Promise<Client> {
  const client = new Client({ name: "holdfast-test", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(`${url}/mcp`), {
    requestInit: { headers: { authorization: `Bearer ${key}` } },
  });
  await client.connect(transport);
  opened.push(client);
  return client;
}

/** The SDK's own client, talking to `holdfast mcp` run as its own process (stdio). */
export async function mcpOverStdio(
  url: string,
  key: string,
  stderr: string[] = [],
): Promise<Client> {
  const client = new Client({ name: "holdfast-test", version: "1.0.0" });
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: ["bin/holdfast.js", "mcp"],
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "/",
      HOLDFAST_URL: url,
      HOLDFAST_KEY: key,
    },
    stderr: "pipe",
  });
  transport.stderr?.on("data", (d: Buffer) => {
    stderr.push(d.toString());
  });
  await client.connect(transport);
  opened.push(client);
  return client;
}

export type ToolAnswer = {
  isError: boolean;
  text: string;
  // biome-ignore lint/suspicious/noExplicitAny: tool answers are JSON, read by the tests
  data: any;
};

export async function callTool(
  client: Client,
  name: string,
  args: Record<string, unknown>,
): Promise<ToolAnswer> {
  const res = (await client.callTool({ name, arguments: args })) as CallToolResult;
  const text = res.content.map((c) => (c.type === "text" ? c.text : "")).join("\n");
  return { isError: res.isError === true, text, data: res.structuredContent };
}

/**
 * A tenant with one resource in New York (or `timeZone`) open 09:00-17:00
 * every day, and a 30-minute service on it (slots every 30 minutes); keys
 * are made on demand.
 */
export async function clinic(
  url: string,
  { timeZone = "America/New_York", capacity = 1 }: { timeZone?: string; capacity?: number } = {},
) {
  const { key } = await newTenant(url);
  const resources = clientFor(ResourceService, url, key);
  const { resource } = await resources.createResource({
    name: "Dr Lee",
    timeZone,
    capacity,
    weeklySchedule: {
      windows: [1, 2, 3, 4, 5, 6, 7].map((weekday) => ({
        weekday,
        startTime: "09:00",
        endTime: "17:00",
      })),
    },
  });
  const catalog = clientFor(CatalogService, url, key);
  const { service } = await catalog.createService({
    name: "Consultation",
    resourceIds: [resource?.id as string],
    policy: { durations: [minutes(30)], slotInterval: minutes(30) },
  });
  const keys = clientFor(KeyService, url, key);
  return {
    key,
    resourceId: resource?.id as string,
    serviceId: service?.id as string,
    async keyWith(scopes: string[]): Promise<string> {
      return (await keys.createApiKey({ scopes, description: "mcp test" })).apiKey;
    },
  };
}

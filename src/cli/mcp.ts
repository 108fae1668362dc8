import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import type { Command } from "commander";
// The one place the command names where the typed client lives.
import { holdfastTransport } from "../../clients/typescript/src/index.js";
import { apiFor } from "../mcp/api.js";
import { failureOf } from "../mcp/results.js";
import { holdfastMcpServer } from "../mcp/server.js";
import { apiSettings } from "./api.js";
import { CommandFailed } from "./failure.js";
import { terminal } from "./output.js";

/**
 * `holdfast mcp`: the MCP server over stdio, for desktop MCP clients that
 * start their servers as commands. It serves the same tools as `/mcp` on
 * the server, calling the server at HOLDFAST_URL with the key in
 * HOLDFAST_KEY (the Holdfast client's transport: retries with the same
 * idempotency key). stdout carries MCP messages only.
 */
export function mcpCommand(program: Command): void {
  program
    .command("mcp")
    .description(
      "serve the Holdfast tools to an MCP client over stdio (HOLDFAST_URL, HOLDFAST_KEY)",
    )
    .action(async (_o, cmd: Command) => {
      const { url, apiKey } = apiSettings(cmd.optsWithGlobals<{ url: string }>().url);
      const transport = holdfastTransport({ baseUrl: url, apiKey, protocol: "connect" });
      const api = await apiFor(transport, `Bearer ${apiKey}`).catch((err: unknown) => {
        const f = failureOf(err);
        throw new CommandFailed(
          terminal`cannot serve MCP for this key at ${url}: ${f.reason}: ${f.message}`,
        );
      });
      const server = holdfastMcpServer(api);
      const stdio = new StdioServerTransport();
      const closed = new Promise<void>((resolve) => {
        stdio.onclose = () => resolve();
        process.stdin.once("end", () => resolve());
      });
      await server.connect(stdio);
      await closed;
      await server.close();
    });
}

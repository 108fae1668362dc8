import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { log } from "../log.js";

/**
 * The operator console at `/console`: static files from console/ in the
 * repository. Its TypeScript (console/src/) is bundled by esbuild when the
 * server first serves it, so every checkout serves the console its sources
 * describe, with nothing built or committed by hand and nothing fetched
 * from elsewhere at run time.
 */
export const CONSOLE_PATH = "/console";

const ROOT = new URL("../../console/", import.meta.url);

type NodeRequest = IncomingMessage | Http2ServerRequest;
type NodeResponse = ServerResponse | Http2ServerResponse;
type Asset = { body: Buffer; type: string };

/** The bundle of console/src/main.ts, as the browser loads it. */
export async function buildConsoleScript(): Promise<string> {
  const result = await build({
    entryPoints: [fileURLToPath(new URL("src/main.ts", ROOT))],
    bundle: true,
    format: "esm",
    target: "es2022",
    minify: true,
    write: false,
    logLevel: "silent",
    legalComments: "none",
  });
  return result.outputFiles[0]?.text ?? "";
}

const FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

// The page talks only to this server; the API key it holds stays in the tab.
const SECURITY_HEADERS = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

export function consoleHandler(): (req: NodeRequest, res: NodeResponse) => void {
  const assets = new Map<string, Promise<Asset>>();

  function asset(name: string): Promise<Asset> | undefined {
    let found = assets.get(name);
    if (found) return found;
    if (name === "/app.js") {
      found = buildConsoleScript().then((text) => ({
        body: Buffer.from(text),
        type: "text/javascript; charset=utf-8",
      }));
    } else {
      const f = FILES[name];
      if (!f) return undefined;
      found = readFile(new URL(f.file, ROOT)).then((body) => ({ body, type: f.type }));
    }
    // A failed build is retried by the next request rather than kept.
    found.catch(() => assets.delete(name));
    assets.set(name, found);
    return found;
  }

  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0] ?? "";
    if (path === CONSOLE_PATH) {
      res.writeHead(308, { location: `${CONSOLE_PATH}/` });
      res.end();
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" });
      res.end();
      return;
    }
    const found = asset(path.slice(CONSOLE_PATH.length));
    if (!found) {
      res.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
      res.end("not found\n");
      return;
    }
    found.then(
      (a) => {
        res.writeHead(200, {
          "content-type": a.type,
          "content-length": a.body.length,
          "cache-control": "no-cache",
          ...SECURITY_HEADERS,
        });
        if (req.method === "HEAD") res.end();
        else res.end(a.body);
      },
      (err: unknown) => {
        log.error("console asset failed", { path, err });
        res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("the console could not be built\n");
      },
    );
  };
}

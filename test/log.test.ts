// How src/log.ts writes an error: the cause chain kept, protobuf descriptors left out.
import { describe, expect, it } from "vitest";
import { Rejection } from "../src/domain/rejection.js";
import { serializeError } from "../src/log.js";
import { connectErrorOf } from "../src/rpc/errors.js";

describe("logged errors", () => {
  it("name a ConnectError's details by type, without their descriptors, and keep the cause", () => {
    const cause = new Error("connection terminated");
    const err = connectErrorOf(
      new Rejection("UNAVAILABLE", "the database is unreachable; retry shortly", {
        retryDelayMs: 1000,
      }),
      cause,
    );
    const logged = serializeError(err);
    expect(logged.details).toEqual(["google.rpc.ErrorInfo", "google.rpc.RetryInfo"]);
    expect(logged.message).toContain("the database is unreachable");
    expect(JSON.stringify(logged)).toContain("connection terminated");
    // A line, not a dump: before, the descriptors made it kilobytes long.
    expect(JSON.stringify({ ...logged, stack: "" }).length).toBeLessThan(1500);
  });
});

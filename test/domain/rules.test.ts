import { describe, expect, it } from "vitest";
import { canonicalJson } from "../../src/domain/canonical-json.js";
import { invalid, REASONS, Rejection } from "../../src/domain/rejection.js";
import { isTenantScope, scopesBeyond, TENANT_SCOPES } from "../../src/domain/scopes.js";

describe("canonicalJson", () => {
  it("serialises equal values identically whatever their key order", () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { z: 1, y: 2 }], c: null } })).toBe(
      canonicalJson({ a: { c: null, d: [2, { y: 2, z: 1 }] }, b: 1 }),
    );
    expect(canonicalJson({ a: 1, b: undefined })).toBe('{"a":1}');
    expect(canonicalJson([3, 1, 2])).toBe("[3,1,2]");
  });
});

describe("scopes", () => {
  it("knows the tenant scopes and never lists the operator scope among them", () => {
    expect(TENANT_SCOPES).toHaveLength(7);
    expect(isTenantScope("bookings.write")).toBe(true);
    expect(isTenantScope("tenants.manage")).toBe(false);
    expect(isTenantScope("bookings.*")).toBe(false);
  });

  it("finds the scopes a key would grant beyond its own", () => {
    expect(scopesBeyond(["catalog.read", "keys.manage"], ["catalog.read"])).toEqual([]);
    expect(scopesBeyond(["catalog.read"], ["catalog.read", "bookings.write"])).toEqual([
      "bookings.write",
    ]);
  });
});

describe("rejections", () => {
  it("take their status class from the one reasons table", () => {
    expect(new Rejection("SLOT_UNAVAILABLE", "taken").code).toBe("aborted");
    expect(new Rejection("HOLD_EXPIRED", "late").code).toBe("failed_precondition");
    expect(Object.keys(REASONS).every((r) => /^[A-Z][A-Z_]+$/.test(r))).toBe(true);
  });

  it("summarise every field violation in the message", () => {
    const r = invalid([
      { field: "name", description: "must not be empty" },
      { field: "time_zone", description: "is not a zone" },
    ]);
    expect(r.reason).toBe("VALIDATION_ERROR");
    expect(r.message).toBe("invalid request: name: must not be empty; time_zone: is not a zone");
    expect(r.details.fieldViolations).toHaveLength(2);
  });
});

import { readFileSync } from "node:fs";
import type { DescEnum } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { BookingStatus, BookingStatusSchema } from "../../gen/holdfast/v1/booking_pb.js";
import { OverrideKindSchema, ResourceKindSchema } from "../../gen/holdfast/v1/resource_pb.js";
import { DeliveryStatusSchema, WebhookStateSchema } from "../../gen/holdfast/v1/webhook_pb.js";
import { enumNames } from "../../src/rpc/enum-names.js";

/**
 * The names the database stores for each enum come from the generated
 * descriptors (src/rpc/enum-names.ts); the database's own list is its CHECK
 * constraint, read here from the schema dump, so the two cannot drift.
 */

const schema = readFileSync(new URL("../../src/db/schema.sql", import.meta.url), "utf8");
const functions = readFileSync(
  new URL("../../src/db/functions/01_json.sql", import.meta.url),
  "utf8",
);

/** The values a CHECK constraint allows for `column`, in order. */
function allowed(constraint: string, column: string): string[] {
  const line = schema.split("\n").find((l) => l.includes(`CONSTRAINT ${constraint} CHECK`));
  expect(line, constraint).toBeDefined();
  const m = new RegExp(`\\(${column} = ANY \\(ARRAY\\[(.*?)\\]\\)\\)`).exec(line as string);
  return [...(m?.[1] ?? "").matchAll(/'([^']*)'::text/g)].map((x) => x[1] as string);
}

const stored: [string, DescEnum, string, string][] = [
  ["BookingStatus", BookingStatusSchema, "bookings_status_check", "status"],
  ["ResourceKind", ResourceKindSchema, "resources_kind_check", "kind"],
  ["OverrideKind", OverrideKindSchema, "overrides_kind_check", "kind"],
  ["WebhookState", WebhookStateSchema, "webhooks_state_check", "state"],
  ["DeliveryStatus", DeliveryStatusSchema, "deliveries_status_check", "status"],
];

describe("enum names", () => {
  it.each(stored)("%s: the database allows exactly the enum's values", (_, desc, check, column) => {
    expect(enumNames(desc).names).toEqual(allowed(check, column));
  });

  it("map both ways, and UNSPECIFIED and unknown names to nothing", () => {
    const status = enumNames<BookingStatus>(BookingStatusSchema);
    expect(status.nameOf(BookingStatus.NO_SHOW)).toBe("no_show");
    expect(status.valueOf("no_show")).toBe(BookingStatus.NO_SHOW);
    expect(status.nameOf(BookingStatus.UNSPECIFIED)).toBeUndefined();
    expect(status.nameOf(99 as BookingStatus)).toBeUndefined();
    expect(status.valueOf("unspecified")).toBe(BookingStatus.UNSPECIFIED);
  });

  it("booking_json() spells each status as the enum's JSON name", () => {
    // SQL builds the JSON name from the stored one: 'BOOKING_STATUS_' || upper(status).
    const prefix = /'([A-Z_]+)' \|\| upper\(/.exec(functions)?.[1];
    expect(prefix).toBe(BookingStatusSchema.sharedPrefix?.toUpperCase());
    for (const name of enumNames(BookingStatusSchema).names) {
      expect(BookingStatusSchema.values.map((v) => v.name)).toContain(
        `${prefix}${name.toUpperCase()}`,
      );
    }
  });
});

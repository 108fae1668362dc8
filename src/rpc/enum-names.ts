import type { DescEnum } from "@bufbuild/protobuf";

/**
 * A protobuf enum's values by the lower-case names the database stores:
 * each value's name without the enum's shared prefix (BOOKING_STATUS_NO_SHOW
 * is stored as "no_show"), derived from the generated descriptor, so no
 * service keeps its own copy of the map. UNSPECIFIED (0) has no name.
 * test/rpc/enum-names.test.ts checks the names against the database's
 * CHECK constraints in src/db/schema.sql.
 */
export type EnumNames<V extends number, N extends string> = {
  /** Every stored name, in the enum's order. */
  readonly names: readonly N[];
  /** The stored name of a value; undefined for UNSPECIFIED or a number the enum lacks. */
  nameOf(value: V): N | undefined;
  /** The value of a stored name; UNSPECIFIED (0) for a name the enum lacks. */
  valueOf(name: string): V;
};

export function enumNames<V extends number, N extends string = string>(
  desc: DescEnum,
): EnumNames<V, N> {
  const prefix = (desc.sharedPrefix ?? "").toUpperCase();
  const byValue = new Map<number, N>();
  const byName = new Map<string, V>();
  for (const v of desc.values) {
    if (v.number === 0) continue;
    const name = v.name.slice(prefix.length).toLowerCase() as N;
    byValue.set(v.number, name);
    byName.set(name, v.number as V);
  }
  return {
    names: [...byValue.values()],
    nameOf: (value) => byValue.get(value),
    valueOf: (name) => byName.get(name) ?? (0 as V),
  };
}

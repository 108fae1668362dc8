import type { DescField, DescMessage } from "@bufbuild/protobuf";

/**
 * A test of whether a message type holds, at any depth, a field or type
 * `found` picks: the schema is fixed, so each type's answer is kept. Types
 * `skip` picks are not looked into, and a type met again on the way down
 * (Struct and Value contain each other) adds nothing to its first visit.
 */
export function schemaSearch(
  found: (desc: DescMessage, field: DescField) => boolean,
  skip: (desc: DescMessage) => boolean = () => false,
): (desc: DescMessage) => boolean {
  const known = new Map<string, boolean>();
  const search = (desc: DescMessage, seen: Set<string>): boolean => {
    if (skip(desc) || seen.has(desc.typeName)) return false;
    seen.add(desc.typeName);
    return desc.fields.some((f) => {
      if (found(desc, f)) return true;
      const m = messageOf(f);
      return m !== undefined && search(m, seen);
    });
  };
  return (desc) => {
    let answer = known.get(desc.typeName);
    if (answer === undefined) {
      answer = search(desc, new Set());
      known.set(desc.typeName, answer);
    }
    return answer;
  };
}

/** The message type a field holds (singly, in a list or as map values), if any. */
export function messageOf(f: DescField): DescMessage | undefined {
  if (f.fieldKind === "message") return f.message;
  if (f.fieldKind === "list" && f.listKind === "message") return f.message;
  if (f.fieldKind === "map" && f.mapKind === "message") return f.message;
  return undefined;
}

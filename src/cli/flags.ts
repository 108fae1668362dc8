import type { FieldViolation } from "../domain/rejection.js";

/**
 * A refusal names fields by their API paths (`end_time`, `filter.types[0]`,
 * `rate_limit.burst`); a person at a terminal typed flags (`--duration`,
 * `--type`, `--burst`). Each command says which flag gave each field, and
 * its refusals are told in those words: the violation's field, and the
 * field wherever the message names it.
 */

/** API field path → what the person typed for it: a flag, or an argument such as `<booking-id>`. */
export type FlagNames = Readonly<Record<string, string>>;

const literally = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

/** A plain word (`ttl`, `name`) is a field only where a colon follows; a path is one anywhere. */
const isPath = (field: string) => /[_.[]/.test(field);

/**
 * `text` with every field of `flags` it names put in the flag's words, an
 * item of a list as `--scopes (value 1)`. One pass, longest field first, so
 * a name put in is never renamed again.
 */
export function inFlagWords(text: string, flags: FlagNames): string {
  const fields = Object.keys(flags).sort((a, b) => b.length - a.length);
  if (fields.length === 0) return text;
  const pattern = new RegExp(
    `(?<![\\w.\\-])(${fields.map(literally).join("|")})(?:\\[(\\d+)\\])?(?![\\w.])`,
    "g",
  );
  return text.replace(pattern, (found, field: string, index: string | undefined, at: number) => {
    if (!isPath(field) && text[at + found.length] !== ":") return found;
    const flag = flags[field] as string;
    return index === undefined ? flag : `${flag} (value ${Number(index) + 1})`;
  });
}

/** The violations with their fields in the flags' words (a field no flag gave stays as it is). */
export function violationsInFlagWords(
  violations: readonly FieldViolation[],
  flags: FlagNames,
): FieldViolation[] {
  return violations.map((v) => ({
    field: inFlagWords(`${v.field}:`, flags).slice(0, -1),
    description: inFlagWords(v.description, flags),
  }));
}

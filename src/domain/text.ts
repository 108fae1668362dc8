/**
 * Which characters the text a caller names things with may hold. Names,
 * titles, descriptions and attendees end up on other people's screens: the
 * console, terminals (the `holdfast` command), calendar apps (the iCalendar
 * feed) and webhook consumers. Pure, with no Node API: the console's
 * compiler reads src/domain too.
 */

/**
 * The characters that act on a terminal or change how a line reads, and mean
 * nothing in a name: C0 controls (ESC, BEL, CR, LF, TAB, ...), DEL, C1
 * controls (U+0080-U+009F), the line and paragraph separators (U+2028,
 * U+2029), and the invisible bidi embeddings, overrides and isolates
 * (U+202A-U+202E, U+2066-U+2069) that reorder what follows them. As the body
 * of a regular expression's character class (`u` flag), so that the API's
 * rule and the command's escaping (visible() in src/cli/output.ts, which
 * escapes a few more invisible characters besides) are one list.
 */
export const CONTROL_CHARACTERS = "\\p{Cc}\\p{Zl}\\p{Zp}\\u202a-\\u202e\\u2066-\\u2069";

const IN_A_LINE = new RegExp(`[${CONTROL_CHARACTERS}]`, "u");

/**
 * Free text (a description, a cancellation's reason) may run over several
 * lines and hold tabs: TAB, LF and CR are the only ones it may hold.
 */
const IN_FREE_TEXT = new RegExp(`(?![\\t\\n\\r])[${CONTROL_CHARACTERS}]`, "u");

/** "U+001B" for ESC. */
export function codePoint(c: string): string {
  return `U+${(c.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, "0")}`;
}

/**
 * Why `text` cannot be a name, title, label or other one-line value (its
 * first character of CONTROL_CHARACTERS, by code point), or undefined.
 */
export function lineProblem(text: string): string | undefined {
  const found = IN_A_LINE.exec(text)?.[0];
  return found === undefined
    ? undefined
    : `must not contain ${codePoint(found)} (no control, line break or bidi override characters)`;
}

/**
 * Why `text` cannot be free text (a description, a reason), or undefined:
 * as lineProblem, but tabs and line breaks (TAB, LF, CR) are allowed.
 */
export function freeTextProblem(text: string): string | undefined {
  const found = IN_FREE_TEXT.exec(text)?.[0];
  return found === undefined
    ? undefined
    : `must not contain ${codePoint(found)} (no control or bidi override characters; tabs and line breaks are allowed)`;
}

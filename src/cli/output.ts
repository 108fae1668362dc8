import { create, type DescMessage, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { Temporal } from "temporal-polyfill";
import { CONTROL_CHARACTERS } from "../domain/text.js";

/**
 * How the `holdfast` command shows answers: aligned tables for a person,
 * JSON for scripts, and times on the wall clock of the place they happen.
 */

/**
 * What a terminal acts on, or what changes how a line reads, in text the
 * command did not write itself (names, descriptions, attendees, the server's
 * messages): the characters the API refuses in names (CONTROL_CHARACTERS:
 * C0 controls such as ESC, CR, LF, TAB, BEL; DEL; C1 controls; the line and
 * paragraph separators; the bidi embeddings, overrides and isolates), which
 * older rows, free text and metadata may still hold, and besides those the
 * bidi marks (U+061C, U+200E, U+200F) and the invisible U+200B, U+2060 and
 * U+FEFF, which text may rightly hold but a terminal should show. Zero-width
 * (non-)joiners stay: emoji and scripts such as Persian need them.
 */
const UNSAFE = new RegExp(
  `[${CONTROL_CHARACTERS}\\u061c\\u200b\\u200e\\u200f\\u2060\\ufeff]`,
  "gu",
);

const SHORT: Readonly<Record<string, string>> = { "\t": "\\t", "\n": "\\n", "\r": "\\r" };

const hex = (c: string, digits: number) =>
  (c.codePointAt(0) ?? 0).toString(16).padStart(digits, "0");

/**
 * `text` safe to print to a terminal, every character of UNSAFE written as
 * in a JavaScript string: `\t`, `\n`, `\r`, `\xHH` for the other controls
 * up to U+00FF (ESC is `\x1b`), `\uHHHH` above. A backslash already in the
 * text stays as it is (so this can be applied twice); `--json` gives the
 * exact text. Every string the command prints that it did not write itself
 * goes through here, most by printTable and the `terminal` tag.
 */
export function visible(text: string): string {
  return text.replace(
    UNSAFE,
    (c) => SHORT[c] ?? (c < "\u0100" ? `\\x${hex(c, 2)}` : `\\u${hex(c, 4)}`),
  );
}

/**
 * A template tag for the command's own sentences: the literal parts are its
 * own words, and every value put into them is shown with visible(), so a
 * name cannot end the line or speak to the terminal.
 */
export function terminal(words: TemplateStringsArray, ...values: unknown[]): string {
  return words.reduce((text, word, i) => text + visible(String(values[i - 1])) + word);
}

export type Column<T> = { header: string; value: (row: T) => string };

/**
 * Rows as an aligned table with a header line; "(none)" when there are no
 * rows. Every cell is shown with visible(): one row is one line.
 */
export function printTable<T>(rows: readonly T[], columns: readonly Column<T>[]): void {
  if (rows.length === 0) {
    process.stdout.write("(none)\n");
    return;
  }
  const cells = [
    columns.map((c) => visible(c.header)),
    ...rows.map((r) => columns.map((c) => visible(c.value(r)))),
  ];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? "").length)));
  for (const line of cells) {
    const text = line.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ");
    process.stdout.write(`${text.trimEnd()}\n`);
  }
}

/** One JSON document per line, so `--json` output can be piped line by line. */
export function printJson(value: unknown): void {
  process.stdout.write(`${jsonText(value)}\n`);
}

/**
 * `value` as JSON whose text holds no character of UNSAFE, so it is safe on
 * a terminal too: JSON.stringify writes C0 controls as `\u00HH`, and the
 * rest (DEL, C1 controls, separators, bidi) are written the same way here.
 * They can only be inside strings, so the JSON value is exactly the same.
 */
export function jsonText(value: unknown): string {
  return JSON.stringify(value).replace(UNSAFE, (c) => `\\u${hex(c, 4)}`);
}

/** A message as the API's JSON shows it, so `--json` output is the same shape as a Connect JSON answer. */
export function printMessage<S extends DescMessage>(schema: S, init: MessageInitShape<S>): void {
  printJson(toJson(schema, create(schema, init)));
}

/** "Mon 2030-03-04 09:00" on the wall clock of `timeZone`. */
export function localTime(ms: number, timeZone: string): string {
  const t = Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(timeZone);
  const weekday = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][t.dayOfWeek - 1];
  return `${weekday} ${t.toPlainDate().toString()} ${clock(t)}`;
}

/** "09:00-09:30" when both ends fall on one local day, else both in full. */
export function localRange(startMs: number, endMs: number, timeZone: string): string {
  const start = Temporal.Instant.fromEpochMilliseconds(startMs).toZonedDateTimeISO(timeZone);
  const end = Temporal.Instant.fromEpochMilliseconds(endMs).toZonedDateTimeISO(timeZone);
  return start.toPlainDate().equals(end.toPlainDate())
    ? `${localTime(startMs, timeZone)}-${clock(end)}`
    : `${localTime(startMs, timeZone)} - ${localTime(endMs, timeZone)}`;
}

/** The zone with its offset at that instant: "America/New_York (-05:00)". */
export function zoneLabel(ms: number, timeZone: string): string {
  const t = Temporal.Instant.fromEpochMilliseconds(ms).toZonedDateTimeISO(timeZone);
  return `${timeZone} (${t.offset})`;
}

/** The calendar date of an instant in `timeZone`, "YYYY-MM-DD". */
export function localDate(ms: number, timeZone: string): string {
  return Temporal.Instant.fromEpochMilliseconds(ms)
    .toZonedDateTimeISO(timeZone)
    .toPlainDate()
    .toString();
}

function clock(t: Temporal.ZonedDateTime): string {
  return `${String(t.hour).padStart(2, "0")}:${String(t.minute).padStart(2, "0")}`;
}

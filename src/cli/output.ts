import { create, type DescMessage, type MessageInitShape, toJson } from "@bufbuild/protobuf";
import { Temporal } from "temporal-polyfill";

/**
 * How the `holdfast` command shows answers: aligned tables for a person,
 * JSON for scripts, and times on the wall clock of the place they happen.
 */

export type Column<T> = { header: string; value: (row: T) => string };

/** Rows as an aligned table with a header line; "(none)" when there are no rows. */
export function printTable<T>(rows: readonly T[], columns: readonly Column<T>[]): void {
  if (rows.length === 0) {
    process.stdout.write("(none)\n");
    return;
  }
  const cells = [columns.map((c) => c.header), ...rows.map((r) => columns.map((c) => c.value(r)))];
  const widths = columns.map((_, i) => Math.max(...cells.map((line) => (line[i] ?? "").length)));
  for (const line of cells) {
    const text = line.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ");
    process.stdout.write(`${text.trimEnd()}\n`);
  }
}

/** One JSON document per line, so `--json` output can be piped line by line. */
export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
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

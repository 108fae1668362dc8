/**
 * The shape of a resource's schedule exceptions, shared by the rules that
 * read them (availability.ts), expand them (recurrence.ts) and check them
 * as given (overrides.ts).
 */

export type Recurrence = {
  frequency: "weekly" | "monthly";
  /** Every `interval` weeks or months, counted from the override's start_date. >= 1. */
  interval: number;
  /** Weekly: ISO weekdays 1 (Monday) .. 7 (Sunday); empty means the weekday of start_date. */
  weekdays: number[];
  /** Monthly by date: 1..31; months without that day are skipped. */
  monthDay: number | null;
  /** Monthly by weekday: 1..5 (first..fifth) or -1 (last), together with `weekday`. */
  weekOfMonth: number | null;
  weekday: number | null;
  /** "YYYY-MM-DD", inclusive; null: no end (other than end_date). */
  until: string | null;
};

/** A BLOCK (removes time) or OPEN (adds time) exception to a resource's weekly schedule. */
export type OverrideRule = {
  id: string;
  kind: "block" | "open";
  allDay: boolean;
  /** "YYYY-MM-DD" in the resource's zone. */
  startDate: string;
  /**
   * "YYYY-MM-DD", inclusive, or null. Without recurrence: the override
   * covers every day from startDate to endDate (startDate alone when null).
   * With recurrence: occurrences stop after endDate (as well as `until`).
   */
  endDate: string | null;
  /** Minutes since local midnight when not all day (end may be 1440 = 24:00). */
  startMinute: number | null;
  endMinute: number | null;
  recurrence: Recurrence | null;
  /** The caller's name for it ("Team offsite"), for refusals that name the block; not a rule. */
  title?: string;
};

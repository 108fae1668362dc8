import type { OverrideRule, Recurrence } from "../../src/domain/override-rule.js";

/**
 * Override rules as the domain reads them, for its tests: an all-day block
 * from `startDate` with no end, no times and no repeat, unless `p` says
 * otherwise. The date is always the test's own: what a rule covers is what
 * such tests are about.
 */
export function override(p: Partial<OverrideRule> & Pick<OverrideRule, "startDate">): OverrideRule {
  return {
    id: "o1",
    kind: "block",
    allDay: true,
    endDate: null,
    startMinute: null,
    endMinute: null,
    recurrence: null,
    ...p,
  };
}

/** A repeat of an override: every week, on no weekday and with no end, unless `p` says otherwise. */
export function recurrence(p: Partial<Recurrence>): Recurrence {
  return {
    frequency: "weekly",
    interval: 1,
    weekdays: [],
    monthDay: null,
    weekOfMonth: null,
    weekday: null,
    until: null,
    ...p,
  };
}

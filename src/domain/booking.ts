import type { Policy, WeeklyWindow } from "./catalog.js";
import { Rejection } from "./rejection.js";
import { MINUTE_MS } from "./time.js";

/**
 * The rules a hold or booking must pass before it is written, checked
 * against the service and resource as read (their revisions go with the
 * write, which refuses if either changed meanwhile). Rules that need the
 * clock (min notice, max advance) and occupancy are checked inside the
 * write, against the database's clock, under the resource's lock.
 */

export type ServiceSnapshot = {
  id: string;
  active: boolean;
  revision: number;
  policyVersion: number;
  policy: Policy;
  timeZone: string;
  resourceIds: string[];
};

export type ResourceSnapshot = {
  id: string;
  active: boolean;
  revision: number;
  capacity: number;
  timeZone: string;
  weeklySchedule: WeeklyWindow[] | null;
};

export type RequestedTime = { startMs: number; endMs: number };

export function checkBookable(
  service: ServiceSnapshot,
  resource: ResourceSnapshot,
  time: RequestedTime,
): void {
  if (!service.active) {
    throw new Rejection(
      "SERVICE_INACTIVE",
      `service "${service.id}" is inactive and takes no new bookings`,
    );
  }
  if (!service.resourceIds.includes(resource.id)) {
    throw new Rejection(
      "RESOURCE_NOT_IN_SERVICE",
      `resource "${resource.id}" does not deliver service "${service.id}"`,
      {
        fieldViolations: [
          { field: "resource_id", description: "is not one of the service's resources" },
        ],
      },
    );
  }
  if (!resource.active) {
    throw new Rejection(
      "RESOURCE_INACTIVE",
      `resource "${resource.id}" is inactive and takes no new bookings`,
    );
  }
  checkDuration(service.policy, time.endMs - time.startMs);
}

export function checkDuration(policy: Policy, durationMs: number): void {
  if (policy.durationsMs.includes(durationMs)) return;
  const allowed = policy.durationsMs.map((ms) => `${ms / MINUTE_MS} min`).join(", ");
  throw new Rejection(
    "INVALID_DURATION",
    `a booking of ${durationMs / MINUTE_MS} min is not offered; allowed: ${allowed}`,
    {
      fieldViolations: [
        { field: "end_time", description: `the duration must be one of ${allowed}` },
      ],
    },
  );
}

/** A hold's lifetime: the request's ttl or the policy's default, never beyond max_hold_ttl. */
export function holdTtlMs(policy: Policy, requestedMs: number | null): number {
  return Math.min(requestedMs ?? policy.holdTtlMs, policy.maxHoldTtlMs);
}

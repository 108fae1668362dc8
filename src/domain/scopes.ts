/**
 * What an API key may do. A tenant's keys hold any of TENANT_SCOPES; only
 * the operator key of tenant `default` also holds `tenants.manage`.
 */
export const TENANT_SCOPES = [
  "bookings.read",
  "bookings.write",
  "catalog.read",
  "catalog.manage",
  "events.read",
  "webhooks.manage",
  "keys.manage",
] as const;

export const OPERATOR_SCOPE = "tenants.manage";

export type Scope = (typeof TENANT_SCOPES)[number] | typeof OPERATOR_SCOPE;

export function isTenantScope(s: string): s is (typeof TENANT_SCOPES)[number] {
  return (TENANT_SCOPES as readonly string[]).includes(s);
}

/** Scopes in `requested` that `granter` does not hold: a key cannot grant more than it has. */
export function scopesBeyond(granter: readonly string[], requested: readonly string[]): string[] {
  return requested.filter((s) => !granter.includes(s));
}

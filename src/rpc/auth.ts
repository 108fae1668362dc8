import { timingSafeEqual } from "node:crypto";
import { type DescMethod, getOption } from "@bufbuild/protobuf";
import {
  type ContextValues,
  createContextKey,
  type HandlerContext,
  type Interceptor,
} from "@connectrpc/connect";
import { required_scope } from "../../gen/holdfast/v1/options_pb.js";
import { findActiveKey, hashSecret } from "../db/keys.js";
import type { Queryable } from "../db/pool.js";
import { CHANNEL, type Signals } from "../db/signals.js";
import { Rejection } from "../domain/rejection.js";
import { OPERATOR_SCOPE, TENANT_SCOPES } from "../domain/scopes.js";

/** Who is calling: the tenant every query of the call is scoped to, and what the key may do. */
export type Principal = { tenantId: string; keyId: string; scopes: readonly string[] };

const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "holdfast principal",
});

/** The caller of an authenticated RPC. */
export function principalOf(ctx: HandlerContext): Principal {
  const p = callerIn(ctx.values);
  if (!p) throw new Error("principalOf called on an RPC without a required scope");
  return p;
}

/** The caller, for interceptors: undefined on RPCs that need no key (health, reflection). */
export function callerIn(values: ContextValues): Principal | undefined {
  return values.get(principalKey);
}

/** Reads `required_scope` from the RPC's proto options; empty for health and reflection. */
export function requiredScopeOf(method: DescMethod): string {
  return getOption(method, required_scope);
}

/** The `required_scope` of RPCs that any valid key may call, whatever its scopes. */
export const ANY_SCOPE = "*";

const CACHE_TTL_MS = 30_000;
const CACHE_MAX = 10_000;

/**
 * Resolves bearer secrets to principals, with a small cache so that a
 * request costs no database round trip for its key. Revocation clears the
 * entry on every instance through a notification; the TTL bounds staleness
 * if that notification is ever missed.
 */
export class Keyring {
  private readonly cache = new Map<string, { principal: Principal | null; expires: number }>();
  private readonly adminHash: Buffer | undefined;

  constructor(
    private readonly db: Queryable,
    private readonly defaultTenantId: string,
    adminKey: string | undefined,
    signals: Signals | undefined,
  ) {
    this.adminHash = adminKey === undefined ? undefined : hashSecret(adminKey);
    signals?.on(CHANNEL.keys, (hashHex: string) => this.cache.delete(hashHex));
    signals?.on("reconnected", () => this.cache.clear());
  }

  forget(hashHex: string): void {
    this.cache.delete(hashHex);
  }

  async resolve(secret: string): Promise<Principal | null> {
    const hash = hashSecret(secret);
    if (this.adminHash && timingSafeEqual(hash, this.adminHash)) {
      return {
        tenantId: this.defaultTenantId,
        keyId: "env:HOLDFAST_ADMIN_KEY",
        scopes: [...TENANT_SCOPES, OPERATOR_SCOPE],
      };
    }
    const hex = hash.toString("hex");
    const now = Date.now();
    const cached = this.cache.get(hex);
    if (cached && cached.expires > now) return cached.principal;
    const row = await findActiveKey(this.db, hash);
    const principal = row ? { tenantId: row.tenant_id, keyId: row.id, scopes: row.scopes } : null;
    if (this.cache.size >= CACHE_MAX) this.cache.clear();
    this.cache.set(hex, { principal, expires: now + CACHE_TTL_MS });
    return principal;
  }
}

/**
 * Every RPC that declares a required scope needs `Authorization: Bearer
 * hf_...` with a key holding that scope: no key or an unknown one is
 * Unauthenticated, a missing scope PermissionDenied.
 */
export function authInterceptor(keyring: Keyring): Interceptor {
  return (next) => async (req) => {
    const scope = requiredScopeOf(req.method);
    if (scope === "") return next(req);
    const principal = await authenticate(keyring, req.header.get("authorization"), scope);
    req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/** The caller behind an Authorization header, if its key holds `scope` (or ANY_SCOPE is asked). */
export async function authenticate(
  keyring: Keyring,
  header: string | null | undefined,
  scope: string,
): Promise<Principal> {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
  if (!match) {
    throw new Rejection(
      "UNAUTHENTICATED",
      "missing API key: send the header Authorization: Bearer hf_...",
    );
  }
  const principal = await keyring.resolve(match[1] as string);
  if (!principal)
    throw new Rejection("UNAUTHENTICATED", "the API key is not valid or has been revoked");
  if (scope !== ANY_SCOPE && !principal.scopes.includes(scope)) {
    throw new Rejection("MISSING_SCOPE", `this API key lacks the scope "${scope}"`, {
      metadata: { required_scope: scope },
    });
  }
  return principal;
}

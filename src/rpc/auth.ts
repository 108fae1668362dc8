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
import { LoadingCache } from "../db/loading-cache.js";
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

const scopes = new WeakMap<DescMethod, string>();

/**
 * Reads `required_scope` from the RPC's proto options; empty for health and
 * reflection. Kept per method: reading an option decodes it, on every call.
 */
export function requiredScopeOf(method: DescMethod): string {
  let scope = scopes.get(method);
  if (scope === undefined) {
    scope = getOption(method, required_scope);
    scopes.set(method, scope);
  }
  return scope;
}

/** The `required_scope` of RPCs that any valid key may call, whatever its scopes. */
export const ANY_SCOPE = "*";

export type KeyCacheSettings = {
  /** Valid keys kept at most. */
  size: number;
  /** How long a key is trusted without asking the database, in ms. */
  ttlMs: number;
};

/** Unknown keys remembered at most (apart from the valid ones, which they never evict). */
const UNKNOWN_KEYS_MAX = 1_000;

/**
 * Resolves bearer secrets to principals, with a cache so that a request
 * costs no database round trip for its key. Revocation clears the entry on
 * every instance through a notification; the TTL bounds staleness if that
 * notification is ever missed. Unknown keys are remembered apart, a few
 * and as briefly, so a flood of made-up keys cannot push out valid ones.
 */
export class Keyring {
  private readonly cache: LoadingCache<Principal>;
  private readonly adminHash: Buffer | undefined;
  /** Open streams' keys, by secret hash: each aborts when its key is revoked. */
  private readonly watched = new Map<string, Set<AbortController>>();

  constructor(
    db: Queryable,
    private readonly defaultTenantId: string,
    adminKey: string | undefined,
    signals: Signals | undefined,
    settings: KeyCacheSettings,
  ) {
    this.adminHash = adminKey === undefined ? undefined : hashSecret(adminKey);
    this.cache = new LoadingCache<Principal>({
      max: settings.size,
      ttlMs: settings.ttlMs,
      missMax: UNKNOWN_KEYS_MAX,
      missTtlMs: settings.ttlMs,
      load: async (hex) => {
        const row = await findActiveKey(db, Buffer.from(hex, "hex"));
        return row ? { tenantId: row.tenant_id, keyId: row.id, scopes: row.scopes } : undefined;
      },
    });
    signals?.on(CHANNEL.keys, (hashHex: string) => this.forget(hashHex));
    signals?.on("reconnected", () => {
      this.cache.clear();
      // Revocations may have passed unheard: ask again for every watched key.
      for (const hashHex of this.watched.keys()) {
        this.cache.get(hashHex).then(
          (p) => p ?? this.revoked(hashHex),
          () => {},
        );
      }
    });
  }

  /** The key with this secret hash was revoked (here, or on another instance). */
  forget(hashHex: string): void {
    this.cache.forget(hashHex);
    this.revoked(hashHex);
  }

  private revoked(hashHex: string): void {
    const reason = new Rejection("UNAUTHENTICATED", "the API key was revoked");
    for (const watcher of this.watched.get(hashHex) ?? []) watcher.abort(reason);
    this.watched.delete(hashHex);
  }

  /**
   * For a stream that outlives one request: a signal that aborts, with an
   * UNAUTHENTICATED Rejection as its reason, once the key in `authorization`
   * is revoked. `stop` when the stream ends.
   */
  revocation(authorization: string | null | undefined): { signal: AbortSignal; stop(): void } {
    const watcher = new AbortController();
    const secret = bearerSecret(authorization);
    if (secret === undefined) return { signal: watcher.signal, stop() {} };
    const hash = hashSecret(secret);
    // HOLDFAST_ADMIN_KEY is not stored, so it cannot be revoked.
    if (this.adminHash && timingSafeEqual(hash, this.adminHash)) {
      return { signal: watcher.signal, stop() {} };
    }
    const hashHex = hash.toString("hex");
    const set = this.watched.get(hashHex) ?? new Set<AbortController>();
    this.watched.set(hashHex, set);
    set.add(watcher);
    return {
      signal: watcher.signal,
      stop: () => {
        set.delete(watcher);
        if (set.size === 0 && this.watched.get(hashHex) === set) this.watched.delete(hashHex);
      },
    };
  }

  /** Database lookups of keys so far (each one a round trip). */
  get lookups(): number {
    return this.cache.loadCount;
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
    return (await this.cache.get(hash.toString("hex"))) ?? null;
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
  const secret = bearerSecret(header);
  if (secret === undefined) {
    throw new Rejection(
      "UNAUTHENTICATED",
      "missing API key: send the header Authorization: Bearer hf_...",
    );
  }
  const principal = await keyring.resolve(secret);
  if (!principal)
    throw new Rejection("UNAUTHENTICATED", "the API key is not valid or has been revoked");
  if (scope !== ANY_SCOPE && !principal.scopes.includes(scope)) {
    throw new Rejection("MISSING_SCOPE", `this API key lacks the scope "${scope}"`, {
      metadata: { required_scope: scope },
    });
  }
  return principal;
}

/** The secret of an `Authorization: Bearer …` header, if it has one. */
function bearerSecret(header: string | null | undefined): string | undefined {
  return /^Bearer\s+(\S+)\s*$/i.exec(header ?? "")?.[1];
}

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import type { ApiKeySchema, KeyService } from "../../gen/holdfast/v1/key_pb.js";
import { insertKey, type KeyRow, listKeys, ownRateLimit, revokeKey } from "../db/keys.js";
import type { Db } from "../db/pool.js";
import { quotaUsage } from "../db/quotas.js";
import { type RateDefaults, rateRemaining, tenantRateLimit } from "../db/rate-limits.js";
import { getTenant, tenantNotFound } from "../db/tenants.js";
import { grantedKeyLimit, keyLimitExcess } from "../domain/rate-limit.js";
import { invalid, Rejection } from "../domain/rejection.js";
import { isTenantScope, OPERATOR_SCOPE, scopesBeyond, TENANT_SCOPES } from "../domain/scopes.js";
import { type Keyring, principalOf } from "./auth.js";
import { timestampOfDate } from "./convert.js";
import { dbOf } from "./idempotency.js";
import { readPage, writePage } from "./paging.js";
import { withinQuota } from "./quota.js";
import * as v from "./validate.js";

export function apiKeyOf(k: KeyRow): MessageInitShape<typeof ApiKeySchema> {
  return {
    id: k.id,
    prefix: k.prefix,
    scopes: k.scopes,
    description: k.description,
    createTime: timestampOfDate(k.create_time),
    revokeTime: k.revoke_time ? timestampOfDate(k.revoke_time) : undefined,
    rateLimit:
      k.rate_per_second !== null && k.rate_burst !== null
        ? { requestsPerSecond: k.rate_per_second, burst: k.rate_burst }
        : undefined,
  };
}

/** What CreateApiKey accepts; the `holdfast keys create` command checks the same. */
export const newKeySchema = z.object({
  scopes: z
    .array(
      z.string().refine(isTenantScope, {
        message: `is not a scope; scopes are ${TENANT_SCOPES.join(", ")}`,
      }),
    )
    .min(1, "must list at least one scope")
    .transform((s) => [...new Set(s)]),
  description: v.freeText,
  rateLimit: v.rateLimit,
});

/** The request field of a rate limit's part. */
function rateLimitField(part: "perSecond" | "burst"): string {
  return part === "burst" ? "rate_limit.burst" : "rate_limit.requests_per_second";
}

export function keyService(
  base: Db,
  keyring: Keyring,
  rateDefaults: RateDefaults,
): ServiceImpl<typeof KeyService> {
  return {
    async createApiKey(req, ctx) {
      const f = v.parseRequest(newKeySchema, req);
      const principal = principalOf(ctx);
      const beyond = scopesBeyond(principal.scopes, f.scopes);
      if (beyond.length > 0) {
        throw new Rejection(
          "MISSING_SCOPE",
          `a key cannot grant scopes it does not hold: ${beyond.join(", ")}`,
          {
            fieldViolations: [
              { field: "scopes", description: `not held by the calling key: ${beyond.join(", ")}` },
            ],
          },
        );
      }
      const db = dbOf(ctx, base);
      const tenant = await tenantRateLimit(db, principal.tenantId, rateDefaults);
      if (f.rateLimit) {
        const over = keyLimitExcess(f.rateLimit, tenant);
        if (over.length > 0) {
          throw invalid(
            over.map((field) => ({
              field: rateLimitField(field),
              description: `must not exceed the tenant's (${field === "burst" ? tenant.burst : tenant.perSecond})`,
            })),
          );
        }
      }
      // Nor can a key grant a rate limit above its own.
      const creator = await ownRateLimit(db, principal.tenantId, principal.keyId);
      const granted = grantedKeyLimit(f.rateLimit, creator, tenant);
      if (creator && granted.over.length > 0) {
        const held = granted.over.map((field) =>
          field === "burst" ? `burst ${creator.burst}` : `${creator.perSecond}/s`,
        );
        throw new Rejection(
          "MISSING_SCOPE",
          `a key cannot grant a rate limit above its own: ${held.join(", ")}`,
          {
            fieldViolations: granted.over.map((field) => ({
              field: rateLimitField(field),
              description: `must not exceed the calling key's (${field === "burst" ? creator.burst : creator.perSecond})`,
            })),
          },
        );
      }
      const { secret, key } = await withinQuota(db, principal.tenantId, "api_keys", (tx) =>
        insertKey(tx, principal.tenantId, f.scopes, f.description, granted.limit),
      );
      return { apiKey: secret, key: apiKeyOf(key) };
    },

    async listApiKeys(req, ctx) {
      v.parseRequest(z.object(v.pageFields), req);
      const page = readPage(ctx, req, { r: req.includeRevoked });
      const rows = await listKeys(base, principalOf(ctx).tenantId, {
        after: page.after,
        limit: page.size + 1,
        includeRevoked: req.includeRevoked,
      });
      const { items, nextPageToken } = writePage(rows, page, (k) => k.id);
      return { keys: items.map(apiKeyOf), nextPageToken };
    },

    async revokeApiKey(req, ctx) {
      const principal = principalOf(ctx);
      // A key can take away only what it could have granted.
      const revoked = await revokeKey(
        dbOf(ctx, base),
        principal.tenantId,
        req.apiKeyId,
        principal.scopes,
      );
      if (!revoked) {
        throw new Rejection("API_KEY_NOT_FOUND", `no API key with id "${req.apiKeyId}"`, {
          fieldViolations: [{ field: "api_key_id", description: "no such key" }],
        });
      }
      if ("beyond" in revoked) {
        throw new Rejection(
          "MISSING_SCOPE",
          `a key cannot revoke a key holding scopes it does not hold: ${revoked.beyond.join(", ")}`,
          {
            fieldViolations: [
              {
                field: "api_key_id",
                description: `holds scopes the calling key does not: ${revoked.beyond.join(", ")}`,
              },
            ],
          },
        );
      }
      // Other instances forget it through the notification; this one at once.
      keyring.forget(revoked.secretHashHex);
      return { key: apiKeyOf(revoked.key) };
    },

    async getUsage(req, ctx) {
      const f = v.parseRequest(z.object({ tenantId: v.optionalId }), req);
      const caller = principalOf(ctx);
      const own = f.tenantId === "" || f.tenantId === caller.tenantId;
      if (!own && !caller.scopes.includes(OPERATOR_SCOPE)) {
        throw new Rejection(
          "MISSING_SCOPE",
          `only a key with the scope "${OPERATOR_SCOPE}" may ask about another tenant`,
          { metadata: { required_scope: OPERATOR_SCOPE } },
        );
      }
      const tenantId = own ? caller.tenantId : f.tenantId;
      const quotas = await quotaUsage(base, tenantId);
      if (!quotas) throw tenantNotFound(tenantId);
      const rates = await rateRemaining(base, tenantId, caller.keyId, rateDefaults);
      return {
        tenantId,
        rateLimits: rates
          .filter((r) => own || r.policy === "tenant")
          .map((r) => ({
            policy: r.policy,
            rateLimit: { requestsPerSecond: r.limit.perSecond, burst: r.limit.burst },
            remaining: r.remaining,
          })),
        quotas: quotas.map((q) => ({ quota: q.quota, limit: q.limit, usage: BigInt(q.usage) })),
      };
    },

    async getCaller(_req, ctx) {
      const caller = principalOf(ctx);
      // Keys reference their tenant's row, so it exists whenever a key resolved.
      const tenant = await getTenant(base, caller.tenantId);
      return {
        tenantId: caller.tenantId,
        tenantName: tenant?.name ?? "",
        apiKeyId: caller.keyId,
        scopes: [...caller.scopes],
      };
    },
  };
}

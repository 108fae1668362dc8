import type { Interceptor } from "@connectrpc/connect";
import {
  type RateCheck,
  rateLimitField,
  rateLimitPolicyField,
  refusingPolicy,
} from "../domain/rate-limit.js";
import { Rejection } from "../domain/rejection.js";
import { callerIn } from "./auth.js";
import { toConnectError } from "./errors.js";
import { callSite } from "./observe.js";
import type { RateLimiter } from "./rate-limiter.js";

export const RATE_LIMIT_POLICY_HEADER = "ratelimit-policy";
export const RATE_LIMIT_HEADER = "ratelimit";

/**
 * The rate limits of the calling key and its tenant, after authentication
 * and before anything else touches the database. Calls without a caller
 * (health, reflection) are not limited. Every limited answer, refused or
 * not, carries the RateLimit-Policy and RateLimit fields: as HTTP headers,
 * or as gRPC response metadata (a refusal's in its trailers). A refusal is
 * RATE_LIMITED with a RetryInfo, and over HTTP a Retry-After header too.
 */
export function rateLimitInterceptor(limiter: RateLimiter): Interceptor {
  return (next) => async (req) => {
    const caller = callerIn(req.contextValues);
    if (!caller) return next(req);
    const check = await limiter.take(caller.tenantId, caller.keyId);
    const fields = rateLimitFields(check);
    if (!check.allowed) {
      const err = toConnectError(rateLimited(check));
      for (const [k, v] of fields) err.metadata.set(k, v);
      throw err;
    }
    try {
      const res = await next(req);
      for (const [k, v] of fields) res.header.set(k, v);
      return res;
    } catch (err) {
      const ce = toConnectError(err, callSite(req));
      for (const [k, v] of fields) ce.metadata.set(k, v);
      throw ce;
    }
  };
}

/** The header fields of a limited answer: RateLimit-Policy and RateLimit, and Retry-After when refused. */
export function rateLimitFields(check: RateCheck): [string, string][] {
  const fields: [string, string][] = [
    [RATE_LIMIT_POLICY_HEADER, rateLimitPolicyField(check)],
    [RATE_LIMIT_HEADER, rateLimitField(check)],
  ];
  if (!check.allowed) {
    fields.push(["retry-after", String(Math.max(1, Math.ceil(check.retryMs / 1000)))]);
  }
  return fields;
}

/**
 * The RATE_LIMITED rejection of a refused check, with its RetryInfo.
 * `caller` names what the "key" bucket belongs to (a calendar feed has one
 * of its own).
 */
export function rateLimited(check: RateCheck, caller = "API key"): Rejection {
  const policy = refusingPolicy(check)?.policy ?? "key";
  return new Rejection(
    "RATE_LIMITED",
    `over the ${policy === "key" ? `${caller}'s` : "tenant's"} rate limit: retry in ${Math.ceil(check.retryMs)} ms`,
    {
      retryDelayMs: check.retryMs,
      metadata: { policy, retry_delay_ms: String(Math.ceil(check.retryMs)) },
    },
  );
}

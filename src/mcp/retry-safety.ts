import { createHash, randomUUID } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import { type Booking, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { canonicalJson } from "../domain/canonical-json.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { REPLAYED_HEADER } from "../rpc/idempotency.js";
import type { McpApi } from "./api.js";

/**
 * Retry safety for tools that write, with or without an idempotency_key.
 *
 * With `idempotency_key`, it is sent as the API's Idempotency-Key: the same
 * key with the same arguments answers the first outcome again, for 24 hours.
 *
 * Without one, agent frameworks still retry a tool call that timed out, as
 * a new MCP request with a new JSON-RPC id, so the key cannot come from the
 * request id: it is derived from what the call asks, a hash of the API key,
 * the tool and its arguments. A retry of a call that went through thus gets
 * the same booking back, never a second one. An identical call made later
 * on purpose must not get a stale answer, so a replayed answer is used only
 * while it is still current:
 *   - a replayed refusal means the earlier call changed nothing: the call is
 *     made anew;
 *   - a replayed booking that has changed since (its update_time moved) or
 *     whose hold has lapsed is stale: the call is made anew.
 * "Anew" is again deterministic: the next key is a hash of the previous key
 * and what made its answer stale, so a retry of that new call follows the
 * same chain to the same answer. Whether a booking changed is asked with
 * GetBooking; a key without `bookings.read` (or a GetBooking that fails)
 * cannot tell, so takes the replay as current (safe: it never books twice)
 * but marks it `unchecked`: its status is the earlier call's, and the
 * answer must say that it may have changed rather than state it as fact.
 */

const MAX_CHAIN = 8;

type Call<T> = (idempotencyKey: string, onHeader: (h: Headers) => void) => Promise<T>;

export type Guarded<T> = {
  answer: T;
  replayed: boolean;
  /** A replayed booking whose current status could not be read. */
  unchecked?: boolean;
};

export async function retrySafe<T extends { booking?: Booking }>(
  api: McpApi,
  tool: string,
  args: Record<string, unknown>,
  call: Call<T>,
): Promise<Guarded<T>> {
  const given = args.idempotency_key;
  if (typeof given === "string") return once(given, call);
  const { idempotency_key: _, ...rest } = args;
  let key = `mcp-${digest(canonicalJson({ key: api.caller.apiKeyId, tool, args: rest }))}`;
  for (let i = 0; i < MAX_CHAIN; i++) {
    let outcome: Guarded<T>;
    try {
      outcome = await once(key, call);
    } catch (err) {
      if (ConnectError.from(err).metadata.get(REPLAYED_HEADER) !== "true") throw err;
      key = `mcp-${digest(`${key}/refused`)}`;
      continue;
    }
    const b = outcome.answer.booking;
    if (!outcome.replayed || !b) return outcome;
    const current = await isCurrent(api, b);
    if (current === "unknown") return { ...outcome, unchecked: true };
    if (current === "yes") return outcome;
    key = `mcp-${digest(`${key}/${b.id}/${b.updateTime ? msOfTimestamp(b.updateTime) : ""}`)}`;
  }
  return once(randomUUID(), call);
}

async function once<T>(key: string, call: Call<T>): Promise<Guarded<T>> {
  let replayed = false;
  const answer = await call(key, (h) => {
    replayed = h.get(REPLAYED_HEADER) === "true";
  });
  return { answer, replayed };
}

function digest(text: string): string {
  return createHash("sha256").update(text).digest("base64url");
}

async function isCurrent(api: McpApi, replayed: Booking): Promise<"yes" | "no" | "unknown"> {
  if (!api.caller.scopes.includes("bookings.read")) return "unknown";
  const now = await api.bookings
    .getBooking({ bookingId: replayed.id })
    .then((r) => r.booking)
    .catch(() => undefined);
  if (!now) return "unknown";
  const same =
    now.updateTime !== undefined &&
    replayed.updateTime !== undefined &&
    msOfTimestamp(now.updateTime) === msOfTimestamp(replayed.updateTime) &&
    now.status === replayed.status;
  const lapsed = now.status === BookingStatus.EXPIRED;
  return same && !lapsed ? "yes" : "no";
}

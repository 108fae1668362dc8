import { createHash } from "node:crypto";
import { ConnectError } from "@connectrpc/connect";
import { LRUCache } from "lru-cache";
import { type Booking, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { canonicalJson } from "../domain/canonical-json.js";
import { msOfTimestamp } from "../rpc/convert.js";
import { REPLAYED_HEADER } from "../rpc/idempotency.js";
import type { McpApi } from "./api.js";
import { ToolFailure } from "./results.js";

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
 *
 * What "current" means follows what the tool asks for. hold_slot asks for a
 * hold of that time: its booking is current while it is held or confirmed,
 * however often it was extended or changed since (a new hold beside it would
 * be a second booking for one caller). The other tools ask for a change: a
 * replay is current only while the booking has not changed since.
 *
 * A replayed booking that is current is answered as it is now (GetBooking's
 * copy), not as it was: its status and expiry are stated as fact. The same
 * holds for a replay under the caller's own idempotency_key.
 *
 * The chain never falls back to a key of chance: a retry must land on the
 * key its first call used. Links a chain has left behind stay behind (a
 * stored refusal stays a refusal; a booking that changed or ended does not
 * come back), so each instance remembers where a chain was last seen to go
 * on and starts there; a walk from the start (another instance, a restart)
 * follows at most MAX_CHAIN links and then asks the agent for an
 * idempotency_key of its own rather than risk a second booking.
 */

const MAX_CHAIN = 32;

/** Where a call's chain was last seen to go on, by the chain's first key. */
const chainEnds = new LRUCache<string, string>({ max: 10_000 });

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
  if (typeof given === "string") {
    const outcome = await once(given, call);
    const b = outcome.answer.booking;
    if (!outcome.replayed || !b) return outcome;
    const now = await currentCopy(api, b);
    return now
      ? { ...outcome, answer: { ...outcome.answer, booking: now } }
      : { ...outcome, unchecked: true };
  }
  const { idempotency_key: _, ...rest } = args;
  const first = `mcp-${digest(canonicalJson({ key: api.caller.apiKeyId, tool, args: rest }))}`;
  let key = chainEnds.get(first) ?? first;
  for (let i = 0; i < MAX_CHAIN; i++) {
    let outcome: Guarded<T>;
    try {
      outcome = await once(key, call);
    } catch (err) {
      if (ConnectError.from(err).metadata.get(REPLAYED_HEADER) !== "true") throw err;
      key = `mcp-${digest(`${key}/refused`)}`;
      chainEnds.set(first, key);
      continue;
    }
    const b = outcome.answer.booking;
    if (!outcome.replayed || !b) return outcome;
    const now = await currentCopy(api, b);
    if (!now) return { ...outcome, unchecked: true };
    if (isCurrent(tool, b, now)) return { ...outcome, answer: { ...outcome.answer, booking: now } };
    key = `mcp-${digest(`${key}/${b.id}/${b.updateTime ? msOfTimestamp(b.updateTime) : ""}`)}`;
    chainEnds.set(first, key);
  }
  throw new ToolFailure(
    "IDEMPOTENCY_KEY_REQUIRED",
    `this call was made with the same arguments more than ${MAX_CHAIN} times and each answer is stale or a refusal: pass an idempotency_key of your own`,
  );
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

/** The booking as it is now, or undefined when this key cannot read it. */
async function currentCopy(api: McpApi, replayed: Booking): Promise<Booking | undefined> {
  if (!api.caller.scopes.includes("bookings.read")) return undefined;
  return api.bookings
    .getBooking({ bookingId: replayed.id })
    .then((r) => r.booking)
    .catch(() => undefined);
}

/** Whether a replayed booking still answers the call (see the rules above). */
function isCurrent(tool: string, replayed: Booking, now: Booking): boolean {
  if (tool === "hold_slot") {
    // A lapsed hold reads as EXPIRED whether or not the sweeper has run.
    return now.status === BookingStatus.HELD || now.status === BookingStatus.CONFIRMED;
  }
  return (
    now.updateTime !== undefined &&
    replayed.updateTime !== undefined &&
    msOfTimestamp(now.updateTime) === msOfTimestamp(replayed.updateTime) &&
    now.status === replayed.status &&
    now.status !== BookingStatus.EXPIRED
  );
}

import { createHash } from "node:crypto";
import {
  create,
  type DescMessage,
  type DescService,
  getOption,
  type JsonObject,
  type Message,
  type MessageShape,
  toBinary,
  toJson,
} from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { createContextKey, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { secret } from "../../gen/holdfast/v1/options_pb.js";
import { rejectionOfOutcome } from "../db/errors.js";
import {
  claimKey,
  finishKey,
  type IdempotencyClaim,
  isStoredRejection,
  KeyInUse,
  type Outcome,
  outcomeOfRejection,
} from "../db/idempotency.js";
import { clientDb, type Db, inTransaction, type Pool, rollbackTo, savepoint } from "../db/pool.js";
import { canonicalJson } from "../domain/canonical-json.js";
import { type OfferedSlot, Rejection } from "../domain/rejection.js";
import { principalOf } from "./auth.js";
import { answerOfJson } from "./booking-json.js";

/**
 * Idempotency-Key for every mutation (every RPC not marked NO_SIDE_EFFECTS
 * in the proto). Same key and same request: the stored first outcome, with
 * `Idempotent-Replayed: true`. Same key, different request:
 * IDEMPOTENCY_KEY_REUSED. A concurrent duplicate waits for the first and
 * replays it. Keys are scoped to tenant, API key and method and kept 24
 * hours: what one API key was answered depends on what it made and may do,
 * so no other key of the tenant is given it.
 *
 * Most mutations run inside one transaction that claims the key, runs the
 * handler on that transaction (see `dbOf`) and stores the outcome before
 * committing. Booking writes instead pass the claim into their single SQL
 * call (see `claimOf`), which does the same inside the statement.
 */

export const REPLAYED_HEADER = "idempotent-replayed";

const claimKeyOf = createContextKey<IdempotencyClaim | undefined>(undefined, {
  description: "idempotency claim",
});
const unitKey = createContextKey<Db | undefined>(undefined, {
  description: "idempotent transaction",
});

/** The transaction of an idempotent mutation, or `fallback` (the pool) when there is none. */
export function dbOf(ctx: HandlerContext, fallback: Db): Db {
  return ctx.values.get(unitKey) ?? fallback;
}

/** For handlers that store outcomes themselves: the key this call came with, if any. */
export function claimOf(ctx: HandlerContext): IdempotencyClaim | undefined {
  return ctx.values.get(claimKeyOf);
}

/**
 * Turns a stored or fresh outcome into the RPC's answer: the response
 * message, or the rejection thrown (with the alternatives offered, if the
 * write found some). A replay is marked in the response headers.
 */
export function answer<D extends DescMessage>(
  ctx: HandlerContext,
  schema: D,
  outcome: Outcome & { alternatives?: OfferedSlot[] },
): MessageShape<D> {
  if (outcome.replayed) ctx.responseHeader.set(REPLAYED_HEADER, "true");
  if (outcome.error) throw rejectionOfOutcome(outcome.error, outcome.alternatives);
  return answerOfJson(schema, (outcome.response ?? {}) as JsonObject);
}

/** The response as protobuf JSON, with fields marked `secret` in the proto left out. */
function storableJson(schema: DescMessage, message: Message): JsonObject {
  const json = toJson(schema, message) as JsonObject;
  for (const field of schema.fields) {
    if (getOption(field, secret)) delete json[field.jsonName];
  }
  return json;
}

function validKey(key: string): boolean {
  return key.length >= 1 && key.length <= 255 && /^[\x21-\x7e]+$/.test(key);
}

/**
 * Gives every mutation of a service idempotency keys. With `storesOwnOutcomes`
 * the handlers pass the claim into their own single SQL call (BookingService);
 * otherwise each mutation runs in one transaction that claims the key, runs
 * the handler on that transaction (see `dbOf`) and stores the outcome before
 * committing.
 */
export function idempotent<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  pool: Pool,
  opts: { waitMs: number; storesOwnOutcomes?: boolean },
): ServiceImpl<S> {
  const keysInUse = new KeysInUse(opts.waitMs);
  const wrapped: Record<string, unknown> = { ...impl };
  for (const method of service.methods) {
    if (
      method.methodKind !== "unary" ||
      method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS
    )
      continue;
    const handler = (impl as unknown as Record<string, UnaryHandler>)[
      method.localName
    ] as UnaryHandler;
    wrapped[method.localName] = async (req: Message, ctx: HandlerContext) => {
      const claim = claimFor(ctx, `${service.typeName}/${method.name}`, method.input, req);
      if (!claim) return handler(req, ctx);
      ctx.values.set(claimKeyOf, claim);
      if (opts.storesOwnOutcomes) return handler(req, ctx);
      const done = await keysInUse.exclusively(claim, ctx.signal, (claimed) =>
        inTransaction(pool, async (tx): Promise<{ outcome: Outcome } | { response: Message }> => {
          const prior = await claimKey(tx, claim, CLAIM_WAIT_MS);
          if (prior) return { outcome: prior };
          claimed();
          // The handler's writes can be undone without losing the claim: a
          // rejection must leave nothing behind (nor an aborted transaction,
          // when the database raised it).
          await savepoint(tx, "handler");
          ctx.values.set(unitKey, clientDb(tx));
          try {
            const response = create(method.output, await handler(req, ctx));
            await finishKey(tx, claim, { response: storableJson(method.output, response) });
            return { response };
          } catch (err) {
            if (!(err instanceof Rejection) || !isStoredRejection(err)) throw err;
            // A business rejection is an outcome too: undo what the handler
            // wrote, store the rejection, commit, then answer with it.
            await rollbackTo(tx, "handler");
            const outcome = outcomeOfRejection(err);
            await finishKey(tx, claim, outcome);
            return { outcome };
          }
        }),
      );
      return "response" in done ? done.response : answer(ctx, method.output, done.outcome);
    };
  }
  return wrapped as ServiceImpl<S>;
}

type UnaryHandler = (req: Message, ctx: HandlerContext) => Promise<Message>;

/**
 * How long a claim waits in Postgres for a request with the same key that
 * is still running, before it gives its connection back and waits without
 * one (KeysInUse). Most requests finish well within it.
 */
const CLAIM_WAIT_MS = 50;
/** The first and the longest pause between two claims of a key in use on another instance. */
const FIRST_PAUSE_MS = 10;
const LONGEST_PAUSE_MS = 200;

/**
 * Duplicates of a request still running wait for it without holding a
 * connection of the pool: any number of them would otherwise take every
 * connection (each waiting on the key's row for the lock timeout) and stall
 * the other tenants' calls. A duplicate whose claim found the key in use
 * claims again when the request holding it here ends, or after a pause
 * growing to LONGEST_PAUSE_MS when it runs on another instance, for
 * `waitMs` in all (the lock timeout it would have waited in Postgres);
 * then it is answered UNAVAILABLE, and nothing of it ran.
 */
class KeysInUse {
  /** Keys claimed by a request running here, each with what wakes its waiting duplicates. */
  private readonly running = new Map<string, Set<() => void>>();

  constructor(private readonly waitMs: number) {}

  /**
   * Runs `work`, a transaction that claims the key first and calls
   * `claimed` once it holds it, again for as long as the claim finds the
   * key in use (KeyInUse).
   */
  async exclusively<T>(
    claim: IdempotencyClaim,
    signal: AbortSignal,
    work: (claimed: () => void) => Promise<T>,
  ): Promise<T> {
    const id = JSON.stringify([claim.tenantId, claim.apiKeyId, claim.method, claim.key]);
    const giveUpAt = Date.now() + this.waitMs;
    for (let pause = FIRST_PAUSE_MS; ; pause = Math.min(pause * 2, LONGEST_PAUSE_MS)) {
      let holding = false;
      try {
        return await work(() => {
          holding = true;
          this.running.set(id, new Set());
        });
      } catch (err) {
        if (!(err instanceof KeyInUse)) throw err;
        const left = giveUpAt - Date.now();
        if (left <= 0) {
          throw new Rejection(
            "UNAVAILABLE",
            "a request with the same Idempotency-Key is still running; retry shortly",
          );
        }
        await this.endOf(id, left, pause, signal);
      } finally {
        if (holding) {
          const waiting = this.running.get(id);
          this.running.delete(id);
          for (const wake of waiting ?? []) wake();
        }
      }
    }
  }

  /**
   * Until the request holding `id` here ends (`left` at most), or `pause`
   * when none here holds it; rejects when the call ends first.
   */
  private endOf(id: string, left: number, pause: number, signal: AbortSignal): Promise<void> {
    const waiting = this.running.get(id);
    return new Promise((resolve, reject) => {
      const settle = (err?: unknown) => {
        clearTimeout(timer);
        waiting?.delete(woken);
        signal.removeEventListener("abort", aborted);
        if (err === undefined) resolve();
        else reject(err);
      };
      const woken = () => settle();
      const aborted = () => settle(signal.reason);
      const timer = setTimeout(woken, waiting ? left : Math.min(pause, left));
      waiting?.add(woken);
      if (signal.aborted) aborted();
      else signal.addEventListener("abort", aborted, { once: true });
    });
  }
}

/** The claim for this call's Idempotency-Key header, if it sent one. */
function claimFor(
  ctx: HandlerContext,
  method: string,
  input: DescMessage,
  req: Message,
): IdempotencyClaim | undefined {
  const key = ctx.requestHeader.get("idempotency-key");
  if (key === null) return undefined;
  if (!validKey(key)) {
    throw new Rejection(
      "IDEMPOTENCY_KEY_INVALID",
      "Idempotency-Key must be 1 to 255 printable ASCII characters",
    );
  }
  let canonical: string | Uint8Array;
  try {
    canonical = canonicalJson(toJson(input, req));
  } catch {
    // What JSON cannot say (NaN in metadata, a Timestamp's nanos or a
    // Duration out of range) is hashed in binary instead: the handler's
    // validation refuses it, naming the field, as it does without a key.
    canonical = toBinary(input, req);
  }
  const principal = principalOf(ctx);
  return {
    tenantId: principal.tenantId,
    apiKeyId: principal.keyId,
    method,
    key,
    hash: createHash("sha256").update(canonical).digest(),
  };
}

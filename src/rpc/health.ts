import { setTimeout as sleep } from "node:timers/promises";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/health/v1/health_pb.js";
import { migratedVersion } from "../db/migrate.js";
import type { Queryable } from "../db/pool.js";
import { Rejection } from "../domain/rejection.js";

/**
 * How long a check waits for the database. A Postgres that hangs (stopped,
 * swapping, its disk stalled) answers nothing and trips no timeout of its
 * own, so the check bounds itself: load balancers give up after a few
 * seconds, and an unanswered check tells them nothing.
 */
const PROBE_WAIT_MS = 1_000;
const WATCH_EVERY_MS = 1_000;

/**
 * Standard gRPC health checking. SERVING only once migrations have run and
 * the database answered within PROBE_WAIT_MS; NOT_SERVING otherwise, and
 * from the moment the server starts stopping. The empty service name means
 * the whole server; each Holdfast service can be asked by name.
 */
export function registerHealth(
  router: ConnectRouter,
  db: Queryable,
  serviceNames: readonly string[],
  schemaVersion: number,
  stopping: AbortSignal,
): void {
  const known = new Set(["", ...serviceNames]);

  // One query at a time, shared by every check: while the database hangs,
  // checks keep answering NOT_SERVING without piling up queries, and the
  // first check after it resumes asks afresh.
  let probe: Promise<Status> | undefined;
  function probeDatabase(): Promise<Status> {
    probe ??= migratedVersion(db)
      .then(
        (version) => (version >= schemaVersion ? Status.SERVING : Status.NOT_SERVING),
        () => Status.NOT_SERVING,
      )
      .finally(() => {
        probe = undefined;
      });
    return probe;
  }

  async function status(service: string): Promise<Status> {
    if (!known.has(service))
      throw new Rejection("HEALTH_SERVICE_NOT_FOUND", `unknown service "${service}"`);
    if (stopping.aborted) return Status.NOT_SERVING;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Status>((resolve) => {
      timer = setTimeout(() => resolve(Status.NOT_SERVING), PROBE_WAIT_MS);
    });
    try {
      return await Promise.race([probeDatabase(), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  // grpc.health.v1 comes from the grpc-health-check package, whose Check
  // carries no idempotency_level although its contract says "side effect
  // free". Registered as NO_SIDE_EFFECTS here, it answers Connect GET
  // requests like every other read (load balancers and curl probe with GET).
  const check = {
    ...Health.method.check,
    idempotency: MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS,
  };
  const health: typeof Health = {
    ...Health,
    methods: Health.methods.map((m) => (m === Health.method.check ? check : m)),
    method: { ...Health.method, check },
  };
  router.service(health, {
    async check(req) {
      return { status: await status(req.service) };
    },
    async *watch(req, ctx) {
      const ended = AbortSignal.any([ctx.signal, stopping]);
      let last: Status | undefined;
      while (!ended.aborted) {
        const now = await status(req.service);
        if (now !== last) yield { status: now };
        last = now;
        // Rejects when `ended` aborts: the loop then ends.
        await sleep(WATCH_EVERY_MS, undefined, { signal: ended }).catch(() => {});
      }
      if (stopping.aborted) {
        if (last !== Status.NOT_SERVING) yield { status: Status.NOT_SERVING };
        throw new Rejection("UNAVAILABLE", "the server is stopping; watch another instance");
      }
    },
  });
}

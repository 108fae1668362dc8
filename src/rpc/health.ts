import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
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

/** What readiness is made of; the gRPC health service and GET /readyz both report it. */
export type Readiness = {
  ready: boolean;
  /** "ok", "timeout" (no answer within PROBE_WAIT_MS) or "error". */
  database: "ok" | "timeout" | "error";
  /** "applied", "pending" (the schema is older than this build) or "unknown" (no answer). */
  migrations: "applied" | "pending" | "unknown";
  /** True from the moment the server starts stopping. */
  draining: boolean;
};

/**
 * Ready only once migrations have run and the database answered within
 * PROBE_WAIT_MS, and not while the server is stopping.
 */
export function readinessProbe(
  db: Queryable,
  schemaVersion: number,
  stopping: AbortSignal,
): () => Promise<Readiness> {
  // One query at a time, shared by every check: while the database hangs,
  // checks keep answering not ready without piling up queries, and the
  // first check after it resumes asks afresh.
  type Probe = Pick<Readiness, "database" | "migrations">;
  let probe: Promise<Probe> | undefined;
  function probeDatabase(): Promise<Probe> {
    probe ??= migratedVersion(db)
      .then(
        (version): Probe => ({
          database: "ok",
          migrations: version >= schemaVersion ? "applied" : "pending",
        }),
        (): Probe => ({ database: "error", migrations: "unknown" }),
      )
      .finally(() => {
        probe = undefined;
      });
    return probe;
  }

  return async () => {
    if (stopping.aborted)
      return { ready: false, database: "ok", migrations: "unknown", draining: true };
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<Probe>((resolve) => {
      timer = setTimeout(
        () => resolve({ database: "timeout", migrations: "unknown" }),
        PROBE_WAIT_MS,
      );
    });
    try {
      const found = await Promise.race([probeDatabase(), late]);
      const draining = stopping.aborted;
      return {
        ready: found.database === "ok" && found.migrations === "applied" && !draining,
        ...found,
        draining,
      };
    } finally {
      clearTimeout(timer);
    }
  };
}

export const HEALTH_PATHS = new Set(["/healthz", "/readyz"]);

/**
 * Plain HTTP health for load balancers and orchestrators: GET /healthz
 * answers 200 while the process serves at all; GET /readyz answers 200 when
 * ready and 503 otherwise, with the parts of readiness as a small JSON body.
 */
export function healthHttpHandler(
  readiness: () => Promise<Readiness>,
): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? "").split("?", 1)[0];
    const send = (status: number, body: object) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      send(405, { status: "method not allowed" });
      return;
    }
    if (path === "/healthz") {
      send(200, { status: "alive" });
      return;
    }
    readiness().then(
      (r) =>
        send(r.ready ? 200 : 503, {
          status: r.ready ? "ready" : "not ready",
          database: r.database,
          migrations: r.migrations,
          draining: r.draining,
        }),
      () => send(503, { status: "not ready" }),
    );
  };
}

/**
 * Standard gRPC health checking: SERVING when ready (see readinessProbe),
 * NOT_SERVING otherwise. The empty service name means the whole server;
 * each Holdfast service can be asked by name.
 */
export function registerHealth(
  router: ConnectRouter,
  readiness: () => Promise<Readiness>,
  serviceNames: readonly string[],
  stopping: AbortSignal,
): void {
  const known = new Set(["", ...serviceNames]);

  async function status(service: string): Promise<Status> {
    if (!known.has(service))
      throw new Rejection("HEALTH_SERVICE_NOT_FOUND", `unknown service "${service}"`);
    return (await readiness()).ready ? Status.SERVING : Status.NOT_SERVING;
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

import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as Status,
} from "../../gen/health/v1/health_pb.js";
import type { Queryable } from "../db/pool.js";
import { Rejection } from "../domain/rejection.js";

/**
 * Standard gRPC health checking. SERVING only once migrations have run and
 * the database answers right now; otherwise NOT_SERVING. The empty service
 * name means the whole server; each Holdfast service can be asked by name.
 */
export function registerHealth(
  router: ConnectRouter,
  db: Queryable,
  serviceNames: readonly string[],
  schemaVersion: number,
): void {
  const known = new Set(["", ...serviceNames]);

  async function status(service: string): Promise<Status> {
    if (!known.has(service))
      throw new Rejection("HEALTH_SERVICE_NOT_FOUND", `unknown service "${service}"`);
    try {
      const { rows } = await db.query<{ version: number | null }>(
        "SELECT max(version) AS version FROM schema_migrations",
      );
      return (rows[0]?.version ?? 0) >= schemaVersion ? Status.SERVING : Status.NOT_SERVING;
    } catch {
      return Status.NOT_SERVING;
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
      let last: Status | undefined;
      while (!ctx.signal.aborted) {
        const now = await status(req.service);
        if (now !== last) yield { status: now };
        last = now;
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    },
  });
}

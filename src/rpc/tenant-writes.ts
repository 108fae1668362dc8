import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import type { Interceptor } from "@connectrpc/connect";
import { BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import type { TenantWrites } from "../booking/tenant-writes.js";
import { callerIn } from "./auth.js";

/** Creates, which take turns in their own write lanes (BookingBatches). */
const IN_WRITE_LANES: ReadonlySet<unknown> = new Set([
  BookingService.method.createHold,
  BookingService.method.createBooking,
]);

/**
 * Every other unary call that writes (not NO_SIDE_EFFECTS) takes a turn of
 * its tenant's (TenantWrites) before its handler runs: after
 * authentication, the rate limit and the request checks, so a refused call
 * waits for nothing.
 */
export function tenantWritesInterceptor(writes: TenantWrites): Interceptor {
  return (next) => (req) => {
    const caller = callerIn(req.contextValues);
    if (
      !caller ||
      req.stream ||
      req.method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS ||
      IN_WRITE_LANES.has(req.method)
    ) {
      return next(req);
    }
    return writes.run(caller.tenantId, req.signal, () => next(req));
  };
}

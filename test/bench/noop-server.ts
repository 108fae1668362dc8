/**
 * The no-op floor of `npm run bench`: connect-node's own adapter on
 * Holdfast's port (bindPort: HTTP/1.1 and h2c on one port), with a
 * CreateHold that touches no database and answers a booking of the same
 * shape as Holdfast's, built from the request. No interceptors, no auth,
 * no edge checks: what the framework and Node cost for one call, which the
 * bench compares Holdfast's server CPU per CreateHold with.
 *
 * Run as its own process: `node --import tsx test/bench/noop-server.ts`;
 * prints `listening on URL`.
 */
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import {
  BookingSchema,
  BookingService,
  BookingStatus,
  CreateHoldResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import { bindPort } from "../../src/server.js";

let n = 0;
const listener = await bindPort("127.0.0.1", Number(process.env.PORT ?? 0));
listener.serve(
  connectNodeAdapter({
    jsonOptions: { ignoreUnknownFields: false },
    acceptCompression: [compressionGzip],
    compressMinBytes: 64 * 1024,
    routes(router) {
      router.service(BookingService, {
        createHold(req) {
          const now = Date.now();
          return create(CreateHoldResponseSchema, {
            booking: create(BookingSchema, {
              id: `bkg_noop${(n++).toString(36).padStart(18, "0")}`,
              serviceId: req.serviceId,
              resourceId: req.resourceId,
              startTime: req.startTime,
              endTime: req.endTime,
              status: BookingStatus.HELD,
              expireTime: timestampFromMs(now + 120_000),
              policyVersion: 1,
              createTime: timestampFromMs(now),
              updateTime: timestampFromMs(now),
              localStartTime: "2031-01-01T00:00:00",
              localEndTime: "2031-01-01T00:30:00",
              timeZone: "UTC",
            }),
          });
        },
      });
    },
  }),
);
process.stdout.write(`listening on http://127.0.0.1:${listener.port}\n`);
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    listener.stopAccepting();
    listener.destroy();
    process.exit(0);
  });
}

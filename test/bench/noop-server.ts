/**
 * The no-op floor of `npm run bench`: connect-node's own adapter on
 * Holdfast's port (bindPort: HTTP/1.1 and h2c on one port), with a
 * CreateHold that touches no database and answers a booking of the same
 * shape as Holdfast's, built from the request. No interceptors, no auth,
 * no edge checks: what the framework and Node cost for one call, which the
 * bench compares Holdfast's server CPU per CreateHold with.
 *
 * ListSlots answers, with no computation and no database, a page the bench
 * captured from Holdfast for the same request and stored here first
 * (`POST /bench/slots`, at most 16 pages of 16 MiB: the ListSlotsResponse in binary as the body, its
 * ListSlotsRequest in binary and base64 in `x-request`): what the framework, Node and the load generator's own
 * decoding cost for an answer of that size, the floor of ListSlots latency.
 * Binary answers carry the slots encoded once, at storing, the way Holdfast
 * hands them to protobuf-es (as unknown fields); JSON answers go through
 * `toJsonString` as Holdfast's do.
 *
 * Run as its own process: `node --import tsx test/bench/noop-server.ts`;
 * prints `listening on URL`.
 */
import { create, fromBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { type Timestamp, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionGzip, connectNodeAdapter } from "@connectrpc/connect-node";
import {
  AvailabilityService,
  type ListSlotsRequest,
  ListSlotsRequestSchema,
  type ListSlotsResponse,
  ListSlotsResponseSchema,
} from "../../gen/holdfast/v1/availability_pb.js";
import {
  BookingSchema,
  BookingService,
  BookingStatus,
  CreateHoldResponseSchema,
} from "../../gen/holdfast/v1/booking_pb.js";
import { answersInBinary } from "../../src/rpc/http.js";
import { encodeSlots } from "../../src/rpc/slot-wire.js";
import { bindPort } from "../../src/server.js";

const seconds = (t: Timestamp | undefined) => String(t?.seconds ?? "");
/** The key of a stored page: the request's service, range and duration. */
const slotPageKey = (r: ListSlotsRequest) =>
  [r.serviceId, seconds(r.startTime), seconds(r.endTime), String(r.duration?.seconds ?? "")].join(
    "|",
  );

/** Stored pages: the JSON answer's message, and the binary one with its slots pre-encoded. */
const pages = new Map<string, { json: ListSlotsResponse; binary: ListSlotsResponse }>();

function storePage(body: Buffer) {
  const json = fromBinary(ListSlotsResponseSchema, body);
  const binary = create(ListSlotsResponseSchema, {
    timeZones: json.timeZones,
    nextPageToken: json.nextPageToken,
  });
  if (json.slots.length > 0)
    binary.$unknown = [
      { no: 1, wireType: WireType.LengthDelimited, data: encodeSlots(json.slots).subarray(1) },
    ];
  return { json, binary };
}

let n = 0;
const listener = await bindPort("127.0.0.1", Number(process.env.PORT ?? 0));
const rpc = connectNodeAdapter({
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
    router.service(AvailabilityService, {
      listSlots(req, ctx) {
        const page = pages.get(slotPageKey(req));
        if (!page) throw new ConnectError("no page stored for this request", Code.NotFound);
        return answersInBinary(ctx) ? page.binary : page.json;
      },
    });
  },
});
const MAX_PAGES = 16;
const MAX_PAGE_BYTES = 16 * 1024 * 1024;
listener.serve((req, res) => {
  if (req.url !== "/bench/slots") return rpc(req, res);
  const key = slotPageKey(
    fromBinary(ListSlotsRequestSchema, Buffer.from(String(req.headers["x-request"]), "base64")),
  );
  // Bounded like every buffer (the bench stores three pages of about
  // 200 KB, for each protocol): a larger body or one page too many is
  // refused, not kept.
  if (!pages.has(key) && pages.size >= MAX_PAGES) return void res.writeHead(507).end();
  const parts: Buffer[] = [];
  let size = 0;
  req.on("data", (d: Buffer) => {
    size += d.length;
    if (size <= MAX_PAGE_BYTES) parts.push(d);
    else parts.length = 0;
  });
  req.on("end", () => {
    if (size > MAX_PAGE_BYTES) return void res.writeHead(413).end();
    pages.set(key, storePage(Buffer.concat(parts)));
    res.writeHead(204).end();
  });
});
process.stdout.write(`listening on http://127.0.0.1:${listener.port}\n`);
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    listener.stopAccepting();
    listener.destroy();
    process.exit(0);
  });
}

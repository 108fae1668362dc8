// The bench's no-op floor (test/bench/noop-server.ts) as the bench uses it:
// a ListSlots page stored over HTTP comes back as stored, over gRPC and
// Connect JSON, and only for the request it was stored for.
import { type ChildProcess, spawn } from "node:child_process";
import { create, equals, toBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AvailabilityService,
  ListSlotsRequestSchema,
  ListSlotsResponseSchema,
  SlotSchema,
} from "../../gen/holdfast/v1/availability_pb.js";

let child: ChildProcess;
let url: string;

beforeAll(async () => {
  child = spawn(process.execPath, ["--import", "tsx", "test/bench/noop-server.ts"], {
    env: { ...process.env, PORT: "0" },
    stdio: ["ignore", "pipe", "inherit"],
  });
  url = await new Promise<string>((resolve, reject) => {
    let out = "";
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1] as string);
    });
    child.once("exit", (code) => reject(new Error(`no-op server exited with ${code}`)));
  });
});

afterAll(() => {
  child?.kill("SIGTERM");
});

const request = (days: number) =>
  create(ListSlotsRequestSchema, {
    serviceId: "svc_00000000000000000000000000a1",
    startTime: timestampFromMs(Date.UTC(2032, 0, 5)),
    endTime: timestampFromMs(Date.UTC(2032, 0, 5 + days)),
    duration: { seconds: 1800n, nanos: 0 },
  });

const page = create(ListSlotsResponseSchema, {
  slots: [0, 1, 2].map((i) =>
    create(SlotSchema, {
      slotId: `slot_${"A".repeat(70)}${i}`,
      resourceId: "rsc_00000000000000000000000000b2",
      startTime: timestampFromMs(Date.UTC(2032, 0, 5, 6, 15 * i)),
      endTime: timestampFromMs(Date.UTC(2032, 0, 5, 6, 15 * i + 30)),
      remaining: i,
      localStartTime: "2032-01-05T07:00:00",
      localEndTime: "2032-01-05T07:30:00",
      timeZone: "Europe/Berlin",
    }),
  ),
  timeZones: { rsc_00000000000000000000000000b2: "Europe/Berlin" },
  nextPageToken: "next",
});

describe("bench no-op floor: ListSlots", () => {
  it("answers a stored page as stored, over gRPC and Connect JSON, and no other request", async () => {
    const stored = await fetch(`${url}/bench/slots`, {
      method: "POST",
      headers: {
        "x-request": Buffer.from(toBinary(ListSlotsRequestSchema, request(7))).toString("base64"),
      },
      body: toBinary(ListSlotsResponseSchema, page),
    });
    expect(stored.status).toBe(204);
    for (const transport of [
      createGrpcTransport({ baseUrl: url }),
      createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: false }),
      createConnectTransport({ baseUrl: url, httpVersion: "1.1", useBinaryFormat: true }),
    ]) {
      const client = createClient(AvailabilityService, transport);
      const answer = await client.listSlots(request(7));
      expect(equals(ListSlotsResponseSchema, answer, page)).toBe(true);
      const other = await client.listSlots(request(30)).catch((e: unknown) => e);
      expect(ConnectError.from(other).code).toBe(Code.NotFound);
    }
  });

  it("refuses a page over 16 MiB and keeps nothing of it", async () => {
    const stored = await fetch(`${url}/bench/slots`, {
      method: "POST",
      headers: {
        "x-request": Buffer.from(toBinary(ListSlotsRequestSchema, request(9))).toString("base64"),
      },
      body: new Uint8Array(16 * 1024 * 1024 + 1),
    });
    expect(stored.status).toBe(413);
    const client = createClient(AvailabilityService, createGrpcTransport({ baseUrl: url }));
    const answer = await client.listSlots(request(9)).catch((e: unknown) => e);
    expect(ConnectError.from(answer).code).toBe(Code.NotFound);
  });
});

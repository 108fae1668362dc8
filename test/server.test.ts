// The listener of src/server.ts (bindPort): HTTP/1.1 and h2c on one port,
// with bounds on what one connection may hold, over real sockets.
import type { ServerResponse } from "node:http";
import * as http2 from "node:http2";
import { createConnection } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindPort, type Listener } from "../src/server.js";
import { sleep } from "./support/booking.js";

let listener: Listener;
let url: string;
/** Requests the handler has seen, and whether each body arrived whole. */
const seen: { path: string; ended: boolean }[] = [];

beforeAll(async () => {
  listener = await bindPort("127.0.0.1", 0, "PORT", { idleMs: 300, requestMs: 600, streams: 3 });
  url = `http://127.0.0.1:${listener.port}`;
  listener.serve((req, res) => {
    const entry = { path: req.url ?? "", ended: false };
    seen.push(entry);
    req.resume();
    req.on("end", () => {
      entry.ended = true;
      // A stream that answers and then stays silent, as WatchEvents between events.
      if (entry.path === "/silent") {
        res.writeHead(200);
        (res as ServerResponse).write("first");
      } else res.end("ok");
    });
  });
});

afterAll(() => listener.destroy());

/** Resolves once the session closes, or with false after `ms`. */
function closedWithin(session: http2.ClientHttp2Session, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) return resolve(true);
    const timer = setTimeout(() => resolve(false), ms);
    session.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

describe("HTTP/2 connections", () => {
  it("advertise and enforce the most calls open at once", async () => {
    const session = http2.connect(url);
    try {
      await new Promise((resolve) => session.once("remoteSettings", resolve));
      expect(session.remoteSettings.maxConcurrentStreams).toBe(3);
      // Five calls whose bodies never end: the server takes three at a time.
      const streams = Array.from({ length: 5 }, (_, i) => {
        const stream = session.request({ ":method": "POST", ":path": `/open-${i}` });
        stream.on("error", () => {});
        stream.write("x");
        return stream;
      });
      await sleep(200);
      expect(seen.filter((s) => s.path.startsWith("/open-")).length).toBe(3);
      for (const s of streams) s.close();
    } finally {
      session.destroy();
    }
  });

  it("cancel a call whose request has not arrived whole in time", async () => {
    const session = http2.connect(url);
    try {
      const stream = session.request({ ":method": "POST", ":path": "/stalled" });
      stream.write("part of a body");
      const code = await new Promise<number>((resolve) =>
        stream.once("close", () => resolve(stream.rstCode)),
      );
      expect(code).toBe(http2.constants.NGHTTP2_CANCEL);
    } finally {
      session.destroy();
    }
  });

  it("close a connection that has had no call open for the idle time, and keep one with a silent call", async () => {
    const idle = http2.connect(url);
    const watching = http2.connect(url);
    try {
      const silent = watching.request({ ":method": "POST", ":path": "/silent" });
      silent.end("whole");
      silent.resume();
      expect(await closedWithin(idle, 3_000)).toBe(true);
      // Several idle times on, the silent call still holds its connection.
      expect(await closedWithin(watching, 1_500)).toBe(false);
      silent.close();
      expect(await closedWithin(watching, 3_000)).toBe(true);
    } finally {
      idle.destroy();
      watching.destroy();
    }
  });
});

describe("HTTP/1.1 connections", () => {
  it("close a kept-alive connection after the idle time", async () => {
    const socket = createConnection(listener.port, "127.0.0.1");
    try {
      socket.resume();
      socket.write("POST /one HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
      const closed = await new Promise<boolean>((resolve) => {
        socket.once("close", () => resolve(true));
        setTimeout(() => resolve(false), 3_000);
      });
      expect(closed).toBe(true);
    } finally {
      socket.destroy();
    }
  });
});

// The listener of src/server.ts (bindPort): HTTP/1.1 and h2c on one port,
// with bounds on what one connection may hold, over real sockets.
import type { ServerResponse } from "node:http";
import * as http2 from "node:http2";
import { createConnection, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bindPort, type Listener } from "../src/server.js";
import { sleep } from "./support/booking.js";

/** More than a socket's and an HTTP/2 stream's buffers hold: a client that stops reading leaves most of it. */
const LARGE = Buffer.alloc(16 * 1024 * 1024, "x");

let listener: Listener;
let url: string;
/** Requests the handler has seen, and whether each body arrived whole. */
const seen: { path: string; ended: boolean; closed: boolean }[] = [];

beforeAll(async () => {
  listener = await bindPort("127.0.0.1", 0, "PORT", {
    idleMs: 300,
    requestMs: 600,
    streams: 3,
    stallMs: 400,
    connections: 100,
  });
  url = `http://127.0.0.1:${listener.port}`;
  listener.serve((req, res) => {
    const entry = { path: req.url ?? "", ended: false, closed: false };
    seen.push(entry);
    res.once("close", () => {
      entry.closed = true;
    });
    req.resume();
    req.on("end", () => {
      entry.ended = true;
      // A stream that answers and then stays silent, as WatchEvents between events.
      if (entry.path === "/silent") {
        res.writeHead(200);
        (res as ServerResponse).write("first");
      } else if (entry.path.startsWith("/large-end")) res.end(LARGE);
      else if (entry.path.startsWith("/large")) {
        // As connect-node writes a unary answer: the body, then the end once it has drained.
        res.writeHead(200);
        const w = res as ServerResponse;
        if (w.write(LARGE)) w.end();
        else w.once("drain", () => w.end());
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

/** Resolves with whether the server has closed its answer to `path` (every one asked) within `ms`. */
async function answerClosedWithin(path: string, ms: number): Promise<boolean> {
  for (let waited = 0; waited < ms; waited += 50) {
    const answers = seen.filter((s) => s.path === path);
    if (answers.length > 0 && answers.every((s) => s.closed)) return true;
    await sleep(50);
  }
  return false;
}

/** Reads what is left on `socket` until the other end has closed it. */
async function rest(socket: Socket): Promise<number> {
  let bytes = 0;
  socket.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
  });
  await new Promise((resolve) => socket.once("close", resolve));
  return bytes;
}

/** An answer read whole over a connection of its own, "status body". */
async function post(path: string): Promise<string> {
  const res = await fetch(`${url}${path}`, { method: "POST", body: "hi" });
  return `${res.status} ${await res.text()}`;
}

describe("answers a client does not read", () => {
  // /large writes its body and ends once that has drained, as connect-node
  // writes a unary answer; /large-end hands it all to end().
  for (const path of ["/large", "/large-end"]) {
    it(`over HTTP/1.1 are cut off with their connection (${path})`, async () => {
      const socket = createConnection(listener.port, "127.0.0.1");
      socket.on("error", () => {});
      try {
        socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi`);
        // Read the start of the answer, then stop reading, the connection kept open.
        let bytes = await new Promise<number>((resolve) =>
          socket.once("data", (chunk: Buffer) => resolve(chunk.length)),
        );
        socket.pause();
        expect(await answerClosedWithin(path, 10_000)).toBe(true);
        // Others are served meanwhile.
        expect(await post("/after")).toBe("200 ok");
        // What the client reads now ends short of the answer: it was dropped.
        socket.resume();
        bytes += await rest(socket);
        expect(bytes).toBeLessThan(LARGE.length);
      } finally {
        socket.destroy();
      }
    });

    it(`over HTTP/2 are reset (${path})`, async () => {
      const session = http2.connect(url);
      session.on("error", () => {});
      try {
        const stalled = session.request({ ":method": "POST", ":path": `${path}?h2` });
        stalled.on("error", () => {});
        stalled.end("hi");
        await new Promise((resolve) => stalled.once("response", resolve));
        // Never read: the stream's window fills and the server's writes wait.
        stalled.pause();
        const code = await new Promise<number | undefined>((resolve) => {
          setTimeout(() => resolve(undefined), 10_000);
          stalled.once("close", () => resolve(stalled.rstCode));
        });
        expect(code).toBe(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
        expect(await answerClosedWithin(`${path}?h2`, 10_000)).toBe(true);
        // Others are served meanwhile (on a connection of their own: this
        // client gives no window back for what it left unread).
        expect(await post("/after-h2")).toBe("200 ok");
      } finally {
        session.destroy();
      }
    });
  }
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

describe("connections beyond the cap", () => {
  it("are closed as they arrive, and those open are served", async () => {
    const capped = await bindPort("127.0.0.1", 0, "PORT", {
      idleMs: 5_000,
      requestMs: 5_000,
      streams: 3,
      stallMs: 400,
      connections: 100,
    });
    const arrived: string[] = [];
    capped.serve(
      (req, res) => {
        arrived.push(req.url ?? "");
        req.resume();
        req.on("end", () => res.end("ok"));
      },
      { connections: 2 },
    );
    const open = (path: string, body: string) => {
      const socket = createConnection(capped.port, "127.0.0.1");
      socket.on("error", () => {});
      socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n${body}`);
      return socket;
    };
    // Two requests whose bodies are still arriving hold both places.
    const holding = [open("/a", "part"), open("/b", "part")];
    try {
      await expect.poll(() => arrived.length).toBe(2);
      const third = open("/c", "0123456789");
      let answer = "";
      third.on("data", (chunk: Buffer) => {
        answer += chunk.toString();
      });
      await new Promise((resolve) => third.once("close", resolve));
      expect(answer).toBe("");
      expect(arrived).not.toContain("/c");
      // The connections open are still served.
      const first = holding[0] as Socket;
      let reply = "";
      first.on("data", (chunk: Buffer) => {
        reply += chunk.toString();
      });
      first.write("tail..");
      await expect.poll(() => reply).toContain("ok");
      // A place freed is taken again (once the server has seen it freed).
      first.destroy();
      const again = () =>
        fetch(`http://127.0.0.1:${capped.port}/d`, { method: "POST", body: "hi" })
          .then((res) => res.text())
          .catch(() => "refused");
      await expect.poll(again).toBe("ok");
    } finally {
      for (const s of holding) s.destroy();
      capped.stopAccepting();
      capped.destroy();
    }
  });
});

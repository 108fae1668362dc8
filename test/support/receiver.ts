import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { type AddressInfo, createServer as createNetServer, isIP } from "node:net";
import { Webhook } from "standardwebhooks";

export type Received = {
  id: string;
  headers: IncomingHttpHeaders;
  body: string;
  verified: unknown;
};

/**
 * A webhook receiver on loopback that verifies each delivery with the
 * standardwebhooks library (against any of `secrets`) and answers as
 * `respond` says: a status code, or "hang" to never answer (until the
 * sender gives up), or a promise of either, to answer late. It counts the
 * most requests it had open at once.
 */
export async function webhookReceiver(opts: {
  secrets: () => string[];
  respond?: (n: number, r: Received) => number | "hang" | Promise<number | "hang">;
}) {
  const received: Received[] = [];
  const open = new Set<import("node:net").Socket>();
  let server: Server | undefined;
  let port = 0;
  let inFlight = 0;
  let mostInFlight = 0;

  const handler = (
    req: import("node:http").IncomingMessage,
    res: import("node:http").ServerResponse,
  ) => {
    inFlight++;
    mostInFlight = Math.max(mostInFlight, inFlight);
    res.on("close", () => inFlight--);
    let body = "";
    req.on("data", (c: Buffer) => {
      body += c.toString();
    });
    req.on("end", () => {
      let verified: unknown;
      for (const s of opts.secrets()) {
        try {
          verified = new Webhook(s).verify(body, req.headers as Record<string, string>);
          break;
        } catch {}
      }
      const r: Received = {
        id: String(req.headers["webhook-id"]),
        headers: req.headers,
        body,
        verified,
      };
      received.push(r);
      void Promise.resolve(opts.respond?.(received.length, r) ?? 200).then((answer) => {
        if (answer !== "hang" && !res.destroyed) res.writeHead(answer).end();
      });
    });
  };

  const start = async () => {
    server = createServer(handler);
    server.on("connection", (s) => {
      open.add(s);
      s.on("close", () => open.delete(s));
    });
    await new Promise<void>((resolve) => (server as Server).listen(port, "127.0.0.1", resolve));
    port = (server.address() as { port: number }).port;
  };
  await start();

  return {
    received,
    url: () => `http://127.0.0.1:${port}/hooks`,
    /** The most requests that were open at the same time. */
    mostInFlight: () => mostInFlight,
    /** Stops listening (connections are refused) until `start` again, on the same port. */
    async stop() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server?.close(() => resolve()));
    },
    start,
    async waitFor(predicate: (r: Received[]) => boolean, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!predicate(received) && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 25));
      return received;
    },
  };
}

/**
 * DNS under the test's control: each name answers its addresses in turn
 * (the last one from then on), and every question is counted.
 */
export function controlledDns(answers: Record<string, string[]>) {
  const asked = new Map<string, number>();
  return {
    asked: (name: string) => asked.get(name) ?? 0,
    resolve: async (name: string) => {
      const n = asked.get(name) ?? 0;
      asked.set(name, n + 1);
      const list = answers[name];
      const address = list?.[Math.min(n, list.length - 1)];
      if (!address)
        throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: "ENOTFOUND" });
      return [{ address, family: isIP(address) }];
    },
  };
}

/** A loopback port that counts the connections made to it and closes them. */
export async function connectionCounter() {
  let connections = 0;
  const srv = createNetServer((socket) => {
    connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return {
    port: (srv.address() as AddressInfo).port,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => srv.close(() => resolve())),
  };
}

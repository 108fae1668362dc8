import { createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP proxy in front of a server. Its first `lose` connections deliver
 * the request but lose the answer: everything the server sends back is
 * dropped and the connection is cut after `cutAfterMs`, as when a network
 * fails after the server has done the work. Later connections pass through.
 */
export async function lossyProxy(targetUrl: string, lose: number, cutAfterMs = 300) {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((client) => {
    const lossy = connections++ < lose;
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => sockets.delete(s));
    }
    client.pipe(upstream);
    if (lossy) {
      upstream.on("data", () => {});
      setTimeout(() => {
        client.destroy();
        upstream.destroy();
      }, cutAfterMs);
    } else {
      upstream.pipe(client);
    }
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${address.port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

import { createConnection, createServer, type Socket } from "node:net";

/**
 * A TCP relay in front of a server that keeps what the server sent, and can
 * drop every connection (no answer, no error: as a network fails) and refuse
 * new ones until restored.
 */
export async function relay(targetUrl: string) {
  const target = new URL(targetUrl);
  const sockets = new Set<Socket>();
  let received = "";
  let down = false;
  const server = createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on("error", () => {});
      s.on("close", () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.on("data", (d: Buffer) => {
      received += d.toString("latin1");
    });
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    received: () => received,
    drop() {
      down = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      down = false;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

import { EventEmitter } from "node:events";
import pg from "pg";
import { log } from "../log.js";
import type { Queryable } from "./pool.js";

/**
 * Channels on which instances tell each other that something changed. A
 * notification is only a wake-up: the tables stay the source of truth, and
 * after a reconnect listeners get `reconnected` to catch up on what they
 * may have missed.
 */
export const CHANNEL = {
  /** A key was revoked; payload: its secret hash (hex). */
  keys: "holdfast_keys",
  /** Resources or services changed; payload: tenant id. */
  catalog: "holdfast_catalog",
  /** New events were committed to the outbox. */
  outbox: "holdfast_outbox",
} as const;

export type Channel = (typeof CHANNEL)[keyof typeof CHANNEL];

export async function notify(q: Queryable, channel: Channel, payload = ""): Promise<void> {
  await q.query("SELECT pg_notify($1, $2)", [channel, payload]);
}

/** The application_name of each instance's LISTEN connection, by which instances are counted. */
const LISTENER_NAME = "holdfast-signals";

/**
 * The instances running on this database, as far as this role may see
 * (Postgres shows other roles' sessions only to superusers and
 * pg_read_all_stats): one LISTEN connection each.
 */
export async function runningInstances(q: Queryable): Promise<{ client: string; since: Date }[]> {
  const { rows } = await q.query<{ client: string; since: Date }>(
    `SELECT coalesce(host(client_addr), 'local socket') AS client, backend_start AS since
     FROM pg_stat_activity
     WHERE application_name = $1 AND datname = current_database()
     ORDER BY backend_start`,
    [LISTENER_NAME],
  );
  return rows;
}

/**
 * One LISTEN connection per process, outside the pool, that reconnects with
 * capped backoff and checks itself with a heartbeat.
 */
export class Signals extends EventEmitter {
  private client: pg.Client | undefined;
  private stopped = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private backoffMs = 100;

  constructor(private readonly connectionString: string) {
    super();
    this.setMaxListeners(0);
  }

  async start(): Promise<void> {
    await this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.heartbeat);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => {});
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.connectionString,
      application_name: LISTENER_NAME,
    });
    client.on("notification", (n) => this.emit(n.channel, n.payload ?? ""));
    client.on("error", (err) => this.lost(client, err));
    client.on("end", () => this.lost(client));
    await client.connect();
    for (const channel of Object.values(CHANNEL)) await client.query(`LISTEN ${channel}`);
    this.client = client;
    this.backoffMs = 100;
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      client.query("SELECT 1").catch((err: Error) => this.lost(client, err));
    }, 10_000);
    this.heartbeat.unref();
  }

  private lost(client: pg.Client, err?: Error): void {
    if (this.stopped || this.client !== client) return;
    this.client = undefined;
    clearInterval(this.heartbeat);
    client.end().catch(() => {});
    log.warn("signal connection lost; reconnecting", { err });
    this.retry();
  }

  private retry(): void {
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, 5_000);
    setTimeout(() => {
      if (this.stopped) return;
      this.connect().then(
        () => this.emit("reconnected"),
        () => this.retry(),
      );
    }, delay).unref();
  }
}

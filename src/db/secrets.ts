import { randomBytes } from "node:crypto";
import type { Queryable } from "./pool.js";

/** The named secret all instances on this database share, created on first use. */
export async function sharedSecret(q: Queryable, name: string): Promise<Buffer> {
  await q.query(
    "INSERT INTO server_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    [name, randomBytes(32)],
  );
  const { rows } = await q.query<{ secret: Buffer }>(
    "SELECT secret FROM server_secrets WHERE name = $1",
    [name],
  );
  return (rows[0] as { secret: Buffer }).secret;
}

import { hash, randomBytes } from "node:crypto";
import type { RateLimit } from "../domain/rate-limit.js";
import { scopesBeyond } from "../domain/scopes.js";
import type { Queryable } from "./pool.js";
import { CHANNEL, notify } from "./signals.js";

/** API keys: `hf_` plus 32 random bytes; only their SHA-256 is stored. */

export type KeyRow = {
  id: string;
  tenant_id: string;
  prefix: string;
  scopes: string[];
  description: string;
  create_time: Date;
  revoke_time: Date | null;
  /** The key's own rate limit (both or neither); null: the configured default. */
  rate_per_second: number | null;
  rate_burst: number | null;
};

const COLUMNS =
  "id, tenant_id, prefix, scopes, description, create_time, revoke_time, rate_per_second, rate_burst";

export function hashSecret(secret: string): Buffer {
  // One call, not createHash().update().digest(): every request hashes its key.
  return hash("sha256", secret, "buffer");
}

export async function insertKey(
  q: Queryable,
  tenantId: string,
  scopes: readonly string[],
  description: string,
  rateLimit?: RateLimit,
): Promise<{ secret: string; key: KeyRow }> {
  const secret = `hf_${randomBytes(32).toString("base64url")}`;
  const { rows } = await q.query<KeyRow>(
    `INSERT INTO api_keys (tenant_id, secret_hash, prefix, scopes, description, rate_per_second, rate_burst)
     VALUES ($1, $2, $3, $4::text[], $5, $6, $7)
     RETURNING ${COLUMNS}`,
    [
      tenantId,
      hashSecret(secret),
      secret.slice(0, 10),
      [...scopes],
      description,
      rateLimit?.perSecond ?? null,
      rateLimit?.burst ?? null,
    ],
  );
  return { secret, key: rows[0] as KeyRow };
}

/** A key's own rate limit; undefined when it has none (it runs at the configured default). */
export async function ownRateLimit(
  q: Queryable,
  tenantId: string,
  id: string,
): Promise<RateLimit | undefined> {
  const { rows } = await q.query<Pick<KeyRow, "rate_per_second" | "rate_burst">>(
    "SELECT rate_per_second, rate_burst FROM api_keys WHERE tenant_id = $1 AND id = $2",
    [tenantId, id],
  );
  const r = rows[0];
  return r && r.rate_per_second !== null && r.rate_burst !== null
    ? { perSecond: r.rate_per_second, burst: r.rate_burst }
    : undefined;
}

/** The active key with this secret hash, if any. */
export async function findActiveKey(q: Queryable, secretHash: Buffer): Promise<KeyRow | undefined> {
  const { rows } = await q.query<KeyRow>(
    `SELECT ${COLUMNS} FROM api_keys WHERE secret_hash = $1 AND revoke_time IS NULL`,
    [secretHash],
  );
  return rows[0];
}

export async function listKeys(
  q: Queryable,
  tenantId: string,
  opts: { after: string | undefined; limit: number; includeRevoked: boolean },
): Promise<KeyRow[]> {
  const { rows } = await q.query<KeyRow>(
    `SELECT ${COLUMNS} FROM api_keys
     WHERE tenant_id = $1 AND ($2::text IS NULL OR id > $2) AND ($3 OR revoke_time IS NULL)
     ORDER BY id LIMIT $4`,
    [tenantId, opts.after ?? null, opts.includeRevoked, opts.limit],
  );
  return rows;
}

/**
 * SQL: true when the scopes `scopes` (a text[] expression) are all among the
 * text[] parameter `within`, or `within` is NULL. Who may revoke what: a
 * key may revoke a key holding no scope beyond its own.
 */
function scopesWithin(scopes: string, within: string): string {
  return `(${within}::text[] IS NULL OR ${scopes} <@ ${within}::text[])`;
}

/**
 * Revokes a key and tells every instance to forget it at once (the
 * notification is delivered when the transaction commits). Revoking a
 * revoked key returns it unchanged.
 */
export async function revokeKey(
  q: Queryable,
  tenantId: string,
  id: string,
  /** Revoke only a key whose scopes are all among these (the caller's); any key when absent. */
  withinScopes?: readonly string[],
): Promise<{ key: KeyRow; secretHashHex: string } | { beyond: string[] } | undefined> {
  const { rows } = await q.query<KeyRow & { secret_hash: Buffer }>(
    `UPDATE api_keys SET revoke_time = coalesce(revoke_time, now())
     WHERE tenant_id = $1 AND id = $2 AND ${scopesWithin("scopes", "$3")}
     RETURNING ${COLUMNS}, secret_hash`,
    [tenantId, id, withinScopes ?? null],
  );
  const row = rows[0];
  if (!row) {
    if (withinScopes === undefined) return undefined;
    // Not found, or holding scopes beyond the caller's: say which.
    const held = await q.query<{ scopes: string[] }>(
      "SELECT scopes FROM api_keys WHERE tenant_id = $1 AND id = $2",
      [tenantId, id],
    );
    const scopes = held.rows[0]?.scopes;
    return scopes ? { beyond: scopesBeyond(withinScopes, scopes) } : undefined;
  }
  const secretHashHex = row.secret_hash.toString("hex");
  await notify(q, CHANNEL.keys, secretHashHex);
  const { secret_hash: _, ...key } = row;
  return { key, secretHashHex };
}

/**
 * Revokes every active key of the tenant that holds `scope`, telling every
 * instance to forget each (on commit). Returns the keys revoked.
 */
export async function revokeKeysWithScope(
  q: Queryable,
  tenantId: string,
  scope: string,
): Promise<KeyRow[]> {
  const { rows } = await q.query<KeyRow & { secret_hash: Buffer }>(
    `UPDATE api_keys SET revoke_time = now()
     WHERE tenant_id = $1 AND $2 = ANY (scopes) AND revoke_time IS NULL
     RETURNING ${COLUMNS}, secret_hash`,
    [tenantId, scope],
  );
  for (const row of rows) await notify(q, CHANNEL.keys, row.secret_hash.toString("hex"));
  return rows.map(({ secret_hash: _, ...key }) => key);
}

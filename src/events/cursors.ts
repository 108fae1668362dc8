import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { Position } from "../domain/events.js";

const PREFIX = "ev2_";
const MAX_POSITION = 2n ** 63n;

/**
 * A tenant's cursor cipher: a keyed permutation of 16-byte blocks. A
 * position is enciphered into its cursor, so a cursor tells its holder
 * nothing about the outbox's other events (how many other tenants wrote
 * between two of yours), and another tenant's cursor, or one made up, opens
 * to a position no cursor names.
 */
export type CursorCipher = { seal(block: Buffer): Buffer; open(block: Buffer): Buffer };

/** Opaque and URL-safe: "ev2_" and 22 characters. */
export function encodeCursor(p: Position, cipher: CursorCipher): string {
  const block = Buffer.allocUnsafe(16);
  block.writeBigUInt64BE(p.xid, 0);
  block.writeBigUInt64BE(p.seq, 8);
  return PREFIX + cipher.seal(block).toString("base64url");
}

/** The position a cursor names under `cipher`; undefined for text that is not a cursor. */
export function decodeCursor(cursor: string, cipher: CursorCipher): Position | undefined {
  const m = /^ev2_([A-Za-z0-9_-]{22})$/.exec(cursor);
  if (!m) return undefined;
  const text = m[1] as string;
  const sealed = Buffer.from(text, "base64url");
  // Only the form Holdfast writes (base64's unused trailing bits zero).
  if (sealed.length !== 16 || sealed.toString("base64url") !== text) return undefined;
  const block = cipher.open(sealed);
  const p = { xid: block.readBigUInt64BE(0), seq: block.readBigUInt64BE(8) };
  // Both are stored as 64-bit integers; anything larger was never issued.
  return p.xid < MAX_POSITION && p.seq < MAX_POSITION ? p : undefined;
}

/** Tenants whose ciphers are kept ready; one is made again in a few microseconds. */
const CIPHERS_MAX = 10_000;

/**
 * Every tenant's event cursor cipher: AES-256 over the
 * one 16-byte block of a position, keyed with HMAC-SHA256 of the secret all
 * instances share (the database's `event-cursors` server secret) and the
 * tenant's id. One block with no IV is deterministic, so a position always
 * gets the same cursor on every instance, which consumers may compare. Node
 * has no bare block cipher: an ECB cipher without padding, kept per tenant
 * and fed one block per update (ECB carries nothing from block to block),
 * costs a third of one made per cursor.
 */
export class EventCursors {
  private readonly ciphers = new LRUCache<string, CursorCipher>({ max: CIPHERS_MAX });

  constructor(private readonly secret: Buffer) {}

  of(tenantId: string): CursorCipher {
    let cipher = this.ciphers.get(tenantId);
    if (!cipher) {
      cipher = cursorCipher(this.secret, tenantId);
      this.ciphers.set(tenantId, cipher);
    }
    return cipher;
  }
}

export function cursorCipher(secret: Buffer, tenantId: string): CursorCipher {
  const key = createHmac("sha256", secret).update("event-cursors\0").update(tenantId).digest();
  const encipher = createCipheriv("aes-256-ecb", key, null).setAutoPadding(false);
  const decipher = createDecipheriv("aes-256-ecb", key, null).setAutoPadding(false);
  return { seal: (block) => encipher.update(block), open: (block) => decipher.update(block) };
}

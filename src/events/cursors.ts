import { createCipheriv, createDecipheriv, createHmac } from "node:crypto";
import { LRUCache } from "lru-cache";
import type { CursorCipher } from "../domain/events.js";

/** Tenants whose ciphers are kept ready; one is made again in a few microseconds. */
const CIPHERS_MAX = 10_000;

/**
 * Every tenant's event cursor cipher (see CursorCipher): AES-256 over the
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

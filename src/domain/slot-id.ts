import { createCipheriv, createHmac, timingSafeEqual } from "node:crypto";

/**
 * Slot ids: opaque, URL-safe and tamper-evident. An id carries the
 * service, resource, start, length and policy version of a free slot, and a
 * tag over them and the tenant, so an id cannot be altered, forged, or used
 * by another tenant. Every rule is checked again when the id is used.
 *
 * ListSlots returns thousands of ids, so the tag is built to be cheap: one
 * HMAC-SHA256 derives a key per (tenant, service, resource, policy
 * version), and each slot's (start, length) block is encrypted under that
 * key with AES; the first 8 bytes are the tag. AES is a pseudorandom
 * function on distinct 16-byte blocks, so this is a sound MAC for them, and
 * a whole response's blocks take one cipher call.
 */
export type SlotRef = {
  serviceId: string;
  resourceId: string;
  startMs: number;
  endMs: number;
  policyVersion: number;
};

const PREFIX = "slot_";
const FORMAT = 1;
const TAG_BYTES = 8;
/** Ids Holdfast makes: a three-letter prefix and 28 hex digits, packed into 14 bytes. */
const COMPACT_ID = /^[a-z]{3}_[0-9a-f]{28}$/;

export class SlotSigner {
  constructor(private readonly key: Buffer) {}

  /** Ids for many slots of one resource at once. */
  idsFor(
    tenantId: string,
    serviceId: string,
    resourceId: string,
    policyVersion: number,
    slots: readonly { startMs: number; endMs: number }[],
  ): string[] {
    if (slots.length === 0) return [];
    const tags = this.tags(tenantId, serviceId, resourceId, policyVersion, slots);
    const head = Buffer.concat([
      Buffer.from([FORMAT]),
      packId(serviceId),
      packId(resourceId),
      u32(policyVersion),
    ]);
    // Every id's bytes in one buffer, each turned into text in place.
    const size = head.length + 12 + TAG_BYTES;
    const bodies = Buffer.allocUnsafe(size * slots.length);
    return slots.map((s, i) => {
      const at = i * size;
      head.copy(bodies, at);
      writeBlock(bodies, at + head.length, s.startMs, s.endMs);
      tags.copy(bodies, at + head.length + 12, i * 16, i * 16 + TAG_BYTES);
      return PREFIX + bodies.toString("base64url", at, at + size);
    });
  }

  encode(tenantId: string, s: SlotRef): string {
    return this.idsFor(tenantId, s.serviceId, s.resourceId, s.policyVersion, [s])[0] as string;
  }

  /** The slot an id names, or undefined when it is not one this server issued for this tenant. */
  decode(tenantId: string, id: string): SlotRef | undefined {
    if (!id.startsWith(PREFIX) || id.length > 300) return undefined;
    const text = id.slice(PREFIX.length);
    const bytes = Buffer.from(text, "base64url");
    // Base64 decoding skips stray characters: only the canonical text counts.
    if (bytes.toString("base64url") !== text || bytes[0] !== FORMAT) return undefined;
    let at = 1;
    const service = unpackId(bytes, at, "svc");
    if (!service) return undefined;
    at = service.next;
    const resource = unpackId(bytes, at, "rsc");
    if (!resource) return undefined;
    at = resource.next;
    if (bytes.length !== at + 4 + 12 + TAG_BYTES) return undefined;
    const policyVersion = bytes.readUInt32BE(at);
    const startMs = Number(bytes.readBigUInt64BE(at + 4));
    const lengthMs = bytes.readUInt32BE(at + 12);
    const ref = {
      serviceId: service.id,
      resourceId: resource.id,
      startMs,
      endMs: startMs + lengthMs,
      policyVersion,
    };
    if (!(lengthMs > 0) || !(policyVersion >= 1) || !Number.isSafeInteger(startMs))
      return undefined;
    const expected = this.tags(tenantId, ref.serviceId, ref.resourceId, policyVersion, [
      ref,
    ]).subarray(0, TAG_BYTES);
    return timingSafeEqual(expected, bytes.subarray(bytes.length - TAG_BYTES)) ? ref : undefined;
  }

  private tags(
    tenantId: string,
    serviceId: string,
    resourceId: string,
    policyVersion: number,
    slots: readonly { startMs: number; endMs: number }[],
  ): Buffer {
    const key = createHmac("sha256", this.key)
      .update(`${tenantId}\0${serviceId}\0${resourceId}\0${policyVersion}`)
      .digest()
      .subarray(0, 16);
    const cipher = createCipheriv("aes-128-ecb", key, null).setAutoPadding(false);
    const blocks = Buffer.alloc(16 * slots.length);
    slots.forEach((s, i) => {
      writeBlock(blocks, i * 16, s.startMs, s.endMs);
    });
    return cipher.update(blocks);
  }
}

/**
 * The first 12 bytes of a slot's 16-byte block (start in ms, 8 bytes; length
 * in ms, 4 bytes; then zeros) at `at`. Starts are whole, non-negative
 * milliseconds below 2^53, written as two 32-bit halves.
 */
function writeBlock(b: Buffer, at: number, startMs: number, endMs: number): void {
  const high = Math.floor(startMs / 2 ** 32);
  b.writeUInt32BE(high, at);
  b.writeUInt32BE(startMs - high * 2 ** 32, at + 4);
  b.writeUInt32BE(endMs - startMs, at + 8);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** 0x00 + 14 bytes for a Holdfast id, or length + UTF-8 for anything else. */
function packId(id: string): Buffer {
  if (COMPACT_ID.test(id))
    return Buffer.concat([Buffer.from([0]), Buffer.from(id.slice(4), "hex")]);
  const raw = Buffer.from(id);
  return Buffer.concat([Buffer.from([raw.length]), raw]);
}

function unpackId(
  bytes: Buffer,
  at: number,
  prefix: string,
): { id: string; next: number } | undefined {
  const kind = bytes[at];
  if (kind === undefined) return undefined;
  if (kind === 0) {
    if (bytes.length < at + 15) return undefined;
    return { id: `${prefix}_${bytes.subarray(at + 1, at + 15).toString("hex")}`, next: at + 15 };
  }
  if (bytes.length < at + 1 + kind) return undefined;
  return { id: bytes.subarray(at + 1, at + 1 + kind).toString(), next: at + 1 + kind };
}

import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";

/**
 * The binary encoding of ListSlotsResponse's `repeated Slot slots = 1`,
 * byte for byte what protobuf-es's toBinary writes for the same slots
 * (test/rpc/slot-wire.test.ts holds the two together). toBinary reads every
 * field through reflection and copies each nested message's bytes once per
 * level, about 20 µs a slot on a loaded box: most of the cost of a
 * 1000-slot page. This writes each slot once into one buffer sized
 * beforehand. protobuf-es's own BinaryWriter (fork/join per nested
 * message) was tried for it: on a quiet box a 1000-slot page took 6.2–6.6
 * ms with it, 8.7–9.3 ms with toBinary and 1.1–1.5 ms with this.
 *
 * Slot, in field order (proto3: zero values are left out):
 *   1 slot_id, 2 resource_id (string), 3 start_time, 4 end_time
 *   (Timestamp: 1 seconds int64, 2 nanos int32), 5 remaining (int32),
 *   6 local_start_time, 7 local_end_time, 8 time_zone (string).
 */
export function encodeSlots(slots: readonly Slot[]): Uint8Array {
  const sizes = new Array<number>(slots.length);
  let total = 0;
  slots.forEach((s, i) => {
    const size = slotSize(s);
    sizes[i] = size;
    total += 1 + varintSize(size) + size;
  });
  const out = Buffer.allocUnsafe(total);
  let at = 0;
  slots.forEach((s, i) => {
    out[at++] = 0x0a; // field 1, length-delimited
    at = writeVarint(out, at, sizes[i] as number);
    at = writeSlot(out, at, s);
  });
  return out;
}

function slotSize(s: Slot): number {
  return (
    stringSize(s.slotId) +
    stringSize(s.resourceId) +
    timestampSize(s.startTime) +
    timestampSize(s.endTime) +
    (s.remaining === 0 ? 0 : 1 + int32Size(s.remaining)) +
    stringSize(s.localStartTime) +
    stringSize(s.localEndTime) +
    stringSize(s.timeZone)
  );
}

function writeSlot(out: Buffer, at: number, s: Slot): number {
  let p = writeString(out, at, 0x0a, s.slotId);
  p = writeString(out, p, 0x12, s.resourceId);
  p = writeTimestamp(out, p, 0x1a, s.startTime);
  p = writeTimestamp(out, p, 0x22, s.endTime);
  if (s.remaining !== 0) {
    out[p++] = 0x28; // field 5, varint
    p = writeInt32(out, p, s.remaining);
  }
  p = writeString(out, p, 0x32, s.localStartTime);
  p = writeString(out, p, 0x3a, s.localEndTime);
  return writeString(out, p, 0x42, s.timeZone);
}

type Timestamp = Slot["startTime"];

function timestampBodySize(t: NonNullable<Timestamp>): number {
  return (
    (t.seconds === 0n ? 0 : 1 + int64Size(t.seconds)) + (t.nanos === 0 ? 0 : 1 + int32Size(t.nanos))
  );
}

function timestampSize(t: Timestamp): number {
  if (t === undefined) return 0;
  const body = timestampBodySize(t);
  return 1 + varintSize(body) + body;
}

function writeTimestamp(out: Buffer, at: number, tag: number, t: Timestamp): number {
  if (t === undefined) return at;
  out[at++] = tag;
  let p = writeVarint(out, at, timestampBodySize(t));
  if (t.seconds !== 0n) {
    out[p++] = 0x08; // field 1, varint
    p = writeInt64(out, p, t.seconds);
  }
  if (t.nanos !== 0) {
    out[p++] = 0x10; // field 2, varint
    p = writeInt32(out, p, t.nanos);
  }
  return p;
}

function stringSize(s: string): number {
  if (s === "") return 0;
  const n = Buffer.byteLength(s, "utf8");
  return 1 + varintSize(n) + n;
}

function writeString(out: Buffer, at: number, tag: number, s: string): number {
  if (s === "") return at;
  out[at++] = tag;
  const n = Buffer.byteLength(s, "utf8");
  const p = writeVarint(out, at, n);
  return p + out.write(s, p, n, "utf8");
}

/** Bytes of a varint of a non-negative safe integer. */
function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

/** Negative int32 and int64 values take ten bytes: their 64-bit two's complement. */
function int32Size(n: number): number {
  return n < 0 ? 10 : varintSize(n);
}

function writeInt32(out: Buffer, at: number, n: number): number {
  return n < 0 ? writeInt64(out, at, BigInt(n)) : writeVarint(out, at, n);
}

function int64Size(n: bigint): number {
  return n < 0n ? 10 : varintSize(Number(n));
}

function writeInt64(out: Buffer, at: number, n: bigint): number {
  if (n >= 0n) return writeVarint(out, at, Number(n));
  let u = BigInt.asUintN(64, n);
  while (u >= 0x80n) {
    out[at++] = Number(u & 0x7fn) | 0x80;
    u >>= 7n;
  }
  out[at++] = Number(u);
  return at;
}

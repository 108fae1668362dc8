import {
  create,
  type DescMessage,
  fromJson,
  type JsonObject,
  type JsonValue,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import {
  type Attendee,
  type Booking,
  BookingSchema,
  BookingStatusSchema,
} from "../../gen/holdfast/v1/booking_pb.js";

/**
 * Bookings come out of SQL as protobuf JSON (booking_json in
 * src/db/functions/01_json.sql), and every booking answer is that document
 * read into a message. protobuf-es's fromJson reads it through reflection,
 * parsing each of its five timestamps with a regular expression and two
 * Date.parse calls: about 14 µs a booking on a quiet box, a few percent of a
 * CreateHold's server time and most of a page of ListBookings. The
 * documents booking_json writes have one fixed shape (known keys, strings
 * where strings go, timestamps as `YYYY-MM-DDTHH:MM:SS.ffffffZ`), which this
 * reads directly, in about a quarter of the time. Anything else (a stored
 * outcome from another version, a key it does not know) goes to fromJson,
 * so the result, or the error, is always fromJson's
 * (test/rpc/booking-json.test.ts holds the two together on rows of every
 * status).
 */
export function bookingOfJson(json: JsonValue): Booking {
  return (isObject(json) && fixedShape(json)) || fromJson(BookingSchema, json);
}

/**
 * A response message from its protobuf JSON, as fromJson reads it; the
 * answers of booking writes (messages whose one field is `booking`) with
 * their booking read by bookingOfJson.
 */
export function answerOfJson<D extends DescMessage>(schema: D, json: JsonObject): MessageShape<D> {
  const only = schema.fields.length === 1 ? schema.fields[0] : undefined;
  const keys = Object.keys(json);
  if (
    only?.localName === "booking" &&
    only.message?.typeName === BookingSchema.typeName &&
    keys.length === 1 &&
    keys[0] === "booking"
  ) {
    return create(schema, { booking: bookingOfJson(json.booking as JsonValue) } as never);
  }
  return fromJson(schema, json);
}

const STATUSES = new Map(BookingStatusSchema.values.map((v) => [v.name, v.number]));
const STAMP = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.(\d{6})Z$/;
/** The earliest instant protobuf JSON allows (0001-01-01T00:00:00Z). */
const MIN_MS = -62135596800000;

/** The booking, when `json` has booking_json's shape exactly; undefined otherwise. */
function fixedShape(json: JsonObject): Booking | undefined {
  const b: Booking = {
    $typeName: "holdfast.v1.Booking",
    id: "",
    serviceId: "",
    resourceId: "",
    startTime: undefined,
    endTime: undefined,
    status: 0,
    expireTime: undefined,
    attendee: undefined,
    metadata: undefined,
    policyVersion: 0,
    cancelReason: "",
    createTime: undefined,
    updateTime: undefined,
    localStartTime: "",
    localEndTime: "",
    timeZone: "",
  };
  for (const key in json) {
    const v = json[key];
    switch (key) {
      case "id":
      case "serviceId":
      case "resourceId":
      case "cancelReason":
        if (typeof v !== "string") return undefined;
        b[key] = v;
        break;
      case "startTime":
      case "endTime":
      case "expireTime":
      case "createTime":
      case "updateTime": {
        const t = timestamp(v);
        if (!t) return undefined;
        b[key] = t;
        break;
      }
      case "status": {
        const n = typeof v === "string" ? STATUSES.get(v) : undefined;
        if (n === undefined) return undefined;
        b.status = n;
        break;
      }
      case "policyVersion":
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) {
          return undefined;
        }
        b.policyVersion = v;
        break;
      case "attendee": {
        const a = attendee(v);
        if (!a) return undefined;
        b.attendee = a;
        break;
      }
      case "metadata":
        // A Struct is a JSON object in protobuf-es; booking_json writes the
        // jsonb the write stored, which fromJson had accepted.
        if (!isObject(v) || !plainJson(v)) return undefined;
        b.metadata = v;
        break;
      default:
        return undefined;
    }
  }
  return b;
}

function timestamp(v: JsonValue | undefined): Timestamp | undefined {
  if (typeof v !== "string") return undefined;
  const m = STAMP.exec(v);
  if (!m) return undefined;
  const ms = Date.parse(`${v.slice(0, 19)}Z`);
  if (!(ms >= MIN_MS)) return undefined;
  return {
    $typeName: "google.protobuf.Timestamp",
    seconds: BigInt(ms / 1000),
    nanos: Number(m[1]) * 1000,
  };
}

function attendee(v: JsonValue | undefined): Attendee | undefined {
  if (!isObject(v)) return undefined;
  const a: Attendee = { $typeName: "holdfast.v1.Attendee", name: "", email: "", phone: "" };
  for (const key in v) {
    const s = v[key];
    if ((key !== "name" && key !== "email" && key !== "phone") || typeof s !== "string") {
      return undefined;
    }
    a[key] = s;
  }
  return a;
}

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON as JSON.parse makes it: what a Struct holds, with no number JSON cannot write. */
function plainJson(v: JsonValue): boolean {
  if (typeof v === "number") return Number.isFinite(v);
  if (typeof v !== "object" || v === null) return true;
  if (Array.isArray(v)) return v.every(plainJson);
  for (const key in v) if (!plainJson(v[key] as JsonValue)) return false;
  return true;
}

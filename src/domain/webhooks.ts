import { createCipheriv, createDecipheriv, createHmac, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { lineProblem } from "./text.js";
import { DAY_MS, HOUR_MS, MINUTE_MS, parseDuration } from "./time.js";

/**
 * Webhook rules: which URLs may receive events, how deliveries are signed
 * (the Standard Webhooks specification, so receivers verify with any of its
 * libraries), and when failed deliveries are tried again.
 */

/** Why a URL cannot receive webhooks, or undefined when it can. */
export function urlProblem(raw: string, allowPrivate: boolean): string | undefined {
  // The URL parser drops tabs and line breaks and percent-encodes other
  // controls, but the URL is kept and shown as it was sent.
  const problem = lineProblem(raw);
  if (problem) return problem;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "is not a URL";
  }
  if (raw.length > 2048) return "must be at most 2048 characters";
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must be an http or https URL";
  if (url.username || url.password) return "must not carry credentials";
  // url.hash is "" for an empty fragment ("https://example.com/#"): the raw text says.
  if (url.hash || raw.includes("#")) return "must not have a fragment";
  if (allowPrivate) return undefined;
  if (url.protocol !== "https:")
    return "must be https (http is allowed only with HOLDFAST_WEBHOOK_ALLOW_PRIVATE)";
  // Trailing dots ("localhost.", "localhost..") name the same host.
  const host = url.hostname.replace(/^\[|\]$/g, "").replace(/\.+$/, "");
  if (
    host === "localhost" ||
    host.endsWith(".localhost") ||
    host.endsWith(".local") ||
    host.endsWith(".internal")
  ) {
    return "must not point at a local host name";
  }
  const range = isIP(host) ? addressProblem(host) : undefined;
  if (range)
    return `must not point at a private, loopback, link-local or other non-public address (${host} is ${range})`;
  return undefined;
}

/**
 * Why an address may not receive webhooks (the name of its special range),
 * or undefined for a public unicast address. ipaddr.js classifies: every
 * range it does not call "unicast" is refused (private, loopback,
 * link-local, carrier-grade NAT, benchmarking 198.18.0.0/15, documentation,
 * multicast, broadcast, unique-local, site-local fec0::/10, ...), and so is
 * every IPv6 address outside 2000::/3, the only block allocated for global
 * unicast (which covers IPv4-compatible ::a.b.c.d). Addresses that carry an
 * IPv4 address inside an IPv6 one and lead to it through a translator or a
 * tunnel (NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32) are refused
 * whatever the IPv4 address, since the translator may reach private
 * networks; an IPv4-mapped address (::ffff:a.b.c.d) is the IPv4 address
 * itself and is judged as that.
 */
export function addressProblem(ip: string): string | undefined {
  const family = isIP(ip);
  if (family === 0) return "not an IP address";
  // ipaddr.js reads the dotted IPv4-compatible form ::a.b.c.d as IPv4-mapped
  // ::ffff:a.b.c.d: parse the canonical text (::7f00:1) the URL parser writes.
  const parsed = ipaddr.parse(family === 6 ? new URL(`http://[${ip}]/`).hostname.slice(1, -1) : ip);
  if (parsed.kind() === "ipv6") {
    const v6 = parsed as ipaddr.IPv6;
    if (v6.isIPv4MappedAddress()) return addressProblem(v6.toIPv4Address().toString());
    const range = v6.range();
    if (range !== "unicast") return range;
    if (!v6.match(GLOBAL_UNICAST_V6)) return "notGlobalUnicast";
    return undefined;
  }
  const range = parsed.range();
  return range === "unicast" ? undefined : range;
}

const GLOBAL_UNICAST_V6 = ipaddr.IPv6.parseCIDR("2000::/3");

/** A new signing secret in the Standard Webhooks format: whsec_ and base64 of 32 random bytes. */
export function newSigningSecret(): string {
  return `whsec_${randomBytes(32).toString("base64")}`;
}

/**
 * The webhook-signature header: "v1,<base64 HMAC-SHA256>" for each secret,
 * space-separated, over "<webhook-id>.<webhook-timestamp>.<body>".
 */
export function signatureHeader(
  secrets: readonly string[],
  id: string,
  timestampSec: number,
  body: string,
): string {
  return secrets
    .map((secret) => {
      const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
      return `v1,${createHmac("sha256", key).update(`${id}.${timestampSec}.${body}`).digest("base64")}`;
    })
    .join(" ");
}

/** The body every attempt POSTs: {type, timestamp, data}. */
export function deliveryBody(type: string, occurTime: Date, data: Record<string, unknown>): string {
  return JSON.stringify({ type, timestamp: occurTime.toISOString(), data });
}

/** About a day of retries: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, 8 h, 8 h. */
export const DEFAULT_RETRY_SCHEDULE_MS = [
  5_000,
  30_000,
  2 * MINUTE_MS,
  10 * MINUTE_MS,
  30 * MINUTE_MS,
  HOUR_MS,
  2 * HOUR_MS,
  4 * HOUR_MS,
  8 * HOUR_MS,
  8 * HOUR_MS,
];

/** "5s,30s,2m,1h,1d" → milliseconds; undefined when any item is not a duration. */
export function parseRetrySchedule(text: string): number[] | undefined {
  const waits = text.split(",").map(parseDuration);
  if (waits.length === 0 || waits.length > MAX_RETRIES) return undefined;
  return waits.every((ms) => ms !== undefined && ms <= MAX_RETRY_WAIT_MS)
    ? (waits as number[])
    : undefined;
}

/** Bounds that keep every scheduled retry a time Postgres can store. */
const MAX_RETRIES = 100;
const MAX_RETRY_WAIT_MS = 7 * DAY_MS;

/**
 * The wait before attempt `attempt + 1` after `attempt` attempts failed, with
 * ±20% jitter so many failing deliveries do not retry in lockstep; undefined
 * when the schedule is used up.
 */
export function retryDelay(
  scheduleMs: readonly number[],
  attempt: number,
  random: number,
): number | undefined {
  const base = scheduleMs[attempt - 1];
  if (base === undefined) return undefined;
  return Math.round(base * (0.8 + 0.4 * random));
}

/**
 * What follows a failed attempt: the wait before the next automatic attempt,
 * or undefined when the delivery's automatic attempts are used up; and
 * whether this gives the delivery up for the first time, so that its event
 * counts toward disabling the endpoint (once: a delivery given up before,
 * retried by hand and failing again, is the same one event that failed).
 *
 * Retries by hand (RetryDelivery) are not on the schedule: `automatic`
 * counts the delivery's automatic attempts so far (this one included unless
 * it was asked for by hand). A failed retry by hand of a delivery still
 * retrying waits, from now, as long as the automatic attempt it stood in
 * front of did; one asked for before the first automatic attempt waits the
 * schedule's first wait.
 */
export function afterFailure(
  scheduleMs: readonly number[],
  delivery: { automaticAttempts: number; givenUp: boolean },
  random: number,
): { retryInMs: number | undefined; givesUp: boolean } {
  const retryInMs = retryDelay(scheduleMs, Math.max(delivery.automaticAttempts, 1), random);
  return { retryInMs, givesUp: retryInMs === undefined && !delivery.givenUp };
}

/** Secrets at rest: AES-256-GCM under the server's key, as iv | tag | ciphertext. */
export function seal(key: Buffer, plaintext: string): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const data = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), data]);
}

export function unseal(key: Buffer, sealed: Buffer): string {
  const decipher = createDecipheriv("aes-256-gcm", key, sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(12, 28));
  return Buffer.concat([decipher.update(sealed.subarray(28)), decipher.final()]).toString("utf8");
}

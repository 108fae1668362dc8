import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import {
  addressProblem,
  afterFailure,
  DEFAULT_RETRY_SCHEDULE_MS,
  deliveryBody,
  newSigningSecret,
  parseRetrySchedule,
  retryDelay,
  seal,
  signatureHeader,
  unseal,
  urlProblem,
} from "../../src/domain/webhooks.js";

describe("webhook URLs", () => {
  it.each([
    "https://hooks.example.com/holdfast",
    "https://example.com:8443/a?b=c",
    "https://93.184.216.34/hook",
  ])("accept %s", (url) => {
    expect(urlProblem(url, false)).toBeUndefined();
  });

  it.each([
    ["not a url", "is not a URL"],
    ["ftp://example.com/x", "http or https"],
    ["http://example.com/x", "must be https"],
    ["https://user:pw@example.com/x", "credentials"],
    ["https://example.com/x#frag", "fragment"],
    ["https://example.com/#", "fragment"],
    ["https://localhost/x", "local host name"],
    ["https://printer.local/x", "local host name"],
    // A trailing dot names the same host.
    ["https://localhost./x", "local host name"],
    ["https://foo.localhost.:18443/x", "local host name"],
    ["https://metadata.google.internal./x", "local host name"],
    ["https://x.local./x", "local host name"],
    ["https://localhost../x", "local host name"],
    ["https://foo.internal../", "local host name"],
    ["https://127.0.0.1/x", "private"],
    ["https://10.1.2.3/x", "private"],
    ["https://172.20.0.1/x", "private"],
    ["https://192.168.1.1/x", "private"],
    ["https://169.254.169.254/latest", "private"],
    ["https://100.64.0.1/x", "private"],
    ["https://[::1]/x", "private"],
    ["https://[fd00::1]/x", "private"],
    ["https://[::ffff:127.0.0.1]/x", "private"],
    // The URL parser would drop the line break and percent-encode the rest,
    // but the URL is kept and shown as it was sent.
    ["https://example.com/a\nb", "U+000A"],
    ["https://example.com/\u001b[2J", "U+001B"],
    ["https://example.com/x?\u202egnp.exe", "U+202E"],
  ])("refuse %j", (url, why) => {
    expect(urlProblem(url, false)).toContain(why);
  });

  it("allow private and plain http addresses only when told to", () => {
    expect(urlProblem("http://127.0.0.1:9999/hook", true)).toBeUndefined();
    expect(urlProblem("http://localhost/hook", true)).toBeUndefined();
    expect(urlProblem("gopher://127.0.0.1/", true)).toBeDefined();
  });

  it("refuse addresses that are written in hex, mapped or embedded", () => {
    expect(urlProblem("https://0x7f.1/x", false)).toContain("loopback");
    expect(urlProblem("https://[::ffff:7f00:1]/x", false)).toContain("loopback");
    expect(urlProblem("https://[64:ff9b::a00:1]/x", false)).toContain("rfc6052");
    expect(urlProblem("https://198.18.0.1/x", false)).toContain("reserved");
  });
});

describe("address classification", () => {
  it.each([
    ["8.8.8.8"],
    ["1.1.1.1"],
    ["93.184.216.34"],
    ["2606:4700::1111"],
    ["2a00:1450:4001:80b::200e"],
    // IPv4-mapped is the IPv4 address itself.
    ["::ffff:8.8.8.8"],
  ])("%s is public", (ip) => {
    expect(addressProblem(ip)).toBeUndefined();
  });

  it.each([
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.1.2.3", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["169.254.169.254", "linkLocal"],
    ["100.64.0.1", "carrierGradeNat"],
    ["100.127.255.255", "carrierGradeNat"],
    ["198.18.0.1", "reserved"],
    ["198.19.255.255", "reserved"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.1", "reserved"],
    ["203.0.113.9", "reserved"],
    ["240.0.0.1", "reserved"],
    ["224.0.0.1", "multicast"],
    ["239.255.255.250", "multicast"],
    ["255.255.255.255", "broadcast"],
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["fe80::1", "linkLocal"],
    ["fc00::1", "uniqueLocal"],
    ["fd12:3456::1", "uniqueLocal"],
    ["fec0::1", "deprecatedSiteLocal"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["::ffff:10.0.0.1", "private"],
    ["::ffff:169.254.169.254", "linkLocal"],
    // NAT64, 6to4 and Teredo lead to an IPv4 address, whichever it is.
    ["64:ff9b::7f00:1", "rfc6052"],
    ["64:ff9b::808:808", "rfc6052"],
    ["64:ff9b:1::a00:1", "rfc6052"],
    ["2002:7f00:1::1", "6to4"],
    ["2002:808:808::1", "6to4"],
    ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "teredo"],
    // IPv4-compatible (deprecated) and everything else outside 2000::/3.
    ["::127.0.0.1", "notGlobalUnicast"],
    ["::7f00:1", "notGlobalUnicast"],
    ["::8.8.8.8", "notGlobalUnicast"],
    ["100::1", "discard"],
    ["4000::1", "notGlobalUnicast"],
    ["2001:db8::1", "reserved"],
    ["2001:2::1", "benchmarking"],
    ["::ffff:0:7f00:1", "rfc6145"],
    ["not-an-ip", "not an IP address"],
    ["127.1", "not an IP address"],
  ])("%s is refused as %s", (ip, range) => {
    expect(addressProblem(ip)).toBe(range);
  });
});

describe("signatures", () => {
  it("verify with the standardwebhooks library, with one secret or two during a rotation", () => {
    const secret = newSigningSecret();
    const old = newSigningSecret();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    const body = deliveryBody("booking.held", new Date("2031-01-06T09:00:00Z"), {
      booking: { id: "bkg_1" },
    });
    const ts = Math.floor(Date.now() / 1000);
    const headers = (secrets: string[]) => ({
      "webhook-id": "evt_1",
      "webhook-timestamp": String(ts),
      "webhook-signature": signatureHeader(secrets, "evt_1", ts, body),
    });
    expect(new Webhook(secret).verify(body, headers([secret]))).toEqual(JSON.parse(body));
    expect(new Webhook(secret).verify(body, headers([secret, old]))).toEqual(JSON.parse(body));
    expect(new Webhook(old).verify(body, headers([secret, old]))).toEqual(JSON.parse(body));
    expect(() => new Webhook(newSigningSecret()).verify(body, headers([secret]))).toThrow();
    expect(() => new Webhook(secret).verify(`${body} `, headers([secret]))).toThrow();
    expect(JSON.parse(body)).toEqual({
      type: "booking.held",
      timestamp: "2031-01-06T09:00:00.000Z",
      data: { booking: { id: "bkg_1" } },
    });
  });
});

describe("retries", () => {
  it("default to about a day", () => {
    const total = DEFAULT_RETRY_SCHEDULE_MS.reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(20 * 3_600_000);
    expect(total).toBeLessThan(26 * 3_600_000);
  });

  it("parse schedules and refuse junk", () => {
    expect(parseRetrySchedule("5s, 1m,2h,1d,250ms")).toEqual([
      5_000, 60_000, 7_200_000, 86_400_000, 250,
    ]);
    for (const bad of [
      "",
      "5",
      "5x",
      "1m,,2m",
      "-1s",
      "8d",
      "100000000d",
      Array(101).fill("1s").join(),
    ])
      expect(parseRetrySchedule(bad)).toBeUndefined();
  });

  it("wait the scheduled time ±20%, then give up", () => {
    expect(retryDelay([1000, 5000], 1, 0)).toBe(800);
    expect(retryDelay([1000, 5000], 1, 1)).toBe(1200);
    expect(retryDelay([1000, 5000], 2, 0.5)).toBe(5000);
    expect(retryDelay([1000, 5000], 3, 0.5)).toBeUndefined();
  });

  it("give a delivery up once: when its automatic attempts are used up, not at the retries by hand after it", () => {
    const schedule = [1000, 5000];
    const failed = (automaticAttempts: number, givenUp = false) =>
      afterFailure(schedule, { automaticAttempts, givenUp }, 0.5);
    // The first attempt and the two retries, then the delivery is given up.
    expect([1, 2, 3].map((n) => failed(n))).toEqual([
      { retryInMs: 1000, givesUp: false },
      { retryInMs: 5000, givesUp: false },
      { retryInMs: undefined, givesUp: true },
    ]);
    // Retries by hand of a delivery given up fail it again, and count no more.
    expect(failed(3, true)).toEqual({ retryInMs: undefined, givesUp: false });
  });

  it("leave the schedule to the automatic attempts: a retry by hand that fails uses none of it", () => {
    const schedule = [1000, 5000];
    // Retried by hand after its first automatic attempt failed (one automatic
    // attempt so far, however many by hand): the second is still to come.
    expect(afterFailure(schedule, { automaticAttempts: 1, givenUp: false }, 0.5)).toEqual({
      retryInMs: 1000,
      givesUp: false,
    });
    // Retried by hand before any automatic attempt: the first is still to come.
    expect(afterFailure(schedule, { automaticAttempts: 0, givenUp: false }, 0.5)).toEqual({
      retryInMs: 1000,
      givesUp: false,
    });
  });
});

describe("secrets at rest", () => {
  it("seal and unseal, and refuse a wrong key or altered data", () => {
    const key = Buffer.alloc(32, 1);
    const sealed = seal(key, "whsec_abc");
    expect(sealed.toString()).not.toContain("whsec_abc");
    expect(unseal(key, sealed)).toBe("whsec_abc");
    expect(() => unseal(Buffer.alloc(32, 2), sealed)).toThrow();
    const altered = Buffer.from(sealed);
    altered[altered.length - 1] = (altered[altered.length - 1] as number) ^ 1;
    expect(() => unseal(key, altered)).toThrow();
  });
});

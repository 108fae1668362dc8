import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import {
  DEFAULT_RETRY_SCHEDULE_MS,
  deliveryBody,
  isPrivateAddress,
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
    ["https://localhost/x", "local host name"],
    ["https://printer.local/x", "local host name"],
    ["https://127.0.0.1/x", "private"],
    ["https://10.1.2.3/x", "private"],
    ["https://172.20.0.1/x", "private"],
    ["https://192.168.1.1/x", "private"],
    ["https://169.254.169.254/latest", "private"],
    ["https://100.64.0.1/x", "private"],
    ["https://[::1]/x", "private"],
    ["https://[fd00::1]/x", "private"],
    ["https://[::ffff:127.0.0.1]/x", "private"],
  ])("refuse %s", (url, why) => {
    expect(urlProblem(url, false)).toContain(why);
  });

  it("allow private and plain http addresses only when told to", () => {
    expect(urlProblem("http://127.0.0.1:9999/hook", true)).toBeUndefined();
    expect(urlProblem("http://localhost/hook", true)).toBeUndefined();
    expect(urlProblem("gopher://127.0.0.1/", true)).toBeDefined();
  });

  it("classify addresses", () => {
    expect(["8.8.8.8", "1.1.1.1", "2606:4700::1111"].map(isPrivateAddress)).toEqual([
      false,
      false,
      false,
    ]);
    expect(["0.0.0.0", "224.0.0.1", "fe80::1", "::"].map(isPrivateAddress)).toEqual([
      true,
      true,
      true,
      true,
    ]);
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

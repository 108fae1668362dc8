import { toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BadRequestSchema, ErrorInfoSchema } from "../../gen/google/rpc/error_details_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import {
  DeliveryStatus,
  GetWebhookResponseSchema,
  WebhookService,
  WebhookState,
} from "../../gen/holdfast/v1/webhook_pb.js";
import { log } from "../../src/log.js";
import { at, bookingWorld, sleep } from "../support/booking.js";
import { clientFor, fieldViolations, rejected } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { type ServerProcess, spawnServer } from "../support/process.js";
import { connectionCounter, controlledDns, webhookReceiver } from "../support/receiver.js";
import { ADMIN_KEY, startTestServer, type TestServer } from "../support/server.js";

const FAST_RETRIES = {
  HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
  HOLDFAST_WEBHOOK_RETRY_SCHEDULE: "200ms,300ms,500ms,1s,2s,3s",
  HOLDFAST_WEBHOOK_DISABLE_AFTER: "3",
  HOLDFAST_WEBHOOK_TIMEOUT_MS: "1000",
};

/** The attempts of a webhook's first delivery, once there are `n`. */
async function attemptsOf(
  webhooks: ReturnType<typeof clientFor<typeof WebhookService>>,
  id: string,
  n = 1,
) {
  let attempts: { error: string; statusCode: number }[] = [];
  for (let i = 0; i < 600 && attempts.length < n; i++) {
    await sleep(50);
    attempts = (await webhooks.listDeliveries({ webhookId: id })).deliveries[0]?.attempts ?? [];
  }
  return attempts;
}

const dns = controlledDns({ "hooks.test": ["127.0.0.1"] });

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer(FAST_RETRIES, undefined, { webhookResolve: dns.resolve });
});

async function endpoint(
  w: Awaited<ReturnType<typeof bookingWorld>>,
  url: string,
  eventTypes = ["*"],
) {
  const webhooks = clientFor(WebhookService, server.url, w.key);
  const created = await webhooks.createWebhook({ url, eventTypes, description: "test receiver" });
  return { webhooks, id: created.webhook?.id as string, secret: created.secret };
}

describe("managing webhooks", () => {
  it("shows the secret once, and pauses, resumes, edits and deletes", async () => {
    const w = await bookingWorld(server.url);
    const { webhooks, id, secret } = await endpoint(w, "https://hooks.example.com/a", [
      "booking.confirmed",
    ]);
    expect(secret).toMatch(/^whsec_/);
    const got = await webhooks.getWebhook({ webhookId: id });
    expect(got.webhook).toMatchObject({
      url: "https://hooks.example.com/a",
      eventTypes: ["booking.confirmed"],
      state: WebhookState.ACTIVE,
    });
    expect(JSON.stringify(toJson(GetWebhookResponseSchema, got))).not.toContain(secret.slice(6));
    const { rows } = await server.pool.query(
      "SELECT secret::text AS s FROM webhooks WHERE id = $1",
      [id],
    );
    expect(rows[0].s).not.toContain(secret.slice(6, 20));
    const paused = await webhooks.updateWebhook({ webhook: { id, state: WebhookState.PAUSED } });
    expect(paused.webhook?.state).toBe(WebhookState.PAUSED);
    const edited = await webhooks.updateWebhook({
      webhook: { id, eventTypes: ["booking.held", "booking.expired"], state: WebhookState.ACTIVE },
    });
    expect(edited.webhook).toMatchObject({
      state: WebhookState.ACTIVE,
      eventTypes: ["booking.held", "booking.expired"],
    });
    expect((await webhooks.listWebhooks({})).webhooks.map((x) => x.id)).toEqual([id]);
    await webhooks.deleteWebhook({ webhookId: id });
    await rejected(webhooks.getWebhook({ webhookId: id }), Code.NotFound, "WEBHOOK_NOT_FOUND");
  });

  it("refuses bad URLs and event types, naming the fields", async () => {
    const w = await bookingWorld(server.url);
    const webhooks = clientFor(WebhookService, server.url, w.key);
    const err = await rejected(
      webhooks.createWebhook({ url: "ftp://x", eventTypes: ["booking.exploded"] }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    expect(fieldViolations(err).sort()).toEqual(["event_types[0]", "url"]);
    await rejected(
      webhooks.createWebhook({ url: "https://ok.example.com" }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
    await rejected(
      webhooks.updateWebhook({ webhook: { id: "whk_x", state: WebhookState.DISABLED } }),
      Code.InvalidArgument,
      "VALIDATION_ERROR",
    );
  });

  it("refuses a state other than ACTIVE or PAUSED, naming only those two", async () => {
    const w = await bookingWorld(server.url);
    const { webhooks, id } = await endpoint(w, "https://hooks.example.com/states");
    // UNSPECIFIED (named by the mask), a number the enum lacks, and DISABLED,
    // which only Holdfast sets.
    for (const state of [WebhookState.UNSPECIFIED, 7 as WebhookState, WebhookState.DISABLED]) {
      const err = await rejected(
        webhooks.updateWebhook({ webhook: { id, state }, updateMask: { paths: ["state"] } }),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      const violations = err
        .findDetails(BadRequestSchema)
        .flatMap((b) => b.fieldViolations.map((v) => [v.field, v.description]));
      expect(violations).toHaveLength(1);
      expect(violations[0]?.[0]).toBe("webhook.state");
      expect(violations[0]?.[1]).toMatch(/^must be WEBHOOK_STATE_ACTIVE or WEBHOOK_STATE_PAUSED\b/);
      expect(violations[0]?.[1]).not.toContain("DISABLED");
    }
    expect((await webhooks.getWebhook({ webhookId: id })).webhook?.state).toBe(WebhookState.ACTIVE);
  });

  it("refuses private and loopback addresses unless HOLDFAST_WEBHOOK_ALLOW_PRIVATE is set", async () => {
    const strict = await startTestServer({}, await freshDatabase());
    const w = await bookingWorld(strict.url);
    const webhooks = clientFor(WebhookService, strict.url, w.key);
    for (const url of [
      "http://127.0.0.1:9000/h",
      "https://10.0.0.5/h",
      "https://localhost/h",
      "https://[::1]/h",
    ]) {
      const err = await rejected(
        webhooks.createWebhook({ url, eventTypes: ["*"] }),
        Code.InvalidArgument,
        "VALIDATION_ERROR",
      );
      expect(fieldViolations(err)).toEqual(["url"]);
    }
  });
});

describe("racing a deletion", () => {
  it("a test event or a retry meeting the webhook's deletion is WEBHOOK_NOT_FOUND or done, never Internal", async () => {
    const w = await bookingWorld(server.url);
    const outcome = (call: Promise<unknown>) =>
      call.then(
        () => "done",
        (err: unknown) => {
          const e = ConnectError.from(err);
          return e.findDetails(ErrorInfoSchema)[0]?.reason ?? `${Code[e.code]}: ${e.rawMessage}`;
        },
      );
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const e = await endpoint(w, `https://hooks.example.com/race-${i}`);
      const sent = await e.webhooks.sendTestEvent({ webhookId: e.id });
      const deliveryId = sent.delivery?.id as string;
      const [test, retry, deleted] = await Promise.all([
        outcome(e.webhooks.sendTestEvent({ webhookId: e.id })),
        outcome(e.webhooks.retryDelivery({ webhookId: e.id, deliveryId })),
        outcome(e.webhooks.deleteWebhook({ webhookId: e.id })),
      ]);
      seen.add(`test ${test}`).add(`retry ${retry}`).add(`delete ${deleted}`);
    }
    const expected = [
      /^(test|retry) (done|WEBHOOK_NOT_FOUND)$/,
      /^retry DELIVERY_IN_FLIGHT$/,
      /^delete done$/,
    ];
    expect([...seen].filter((s) => !expected.some((r) => r.test(s)))).toEqual([]);
  });
});

describe("racing a disabling", () => {
  it("a test event meeting the endpoint's disabling (by a failure, or UpdateWebhook's changes of state) is WEBHOOK_DISABLED or done, never Internal, and leaves nothing pending", async () => {
    const w = await bookingWorld(server.url);
    // Every answer disables the endpoint (410 Gone) while test events keep
    // coming, and UpdateWebhook pauses it and re-enables it meanwhile.
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => 410 });
    const outcome = (call: Promise<unknown>) =>
      call.then(
        () => "done",
        (err: unknown) => {
          const e = ConnectError.from(err);
          return e.findDetails(ErrorInfoSchema)[0]?.reason ?? `${Code[e.code]}: ${e.rawMessage}`;
        },
      );
    try {
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const e = await endpoint(w, receiver.url());
        const disabled = () =>
          e.webhooks
            .getWebhook({ webhookId: e.id })
            .then((r) => r.webhook?.state === WebhookState.DISABLED);
        for (let round = 0; round < 20; round++) {
          const state = round % 3 === 1 ? WebhookState.PAUSED : WebhookState.ACTIVE;
          const [a, b, update] = await Promise.all([
            outcome(e.webhooks.sendTestEvent({ webhookId: e.id })),
            outcome(e.webhooks.sendTestEvent({ webhookId: e.id })),
            outcome(e.webhooks.updateWebhook({ webhook: { id: e.id, state } })),
          ]);
          seen.add(`test ${a}`).add(`test ${b}`).add(`update ${update}`);
        }
        // Re-enabled last: its queued test events go, and the first 410
        // disables it again.
        await e.webhooks.updateWebhook({ webhook: { id: e.id, state: WebhookState.ACTIVE } });
        await e.webhooks.sendTestEvent({ webhookId: e.id }).catch(() => {});
        await vi.waitFor(async () => expect(await disabled()).toBe(true), { timeout: 10_000 });
        // Nothing waits, pending and in silence, for a re-enabling.
        const left = (
          await e.webhooks.listDeliveries({ webhookId: e.id, status: DeliveryStatus.PENDING })
        ).deliveries;
        expect(left).toEqual([]);
      }
      expect(
        [...seen].filter((s) => !/^(test (done|WEBHOOK_DISABLED)|update done)$/.test(s)),
      ).toEqual([]);
      expect(seen.has("test WEBHOOK_DISABLED")).toBe(true);
    } finally {
      await receiver.stop();
    }
  });
});

describe("where deliveries may go", () => {
  it("dials the address the name resolves to when it connects", async () => {
    const w = await bookingWorld(server.url);
    let secret = "";
    const receiver = await webhookReceiver({ secrets: () => [secret] });
    try {
      const port = new URL(receiver.url()).port;
      const e = await endpoint(w, `http://hooks.test:${port}/hooks`, ["booking.confirmed"]);
      secret = e.secret;
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(5, 9),
      });
      const got = await receiver.waitFor((r) => r.length >= 1);
      expect(got[0]?.verified).toBeDefined();
      expect(dns.asked("hooks.test")).toBeGreaterThan(0);
    } finally {
      await receiver.stop();
    }
  });

  it("refuses, when it dials, a name that resolved to a public address before and to loopback now (DNS rebinding)", async () => {
    const rebinding = controlledDns({ "rebind.example": ["93.184.216.34", "127.0.0.1"] });
    const strict = await startTestServer(
      { HOLDFAST_WEBHOOK_RETRY_SCHEDULE: "100ms,100ms,100ms", HOLDFAST_WEBHOOK_TIMEOUT_MS: "1000" },
      await freshDatabase(),
      { webhookResolve: rebinding.resolve },
    );
    const loopback = await connectionCounter();
    try {
      // Any check made apart from the connection sees the public answer.
      expect((await rebinding.resolve("rebind.example"))[0]?.address).toBe("93.184.216.34");
      const w = await bookingWorld(strict.url);
      const webhooks = clientFor(WebhookService, strict.url, w.key);
      const byName = await webhooks.createWebhook({
        url: `https://rebind.example:${loopback.port}/hooks`,
        eventTypes: ["booking.confirmed"],
      });
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
      });
      const attempts = await attemptsOf(webhooks, byName.webhook?.id as string, 2);
      expect(attempts.map((a) => a.error)).toEqual([
        "refused: rebind.example resolves to a non-public address (loopback)",
        "refused: rebind.example resolves to a non-public address (loopback)",
      ]);
      expect(rebinding.asked("rebind.example")).toBeGreaterThanOrEqual(3);
      expect(loopback.connections()).toBe(0);

      // An address in the URL is checked too, however it got there.
      const literal = await webhooks.createWebhook({
        url: "https://hooks.example.com/x",
        eventTypes: ["booking.cancelled"],
      });
      await strict.pool.query("UPDATE webhooks SET url = $1 WHERE id = $2", [
        `https://[::ffff:7f00:1]:${loopback.port}/hooks`,
        literal.webhook?.id,
      ]);
      const { bookings } = await w.bookings.listBookings({});
      await w.bookings.cancelBooking({ bookingId: bookings[0]?.id as string });
      const [first] = await attemptsOf(webhooks, literal.webhook?.id as string);
      expect(first?.error).toBe("refused: ::ffff:7f00:1 is a non-public address (loopback)");
      expect(loopback.connections()).toBe(0);
    } finally {
      await loopback.close();
    }
  });
});

describe("delivery", () => {
  it("signs per Standard Webhooks, retries failures with backoff, and delivers the event with its metadata", async () => {
    const w = await bookingWorld(server.url);
    let secret = "";
    const receiver = await webhookReceiver({
      secrets: () => [secret],
      respond: (n) => (n <= 2 ? 500 : 200),
    });
    try {
      const e = await endpoint(w, receiver.url(), ["booking.held"]);
      secret = e.secret;
      const { booking } = await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
        metadata: { leadId: "lead-7" },
      });
      const got = await receiver.waitFor((r) => r.length >= 3);
      await sleep(500);
      expect(got).toHaveLength(3);
      expect(new Set(got.map((r) => r.id)).size).toBe(1);
      expect(got.every((r) => r.verified !== undefined)).toBe(true);
      expect(got[2]?.verified).toMatchObject({
        type: "booking.held",
        data: { booking: { id: booking?.id, metadata: { leadId: "lead-7" } } },
      });
      const [delivery] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      expect(delivery).toMatchObject({
        status: DeliveryStatus.SUCCEEDED,
        eventType: "booking.held",
        eventId: got[0]?.id,
      });
      expect(delivery?.attempts.map((a) => a.statusCode)).toEqual([500, 500, 200]);
      expect(delivery?.attempts[0]?.error).toContain("500");
      expect((await e.webhooks.getWebhook({ webhookId: e.id })).webhook?.consecutiveFailures).toBe(
        0,
      );
    } finally {
      await receiver.stop();
    }
  });

  it("gets everything to a receiver that was down for a while, once it is back", async () => {
    const w = await bookingWorld(server.url);
    let secret = "";
    const receiver = await webhookReceiver({ secrets: () => [secret] });
    try {
      const e = await endpoint(w, receiver.url());
      secret = e.secret;
      await receiver.stop();
      // Five events fail their first attempts, more than the three given-up
      // events in a row that disable an endpoint: none of them is given up.
      for (let h = 9; h < 14; h++) {
        await w.bookings.createBooking({
          serviceId: w.serviceId,
          resourceId: w.resourceId,
          ...at(1, h),
        });
      }
      await sleep(700);
      expect(receiver.received).toEqual([]);
      await receiver.start();
      const got = await receiver.waitFor((r) => new Set(r.map((x) => x.id)).size >= 5);
      expect(new Set(got.map((x) => x.id)).size).toBe(5);
      expect((await e.webhooks.getWebhook({ webhookId: e.id })).webhook?.state).toBe(
        WebhookState.ACTIVE,
      );
      expect(got.every((r) => r.verified !== undefined)).toBe(true);
      const deliveries = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      expect(
        deliveries.every((d) => d.status === DeliveryStatus.SUCCEEDED && d.attempts.length >= 2),
      ).toBe(true);
      expect(deliveries[0]?.attempts[0]?.statusCode).toBe(0);
    } finally {
      await receiver.stop();
    }
  });

  it("records a secret it cannot decrypt as a failed attempt, and delivers after a rotation", async () => {
    const w = await bookingWorld(server.url);
    let secret = "";
    const receiver = await webhookReceiver({ secrets: () => [secret] });
    try {
      const e = await endpoint(w, receiver.url(), ["booking.confirmed"]);
      // As if sealed under another HOLDFAST_SECRET_KEY.
      await server.pool.query("UPDATE webhooks SET secret = '\\x0102' WHERE id = $1", [e.id]);
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9),
      });
      let attempts: { error: string }[] = [];
      for (let i = 0; i < 100 && attempts.length === 0; i++) {
        await sleep(50);
        attempts =
          (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries[0]?.attempts ?? [];
      }
      expect(attempts[0]?.error).toContain("cannot be decrypted");
      expect(receiver.received).toEqual([]);
      secret = (await e.webhooks.rotateWebhookSecret({ webhookId: e.id })).secret;
      const got = await receiver.waitFor((r) => r.length >= 1);
      expect(got[0]?.verified).toBeDefined();
    } finally {
      await receiver.stop();
    }
  });

  it("disables an endpoint that answers 410 Gone, and records webhook.disabled", async () => {
    const w = await bookingWorld(server.url);
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => 410 });
    try {
      const e = await endpoint(w, receiver.url());
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
      });
      await receiver.waitFor((r) => r.length >= 1);
      await sleep(400);
      const hook = (await e.webhooks.getWebhook({ webhookId: e.id })).webhook;
      expect(hook).toMatchObject({
        state: WebhookState.DISABLED,
        disabledReason: "the endpoint answered 410 Gone",
      });
      const events = await clientFor(EventService, server.url, w.key).listEvents({
        filter: { types: ["webhook.disabled"] },
      });
      expect(events.events.map((x) => [x.webhookId, x.detail])).toEqual([
        [e.id, "the endpoint answered 410 Gone"],
      ]);
      expect(receiver.received).toHaveLength(1);
      // Re-enabling clears the state; the failed delivery can be retried by hand.
      const again = await e.webhooks.updateWebhook({
        webhook: { id: e.id, state: WebhookState.ACTIVE },
      });
      expect(again.webhook?.disabledReason).toBe("");
    } finally {
      await receiver.stop();
    }
  });

  it("disables an endpoint after N events in a row fail", async () => {
    const w = await bookingWorld(server.url);
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => 503 });
    try {
      const e = await endpoint(w, receiver.url(), ["booking.confirmed"]);
      for (let h = 9; h < 13; h++)
        await w.bookings.createBooking({
          serviceId: w.serviceId,
          resourceId: w.resourceId,
          ...at(2, h),
        });
      const deadline = Date.now() + 15_000;
      let state = WebhookState.ACTIVE;
      while (state === WebhookState.ACTIVE && Date.now() < deadline) {
        await sleep(100);
        state = (await e.webhooks.getWebhook({ webhookId: e.id })).webhook?.state ?? state;
      }
      const hook = (await e.webhooks.getWebhook({ webhookId: e.id })).webhook;
      expect(hook?.state).toBe(WebhookState.DISABLED);
      expect(hook?.disabledReason).toBe("deliveries of 3 events in a row failed");
      const deliveries = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      expect(deliveries.every((d) => d.status === DeliveryStatus.FAILED)).toBe(true);
    } finally {
      await receiver.stop();
    }
  });

  it("queues nothing for a paused endpoint, and delivers again once resumed", async () => {
    const w = await bookingWorld(server.url);
    const receiver = await webhookReceiver({ secrets: () => [] });
    try {
      const e = await endpoint(w, receiver.url(), ["booking.confirmed"]);
      await e.webhooks.updateWebhook({ webhook: { id: e.id, state: WebhookState.PAUSED } });
      await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(4, 9),
      });
      await sleep(800);
      expect(receiver.received).toEqual([]);
      expect((await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries).toEqual([]);
      await e.webhooks.updateWebhook({ webhook: { id: e.id, state: WebhookState.ACTIVE } });
      const { booking } = await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(4, 10),
      });
      const [got] = await receiver.waitFor((r) => r.length >= 1);
      expect(JSON.parse(got?.body ?? "{}").data.booking.id).toBe(booking?.id);
    } finally {
      await receiver.stop();
    }
  });

  it("signs with the current secret and at most nine earlier ones, however often it is rotated", async () => {
    const w = await bookingWorld(server.url);
    const secrets: string[] = [];
    let accepted: string[] = [];
    const receiver = await webhookReceiver({ secrets: () => accepted });
    try {
      const e = await endpoint(w, receiver.url());
      secrets.push(e.secret);
      for (let i = 0; i < 12; i++) {
        secrets.push((await e.webhooks.rotateWebhookSecret({ webhookId: e.id })).secret);
      }
      await e.webhooks.sendTestEvent({ webhookId: e.id });
      const [got] = await receiver.waitFor((r) => r.length >= 1);
      expect(String(got?.headers["webhook-signature"]).split(" ")).toHaveLength(10);
      // The newest ten verify; the three oldest no longer do.
      const verifies = async (secret: string) => {
        accepted = [secret];
        await e.webhooks.sendTestEvent({ webhookId: e.id });
        const all = await receiver.waitFor((r) => r.length >= 2 + secrets.indexOf(secret));
        return all.at(-1)?.verified !== undefined;
      };
      const results: boolean[] = [];
      for (const secret of secrets) results.push(await verifies(secret));
      expect(results).toEqual([false, false, false, ...Array(10).fill(true)]);
    } finally {
      await receiver.stop();
    }
  });

  it("signs with both secrets for a day after a rotation", async () => {
    const w = await bookingWorld(server.url);
    let accepted: string[] = [];
    const receiver = await webhookReceiver({ secrets: () => accepted });
    try {
      const e = await endpoint(w, receiver.url());
      const rotated = await e.webhooks.rotateWebhookSecret({ webhookId: e.id });
      expect(rotated.secret).not.toBe(e.secret);
      accepted = [e.secret];
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 9),
      });
      const [first] = await receiver.waitFor((r) => r.length >= 1);
      expect(first?.verified).toBeDefined();
      expect(String(first?.headers["webhook-signature"]).split(" ")).toHaveLength(2);
      accepted = [rotated.secret];
      await e.webhooks.sendTestEvent({ webhookId: e.id });
      const got = await receiver.waitFor((r) => r.length >= 2);
      expect(got[1]?.verified).toMatchObject({ type: "webhook.test" });
      // Rotating again within the day retires neither earlier secret early.
      const again = await e.webhooks.rotateWebhookSecret({ webhookId: e.id });
      for (const [i, secret] of [e.secret, rotated.secret, again.secret].entries()) {
        accepted = [secret];
        await e.webhooks.sendTestEvent({ webhookId: e.id });
        const all = await receiver.waitFor((r) => r.length >= 3 + i);
        expect(all[2 + i]?.verified).toMatchObject({ type: "webhook.test" });
        expect(String(all[2 + i]?.headers["webhook-signature"]).split(" ")).toHaveLength(3);
      }
    } finally {
      await receiver.stop();
    }
  });

  it("retries a delivery on request (at least once: the same webhook-id again)", async () => {
    const w = await bookingWorld(server.url);
    let secret = "";
    const receiver = await webhookReceiver({ secrets: () => [secret] });
    try {
      const e = await endpoint(w, receiver.url());
      secret = e.secret;
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(3, 10),
      });
      const [first] = await receiver.waitFor((r) => r.length >= 1);
      const [delivery] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      await e.webhooks.retryDelivery({ webhookId: e.id, deliveryId: delivery?.id as string });
      const got = await receiver.waitFor((r) => r.length >= 2);
      expect(got[1]?.id).toBe(first?.id);
      await rejected(
        e.webhooks.retryDelivery({ webhookId: e.id, deliveryId: "dlv_nope" }),
        Code.NotFound,
        "DELIVERY_NOT_FOUND",
      );
    } finally {
      await receiver.stop();
    }
  });

  it("counts an event toward disabling once, however often its given-up delivery is retried by hand", async () => {
    const w = await bookingWorld(server.url);
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => 500 });
    try {
      const e = await endpoint(w, receiver.url());
      const sent = await e.webhooks.sendTestEvent({ webhookId: e.id });
      const deliveryId = sent.delivery?.id as string;
      const givenUpAfter = async (attempts: number) => {
        for (let i = 0; i < 400; i++) {
          const [d] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
          if (d?.status === DeliveryStatus.FAILED && d.attempts.length >= attempts) return;
          await sleep(50);
        }
        throw new Error(`no failed delivery with ${attempts} attempts`);
      };
      // The first attempt and the schedule's six retries, then three by hand.
      await givenUpAfter(7);
      for (const attempts of [8, 9, 10]) {
        await e.webhooks.retryDelivery({ webhookId: e.id, deliveryId });
        await givenUpAfter(attempts);
      }
      const { webhook } = await e.webhooks.getWebhook({ webhookId: e.id });
      expect(webhook?.state).toBe(WebhookState.ACTIVE);
      expect(webhook?.consecutiveFailures).toBe(1);
    } finally {
      await receiver.stop();
    }
  });

  it("keeps every automatic retry of a delivery retried by hand while it is still retrying", async () => {
    // One retry, an hour after the first attempt: retries by hand come in between.
    const hourly = await startTestServer(
      {
        HOLDFAST_WEBHOOK_ALLOW_PRIVATE: "true",
        HOLDFAST_WEBHOOK_RETRY_SCHEDULE: "1h",
        HOLDFAST_WEBHOOK_DISABLE_AFTER: "3",
      },
      await freshDatabase(),
    );
    const w = await bookingWorld(hourly.url);
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => 500 });
    try {
      const webhooks = clientFor(WebhookService, hourly.url, w.key);
      const created = await webhooks.createWebhook({ url: receiver.url(), eventTypes: ["*"] });
      const webhookId = created.webhook?.id as string;
      const sent = await webhooks.sendTestEvent({ webhookId });
      const deliveryId = sent.delivery?.id as string;
      /** The delivery once its `n`th attempt is recorded (with what followed from it). */
      const afterAttempt = async (n: number) => {
        let d = (await webhooks.listDeliveries({ webhookId })).deliveries[0];
        for (let i = 0; i < 400 && (d?.attempts.length ?? 0) < n; i++) {
          await sleep(25);
          d = (await webhooks.listDeliveries({ webhookId })).deliveries[0];
        }
        expect(d?.attempts).toHaveLength(n);
        return d;
      };
      const failures = async () =>
        (await webhooks.getWebhook({ webhookId })).webhook?.consecutiveFailures;
      const first = await afterAttempt(1);
      expect(first?.status).toBe(DeliveryStatus.PENDING);
      // Three retries by hand, each failing: the hourly retry is still to come.
      for (const n of [2, 3, 4]) {
        await webhooks.retryDelivery({ webhookId, deliveryId });
        const d = await afterAttempt(n);
        expect(d?.status).toBe(DeliveryStatus.PENDING);
        expect(d?.nextAttemptTime).toBeDefined();
        expect(await failures()).toBe(0);
      }
      // The automatic retry, made due now, fails: the delivery is given up,
      // and its event counts once toward disabling.
      await hourly.pool.query("UPDATE deliveries SET next_attempt_time = now() WHERE id = $1", [
        deliveryId,
      ]);
      expect((await afterAttempt(5))?.status).toBe(DeliveryStatus.FAILED);
      expect(await failures()).toBe(1);
      // A retry by hand of the delivery given up fails it again, and counts no more.
      await webhooks.retryDelivery({ webhookId, deliveryId });
      expect((await afterAttempt(6))?.status).toBe(DeliveryStatus.FAILED);
      expect(await failures()).toBe(1);
      expect(receiver.received).toHaveLength(6);
    } finally {
      await receiver.stop();
    }
  });

  it("skips quietly recording the attempt of a webhook deleted while it is in flight, and delivers to the others", async () => {
    const w = await bookingWorld(server.url);
    // One endpoint answers after 1.5 s (past the 1 s timeout here: a failed
    // attempt), one after 0.5 s (a delivered one); both are deleted while
    // their POST is open. A third answers at once and stays.
    const slow = (ms: number) => () => sleep(ms).then(() => 200);
    const failing = await webhookReceiver({ secrets: () => [], respond: slow(1_500) });
    const delivering = await webhookReceiver({ secrets: () => [], respond: slow(500) });
    const staying = await webhookReceiver({ secrets: () => [] });
    const warnings = vi.spyOn(log, "warn");
    try {
      const deleted = [await endpoint(w, failing.url()), await endpoint(w, delivering.url())];
      const kept = await endpoint(w, staying.url());
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(6, 9),
      });
      await failing.waitFor((r) => r.length >= 1);
      await delivering.waitFor((r) => r.length >= 1);
      for (const e of deleted) await e.webhooks.deleteWebhook({ webhookId: e.id });
      // Both attempts end (and would be recorded) by now.
      await sleep(1_500);
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(6, 11),
      });
      expect((await staying.waitFor((r) => r.length >= 2)).length).toBe(2);
      expect((await attemptsOf(kept.webhooks, kept.id))[0]?.statusCode).toBe(200);
      expect(warnings.mock.calls.map(([msg]) => msg)).toEqual([]);
      expect([failing.received.length, delivering.received.length]).toEqual([1, 1]);
    } finally {
      warnings.mockRestore();
      await Promise.all([failing.stop(), delivering.stop(), staying.stop()]);
    }
  });

  it("refuses to retry a delivery while an attempt of it is in flight, and never sends it twice at once", async () => {
    const w = await bookingWorld(server.url);
    // The first POST hangs until Holdfast gives up on it (after 1 s here).
    const receiver = await webhookReceiver({
      secrets: () => [],
      respond: (n) => (n === 1 ? "hang" : 200),
    });
    try {
      const e = await endpoint(w, receiver.url());
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(5, 9),
      });
      await receiver.waitFor((r) => r.length >= 1);
      const [delivery] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      const deliveryId = delivery?.id as string;
      const err = await rejected(
        e.webhooks.retryDelivery({ webhookId: e.id, deliveryId }),
        Code.FailedPrecondition,
        "DELIVERY_IN_FLIGHT",
      );
      // When the attempt ends at the latest: the end of its lease, 2 × 1 s + 5 s after it began.
      const until = Date.parse(err.findDetails(ErrorInfoSchema)[0]?.metadata.in_flight_until ?? "");
      expect(until - Date.now()).toBeGreaterThan(0);
      expect(until - Date.now()).toBeLessThanOrEqual(7_000);
      // The attempt times out and is recorded; its scheduled retry is the
      // next POST, after it, never next to it.
      const got = await receiver.waitFor((r) => r.length >= 2);
      expect(got[1]?.id).toBe(got[0]?.id);
      expect(receiver.mostInFlight()).toBe(1);
      // With nothing in flight, a retry is taken again.
      let status = DeliveryStatus.PENDING;
      for (let i = 0; i < 100 && status !== DeliveryStatus.SUCCEEDED; i++) {
        await sleep(50);
        status =
          (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries[0]?.status ?? status;
      }
      // (Its answer may already show the new attempt's success.)
      const retried = await e.webhooks.retryDelivery({ webhookId: e.id, deliveryId });
      expect(retried.delivery?.status).not.toBe(DeliveryStatus.FAILED);
      await receiver.waitFor((r) => r.length >= 3);
      expect(receiver.received).toHaveLength(3);
      expect(receiver.mostInFlight()).toBe(1);
    } finally {
      await receiver.stop();
    }
  });

  it("refuses to retry a delivery of a disabled endpoint, or send it a test event, until it is re-enabled", async () => {
    const w = await bookingWorld(server.url);
    let status = 410;
    const receiver = await webhookReceiver({ secrets: () => [], respond: () => status });
    try {
      const e = await endpoint(w, receiver.url());
      await w.bookings.createHold({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(5, 10),
      });
      await receiver.waitFor((r) => r.length >= 1);
      let hook = (await e.webhooks.getWebhook({ webhookId: e.id })).webhook;
      for (let i = 0; i < 100 && hook?.state !== WebhookState.DISABLED; i++) {
        await sleep(50);
        hook = (await e.webhooks.getWebhook({ webhookId: e.id })).webhook;
      }
      expect(hook?.state).toBe(WebhookState.DISABLED);
      const [delivery] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      const deliveryId = delivery?.id as string;
      const err = await rejected(
        e.webhooks.retryDelivery({ webhookId: e.id, deliveryId }),
        Code.FailedPrecondition,
        "WEBHOOK_DISABLED",
      );
      expect(err.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
        disabled_reason: "the endpoint answered 410 Gone",
      });
      // Nothing was queued to wait for a re-enabling in silence.
      const [after] = (await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries;
      expect(after?.status).toBe(DeliveryStatus.FAILED);
      expect(after?.nextAttemptTime).toBeUndefined();
      // A test event is refused alike, and queues nothing.
      const test = await rejected(
        e.webhooks.sendTestEvent({ webhookId: e.id }),
        Code.FailedPrecondition,
        "WEBHOOK_DISABLED",
      );
      expect(test.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
        disabled_reason: "the endpoint answered 410 Gone",
      });
      expect((await e.webhooks.listDeliveries({ webhookId: e.id })).deliveries).toHaveLength(1);
      status = 200;
      await e.webhooks.updateWebhook({ webhook: { id: e.id, state: WebhookState.ACTIVE } });
      await sleep(300);
      expect(receiver.received).toHaveLength(1);
      const retried = await e.webhooks.retryDelivery({ webhookId: e.id, deliveryId });
      expect(retried.delivery?.status).not.toBe(DeliveryStatus.FAILED);
      const got = await receiver.waitFor((r) => r.length >= 2);
      expect(got[1]?.id).toBe(got[0]?.id);
    } finally {
      await receiver.stop();
    }
  });
});

describe("a server killed during delivery", () => {
  let first: ServerProcess | undefined;
  let second: ServerProcess | undefined;
  afterAll(async () => {
    first?.child.kill("SIGKILL");
    await second?.stop();
  });

  it("loses nothing: another instance delivers once the dead one's lease runs out", async () => {
    const databaseUrl = await freshDatabase();
    const env = {
      DATABASE_URL: databaseUrl,
      PORT: "0",
      HOLDFAST_ADMIN_KEY: ADMIN_KEY,
      ...FAST_RETRIES,
    };
    first = await spawnServer(env);
    const w = await bookingWorld(first.url);
    let secret = "";
    const receiver = await webhookReceiver({
      secrets: () => [secret],
      respond: (n) => (n === 1 ? "hang" : 200),
    });
    try {
      const created = await clientFor(WebhookService, first.url, w.key).createWebhook({
        url: receiver.url(),
        eventTypes: ["*"],
      });
      secret = created.secret;
      const { booking } = await w.bookings.createBooking({
        serviceId: w.serviceId,
        resourceId: w.resourceId,
        ...at(1, 9),
      });
      await receiver.waitFor((r) => r.length >= 1);
      // The first attempt is in flight: kill the server mid-delivery.
      first.child.kill("SIGKILL");
      first = undefined;
      second = await spawnServer(env);
      const got = await receiver.waitFor((r) => r.length >= 2, 20_000);
      expect(got[1]?.id).toBe(got[0]?.id);
      expect(got[1]?.verified).toMatchObject({
        type: "booking.confirmed",
        data: { booking: { id: booking?.id } },
      });
      // The receiver has answered; the attempt is recorded right after.
      const webhooks = clientFor(WebhookService, second.url, w.key);
      const deliveryStatus = async () =>
        (await webhooks.listDeliveries({ webhookId: created.webhook?.id as string })).deliveries[0]
          ?.status;
      for (let i = 0; i < 50 && (await deliveryStatus()) !== DeliveryStatus.SUCCEEDED; i++)
        await sleep(100);
      expect(await deliveryStatus()).toBe(DeliveryStatus.SUCCEEDED);
    } finally {
      await receiver.stop();
    }
  });
});

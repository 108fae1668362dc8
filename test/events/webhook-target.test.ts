import { fetch } from "undici";
import { describe, expect, it } from "vitest";
import { webhookDispatcher } from "../../src/events/webhook-target.js";
import { connectionCounter, controlledDns } from "../support/receiver.js";

/** What a POST through the dispatcher got: its status, or the reason it failed. */
async function post(url: string, dispatcher: ReturnType<typeof webhookDispatcher>) {
  try {
    return String((await fetch(url, { method: "POST", body: "{}", dispatcher })).status);
  } catch (err) {
    return ((err as Error).cause as Error | undefined)?.message ?? (err as Error).message;
  }
}

describe("the webhook dispatcher", () => {
  it("refuses a name with any non-public address when it connects, and dials nothing", async () => {
    const port = await connectionCounter();
    // Loopback first: were it not refused, it is the address a client would dial.
    const resolve = async () => [
      { address: "127.0.0.1", family: 4 },
      { address: "8.8.8.8", family: 4 },
    ];
    const dispatcher = webhookDispatcher({ allowPrivate: false, resolve });
    try {
      expect(await post(`http://mixed.example:${port.port}/`, dispatcher)).toBe(
        "refused: mixed.example resolves to a non-public address (loopback)",
      );
      expect(port.connections()).toBe(0);
    } finally {
      await dispatcher.close();
      await port.close();
    }
  });

  it("dials private addresses when they are allowed", async () => {
    const port = await connectionCounter();
    const dns = controlledDns({ "local.example": ["127.0.0.1"] });
    const dispatcher = webhookDispatcher({ allowPrivate: true, resolve: dns.resolve });
    try {
      // The counter closes every connection at once: the POST fails, after connecting.
      await post(`http://local.example:${port.port}/`, dispatcher);
      expect(port.connections()).toBeGreaterThan(0);
      expect(dns.asked("local.example")).toBeGreaterThan(0);
    } finally {
      await dispatcher.close();
      await port.close();
    }
  });
});

import { Code, ConnectError } from "@connectrpc/connect";
import type { Event } from "../../gen/holdfast/v1/event_pb.js";
import { EventService } from "../../gen/holdfast/v1/event_pb.js";
import { api, can, resumeCursorOf } from "./api.js";

/**
 * One WatchEvents stream for the whole console (Connect JSON, server
 * streaming over fetch). It starts at the present, resumes from its cursor
 * after a break (the one the error that ended the stream carries, else the
 * last one it sent, an event's or a heartbeat's), and hands every event to
 * whoever listens.
 */

export type LiveState = "off" | "connecting" | "live" | "retrying";

const listeners = new Set<(e: Event) => void>();
const stateListeners = new Set<(s: LiveState) => void>();

let state: LiveState = "off";
let stop: AbortController | undefined;

export function onEvent(fn: (e: Event) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function onLiveState(fn: (s: LiveState) => void): () => void {
  stateListeners.add(fn);
  fn(state);
  return () => stateListeners.delete(fn);
}

function setState(s: LiveState): void {
  state = s;
  for (const fn of stateListeners) fn(s);
}

export function startLive(): void {
  stopLive();
  if (!can(EventService.method.watchEvents)) return;
  const controller = new AbortController();
  stop = controller;
  void follow(controller.signal);
}

export function stopLive(): void {
  stop?.abort();
  stop = undefined;
  setState("off");
}

async function follow(signal: AbortSignal): Promise<void> {
  let cursor = "";
  while (!signal.aborted) {
    setState(cursor ? "retrying" : "connecting");
    try {
      const stream = api.events.watchEvents(
        { ...(cursor ? { after: cursor } : {}), heartbeats: true },
        { signal },
      );
      setState("live");
      for await (const message of stream) {
        // A heartbeat carries a cursor and no event.
        if (message.cursor) cursor = message.cursor;
        const event = message.event;
        if (!event) continue;
        cursor = event.cursor;
        for (const fn of listeners) fn(event);
      }
    } catch (err) {
      if (signal.aborted) return;
      const e = ConnectError.from(err);
      // Ended by the server (stopping, or this page too slow): resume where it says.
      cursor = resumeCursorOf(e) ?? cursor;
      // A cursor too old to resume from: start again from the present.
      if (e.code === Code.FailedPrecondition || e.code === Code.InvalidArgument) cursor = "";
      if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) {
        setState("off");
        return;
      }
    }
    setState("retrying");
    await new Promise((resolve) => setTimeout(resolve, 2_000));
  }
}

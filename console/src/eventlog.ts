import { Code, ConnectError } from "@connectrpc/connect";
import { BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import type { EventFilter, Event as HoldfastEvent } from "../../gen/holdfast/v1/event_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { EVENT_TYPES } from "../../src/domain/events.js";
import { api, can, problemOf, resumeCursorOf } from "./api.js";
import { h, replace } from "./dom.js";
import { listAll, MAX_LISTED } from "./paging.js";
import { msOf, wallTime } from "./time.js";
import { problemView } from "./ui.js";

/**
 * The event log: the filtered history, read page by page with ListEvents,
 * then the live events of WatchEvents resumed from the cursor the last page
 * ended at, so the seam between them neither repeats nor skips an event.
 * After a break it resumes from the cursor the error that ended the stream
 * carries, else from the last the stream sent (an event's or a heartbeat's).
 * The filters go to the server; changing one starts over.
 */

/** Events kept on the page, newest first. */
const KEEP = 500;
const PAGE_SIZE = 100;
/** History pages read before going live; the stream replays whatever is left. */
const HISTORY_PAGES = 50;

type Row = { event: HoldfastEvent; source: "history" | "live" };

export function eventsPage(root: HTMLElement): () => void {
  const type = h(
    "select",
    { id: "event-type" },
    h("option", { value: "" }, "all types"),
    EVENT_TYPES.map((t) => h("option", { value: t }, t)),
  );
  const resource = h("select", { id: "event-resource" }, h("option", { value: "" }, "all"));
  const status = h("p", { class: "hint", role: "status" });
  const problem = h("div");
  const list = h("div");
  root.replaceChildren(
    h("h2", {}, "Events"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "event-type" }, "Type ", type),
      h("label", { for: "event-resource" }, "Resource ", resource),
      status,
    ),
    problem,
    list,
  );

  let rows: Row[] = [];
  let seen = new Set<string>();
  let historyCount = 0;
  let state = "loading history";
  let controller: AbortController | undefined;
  let names = new Map<string, string>();

  function add(events: HoldfastEvent[], source: Row["source"]): void {
    for (const event of events) {
      // The cursor handover makes repeats impossible; the id makes sure.
      if (seen.has(event.id)) continue;
      seen.add(event.id);
      rows.unshift({ event, source });
      if (source === "history") historyCount++;
    }
    if (rows.length > KEEP) {
      for (const r of rows.splice(KEEP)) seen.delete(r.event.id);
    }
  }

  async function follow(filter: EventFilter | object, signal: AbortSignal): Promise<void> {
    let after = "";
    for (let page = 0; page < HISTORY_PAGES; page++) {
      const res = await api.events.listEvents({ after, filter, pageSize: PAGE_SIZE }, { signal });
      add(res.events, "history");
      after = res.nextCursor;
      render();
      if (res.events.length < PAGE_SIZE) break;
    }
    while (!signal.aborted) {
      try {
        state = "live";
        render();
        for await (const { event, cursor } of api.events.watchEvents(
          { after, filter, heartbeats: true },
          { signal },
        )) {
          // A heartbeat's cursor (no event) is past events the filter skipped.
          if (cursor) after = cursor;
          if (!event) continue;
          after = event.cursor;
          add([event], "live");
          render();
        }
      } catch (err) {
        if (signal.aborted) return;
        const e = ConnectError.from(err);
        if (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied) throw err;
        // A stream the server ended (stopping, or this page too slow) says
        // where to resume: past the events its filter skipped too, which
        // retention may delete before the page reconnects.
        after = resumeCursorOf(e) ?? after;
        // Retention deleted events after the cursor: read the history again.
        if (e.code === Code.FailedPrecondition) {
          setTimeout(start, 0);
          return;
        }
      }
      state = "reconnecting";
      render();
      await new Promise((resolve) => setTimeout(resolve, 2_000));
    }
  }

  function start(): void {
    controller?.abort();
    const c = new AbortController();
    controller = c;
    rows = [];
    seen = new Set();
    historyCount = 0;
    state = "loading history";
    replace(problem);
    render();
    const filter = {
      types: type.value ? [type.value] : [],
      resourceIds: resource.value ? [resource.value] : [],
    };
    follow(filter, c.signal).catch((err: unknown) => {
      if (c.signal.aborted) return;
      state = "stopped";
      replace(problem, problemView(problemOf(err), "UTC"));
      render();
    });
  }

  function render(): void {
    status.textContent = `${historyCount} from history${rows.length >= KEEP ? ` (the newest ${KEEP} shown)` : ""} · ${state}`;
    replace(
      list,
      rows.length
        ? h(
            "div",
            { class: "table-wrap" },
            h(
              "table",
              { class: "events" },
              h(
                "thead",
                {},
                h(
                  "tr",
                  {},
                  ["Time", "Type", "Booking", "Status", "Starts", "Resource"].map((t) =>
                    h("th", { scope: "col" }, t),
                  ),
                ),
              ),
              h(
                "tbody",
                {},
                rows.map(({ event: e, source }) =>
                  h(
                    "tr",
                    { "data-event": e.id, "data-type": e.type, "data-source": source },
                    h("td", {}, when(msOf(e.occurTime))),
                    h("td", {}, e.type),
                    h("td", { class: "mono" }, e.booking?.id ?? e.webhookId),
                    h(
                      "td",
                      {},
                      e.booking ? (BookingStatus[e.booking.status] ?? "").toLowerCase() : e.detail,
                    ),
                    h(
                      "td",
                      {},
                      e.booking
                        ? wallTime(msOf(e.booking.startTime), e.booking.timeZone || "UTC")
                        : "",
                    ),
                    h(
                      "td",
                      {},
                      e.booking ? (names.get(e.booking.resourceId) ?? e.booking.resourceId) : "",
                    ),
                  ),
                ),
              ),
            ),
          )
        : h("p", {}, state === "live" ? "No events yet; new ones appear here." : ""),
    );
  }

  type.addEventListener("change", start);
  resource.addEventListener("change", start);
  if (can(ResourceService.method.listResources)) {
    listAll(async (pageToken, pageSize) => {
      const res = await api.resources.listResources({ pageSize, pageToken, includeInactive: true });
      return { items: res.resources, next: res.nextPageToken };
    }, MAX_LISTED)
      .then(({ items: resources }) => {
        names = new Map(resources.map((r) => [r.id, r.name]));
        resource.append(...resources.map((r) => h("option", { value: r.id }, r.name)));
        render();
      })
      .catch(() => {});
  }
  start();
  return () => controller?.abort();
}

const when = (ms: number) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "");

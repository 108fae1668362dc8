import type { Temporal } from "temporal-polyfill";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { type Booking, BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService, type Service } from "../../gen/holdfast/v1/catalog_pb.js";
import type { Resource } from "../../gen/holdfast/v1/resource_pb.js";
import { api, can, once, type Problem, problemOf } from "./api.js";
import { h, replace } from "./dom.js";
import { onEvent, onLiveState } from "./live.js";
import {
  clock,
  countdown,
  dayLabel,
  dayStartMs,
  instantOfLocalInput,
  localInputOf,
  MINUTE,
  minuteOfDay,
  mondayOf,
  msOf,
  timestampFromMs,
  today,
  wallTime,
  zoned,
} from "./time.js";
import { closeDialog, openDialog, problemView } from "./ui.js";

/**
 * The week (or day) of one resource, on its own wall clock: working time
 * shaded, free slots to hold, bookings by status, live from the event
 * stream. Every action sends an Idempotency-Key.
 */

type View = "week" | "day";

const STATUS = {
  [BookingStatus.HELD]: "held",
  [BookingStatus.CONFIRMED]: "confirmed",
  [BookingStatus.CANCELLED]: "cancelled",
  [BookingStatus.EXPIRED]: "expired",
  [BookingStatus.COMPLETED]: "completed",
  [BookingStatus.NO_SHOW]: "no-show",
  [BookingStatus.UNSPECIFIED]: "unknown",
} as const;

const MAX_PAGES = 10;

export function calendarPage(root: HTMLElement): () => void {
  let resources: Resource[] = [];
  let services: Service[] = [];
  let resourceId = "";
  let serviceId = "";
  let view: View = window.matchMedia("(max-width: 700px)").matches ? "day" : "week";
  let anchor = today("UTC");
  let anchorZone = "";
  const bookings = new Map<string, Booking>();
  let slots: Slot[] = [];
  let problem: { p: Problem; retry?: (slot: Slot) => void } | undefined;
  let notice = "";
  let live = "off";
  let loadSeq = 0;

  const toolbar = h("div", { class: "toolbar" });
  const messages = h("div", { class: "messages", "aria-live": "polite" });
  const grid = h("div", { class: "cal-wrap" });
  root.replaceChildren(toolbar, messages, grid);

  const resource = () => resources.find((r) => r.id === resourceId);
  const zone = () => resource()?.timeZone || "UTC";
  const days = () => {
    const first = view === "week" ? mondayOf(anchor) : anchor;
    return Array.from({ length: view === "week" ? 7 : 1 }, (_, i) => first.add({ days: i }));
  };
  const range = () => {
    const d = days();
    const first = d[0] as Temporal.PlainDate;
    const last = d[d.length - 1] as Temporal.PlainDate;
    return { fromMs: dayStartMs(first, zone()), toMs: dayStartMs(last.add({ days: 1 }), zone()) };
  };

  async function loadCatalog(): Promise<void> {
    try {
      resources = (await api.resources.listResources({ pageSize: 100 })).resources;
      services = can(CatalogService.method.listServices)
        ? (await api.catalog.listServices({ pageSize: 100 })).services
        : [];
    } catch (err) {
      problem = { p: problemOf(err) };
    }
    resourceId = resources[0]?.id ?? "";
    pickService();
    await reload();
  }

  function pickService(): void {
    const offered = services.filter((s) => s.active && s.resourceIds.includes(resourceId));
    if (!offered.some((s) => s.id === serviceId)) serviceId = offered[0]?.id ?? "";
    if (anchorZone !== zone()) {
      anchor = today(zone());
      anchorZone = zone();
    }
  }

  async function reload(): Promise<void> {
    const seq = ++loadSeq;
    if (!resourceId) return render();
    const { fromMs, toMs } = range();
    const found = new Map<string, Booking>();
    try {
      let pageToken = "";
      for (let page = 0; page < MAX_PAGES; page++) {
        const res = await api.bookings.listBookings({
          resourceId,
          startTimeFrom: timestampFromMs(fromMs - 24 * 60 * MINUTE),
          startTimeTo: timestampFromMs(toMs),
          pageSize: 100,
          pageToken,
        });
        for (const b of res.bookings) found.set(b.id, b);
        pageToken = res.nextPageToken;
        if (!pageToken) break;
      }
      if (seq !== loadSeq) return;
      bookings.clear();
      for (const [id, b] of found) bookings.set(id, b);
      await reloadSlots(seq);
    } catch (err) {
      problem = { p: problemOf(err) };
    }
    if (seq === loadSeq) render();
  }

  async function reloadSlots(seq = loadSeq): Promise<void> {
    const { fromMs, toMs } = range();
    const startMs = Math.max(fromMs, Date.now());
    if (!serviceId || !can(AvailabilityService.method.listSlots) || startMs >= toMs) {
      slots = [];
      return;
    }
    const res = await api.availability.listSlots({
      serviceId,
      resourceIds: [resourceId],
      startTime: timestampFromMs(startMs),
      endTime: timestampFromMs(toMs),
      pageSize: 1000,
    });
    if (seq === loadSeq) slots = res.slots;
  }

  // Slots change with every booking event: refetch them at most every 300 ms.
  let slotTimer: ReturnType<typeof setTimeout> | undefined;
  function refreshSlotsSoon(): void {
    clearTimeout(slotTimer);
    slotTimer = setTimeout(() => {
      reloadSlots()
        .then(render)
        .catch((err: unknown) => {
          problem = { p: problemOf(err) };
          render();
        });
    }, 300);
  }

  function upsert(b: Booking | undefined): void {
    if (!b || b.resourceId !== resourceId) return;
    bookings.set(b.id, b);
  }

  // --- actions -----------------------------------------------------------

  async function act(what: string, call: () => Promise<{ booking?: Booking }>): Promise<boolean> {
    try {
      const { booking } = await call();
      upsert(booking);
      problem = undefined;
      notice = booking ? `${what}: ${describe(booking)}` : what;
      refreshSlotsSoon();
      render();
      return true;
    } catch (err) {
      problem = { p: problemOf(err) };
      notice = "";
      render();
      return false;
    }
  }

  function hold(slot: Slot): void {
    void act("Held", () => api.bookings.createHold({ slotId: slot.slotId }, once())).then((ok) => {
      if (!ok && problem) problem.retry = hold;
      render();
    });
  }

  function describe(b: Booking): string {
    return `${STATUS[b.status]} ${wallTime(msOf(b.startTime), b.timeZone || zone())}`;
  }

  function bookingDialog(b: Booking): void {
    const z = b.timeZone || zone();
    const status = STATUS[b.status];
    const startMs = msOf(b.startTime);
    const lengthMs = msOf(b.endTime) - startMs;
    const active = b.status === BookingStatus.HELD || b.status === BookingStatus.CONFIRMED;
    const dialogProblem = h("div", { class: "dialog-problem", "aria-live": "assertive" });
    const run = async (what: string, call: () => Promise<{ booking?: Booking }>) => {
      if (await act(what, call)) closeDialog();
      else if (problem) {
        replace(
          dialogProblem,
          problemView(problem.p, z, (slot) => reschedule(slot)),
        );
        problem = undefined;
        render();
      }
    };
    const reschedule = (slot?: Slot) => {
      const start = slot ? msOf(slot.startTime) : instantOfLocalInput(moveTo.value, z);
      void run("Moved", () =>
        api.bookings.rescheduleBooking(
          slot
            ? { bookingId: b.id, slotId: slot.slotId }
            : {
                bookingId: b.id,
                startTime: timestampFromMs(start),
                endTime: timestampFromMs(start + lengthMs),
              },
          once(),
        ),
      );
    };
    const reason = h("input", {
      type: "text",
      id: "cancel-reason",
      maxlength: 500,
      placeholder: "why (optional)",
    });
    const moveTo = h("input", {
      type: "datetime-local",
      id: "move-to",
      value: localInputOf(startMs, z),
      step: 60,
    });
    const write = can(BookingService.method.confirmBooking);
    openDialog(
      `${status.toUpperCase()} · ${serviceName(b.serviceId)}`,
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "When"),
        h("dd", {}, `${wallTime(startMs, z)}–${clock(zoned(msOf(b.endTime), z))} (${z})`),
        b.attendee && (b.attendee.name || b.attendee.email || b.attendee.phone)
          ? [
              h("dt", {}, "Attendee"),
              h(
                "dd",
                {},
                [b.attendee.name, b.attendee.email, b.attendee.phone].filter(Boolean).join(", "),
              ),
            ]
          : null,
        b.status === BookingStatus.HELD
          ? [
              h("dt", {}, "Expires in"),
              h("dd", { "data-expire": msOf(b.expireTime), class: "countdown" }, ""),
            ]
          : null,
        b.cancelReason ? [h("dt", {}, "Reason"), h("dd", {}, b.cancelReason)] : null,
        h("dt", {}, "Booking"),
        h("dd", { class: "mono" }, b.id),
      ),
      dialogProblem,
      write && active
        ? h(
            "div",
            { class: "actions" },
            b.status === BookingStatus.HELD
              ? [
                  h(
                    "button",
                    {
                      class: "primary",
                      onclick: () =>
                        run("Confirmed", () =>
                          api.bookings.confirmBooking({ bookingId: b.id }, once()),
                        ),
                    },
                    "Confirm",
                  ),
                  h(
                    "button",
                    {
                      onclick: () =>
                        run("Extended", () =>
                          api.bookings.extendHold(
                            { bookingId: b.id, ttl: { seconds: 300n, nanos: 0 } },
                            once(),
                          ),
                        ),
                    },
                    "Extend 5 min",
                  ),
                ]
              : null,
            h(
              "fieldset",
              {},
              h("legend", {}, "Cancel"),
              h("label", { for: "cancel-reason" }, "Reason"),
              reason,
              h(
                "button",
                {
                  class: "danger",
                  onclick: () =>
                    run("Cancelled", () =>
                      api.bookings.cancelBooking({ bookingId: b.id, reason: reason.value }, once()),
                    ),
                },
                "Cancel booking",
              ),
            ),
            h(
              "fieldset",
              {},
              h("legend", {}, "Reschedule"),
              h("label", { for: "move-to" }, `New start (${z})`),
              moveTo,
              h("button", { onclick: () => reschedule() }, "Move"),
            ),
          )
        : null,
    );
  }

  function serviceName(id: string): string {
    return services.find((s) => s.id === id)?.name ?? id;
  }

  // --- rendering ---------------------------------------------------------

  function render(): void {
    const z = zone();
    replace(
      toolbar,
      h(
        "label",
        { for: "resource" },
        "Resource ",
        h(
          "select",
          {
            id: "resource",
            "data-focus": "resource",
            onchange: (e: Event) => {
              resourceId = (e.target as HTMLSelectElement).value;
              pickService();
              void reload();
            },
          },
          resources.map((r) =>
            h(
              "option",
              { value: r.id, selected: r.id === resourceId },
              `${r.name} (${r.timeZone})`,
            ),
          ),
        ),
      ),
      services.length
        ? h(
            "label",
            { for: "service" },
            "Service ",
            h(
              "select",
              {
                id: "service",
                "data-focus": "service",
                onchange: (e: Event) => {
                  serviceId = (e.target as HTMLSelectElement).value;
                  void reload();
                },
              },
              services
                .filter((s) => s.resourceIds.includes(resourceId))
                .map((s) => h("option", { value: s.id, selected: s.id === serviceId }, s.name)),
            ),
          )
        : null,
      h(
        "div",
        { class: "nav-buttons", role: "group", "aria-label": "Move in time" },
        h(
          "button",
          {
            "data-focus": "prev",
            onclick: () => move(-1),
            "aria-label": "Previous",
            title: "Previous ([)",
          },
          "‹",
        ),
        h(
          "button",
          {
            "data-focus": "today",
            onclick: () => {
              anchor = today(z);
              void reload();
            },
          },
          "Today",
        ),
        h(
          "button",
          { "data-focus": "next", onclick: () => move(1), "aria-label": "Next", title: "Next (])" },
          "›",
        ),
      ),
      h(
        "div",
        { class: "nav-buttons", role: "group", "aria-label": "View" },
        (["week", "day"] as const).map((v) =>
          h(
            "button",
            {
              "data-focus": `view-${v}`,
              "aria-pressed": String(view === v),
              onclick: () => {
                view = v;
                void reload();
              },
            },
            v === "week" ? "Week" : "Day",
          ),
        ),
      ),
      h("span", { class: `live live-${live}`, title: "Event stream" }, live),
    );
    replace(
      messages,
      notice ? h("p", { class: "notice", role: "status" }, notice) : null,
      problem ? problemView(problem.p, z, problem.retry) : null,
      resources.length === 0 && !problem ? h("p", {}, "No resources yet.") : null,
    );
    const scrolledBefore = grid.querySelector(".cal-body")?.scrollTop;
    replace(grid, resource() ? week(z) : null);
    const body = grid.querySelector<HTMLElement>(".cal-body");
    if (body)
      body.scrollTop = scrolledBefore ?? firstWorkMinute() * (body.scrollHeight / (24 * 60));
    tick();
  }

  /** Where the day's view opens: a little before the earliest working time. */
  function firstWorkMinute(): number {
    const windows = resource()?.weeklySchedule?.windows ?? [];
    const starts = windows.map((w) => minutesOf(w.startTime));
    return Math.max(0, (starts.length ? Math.min(...starts) : 8 * 60) - 30);
  }

  function move(step: number): void {
    anchor = anchor.add({ days: step * (view === "week" ? 7 : 1) });
    void reload();
  }

  function week(z: string): HTMLElement {
    const r = resource() as Resource;
    const ds = days();
    const nowMs = Date.now();
    const writable = can(BookingService.method.createHold);
    const windows = r.weeklySchedule?.windows;
    const cal = h("div", {
      class: `cal cal-${view}`,
      role: "grid",
      "aria-label": `${r.name}, ${z}`,
    });
    cal.style.setProperty("--days", String(ds.length));
    const head = h("div", { class: "cal-head", role: "row" }, h("div", { class: "corner" }, z));
    const body = h("div", { class: "cal-body" });
    const hours = h("div", { class: "hours", "aria-hidden": "true" });
    for (let hr = 0; hr < 24; hr++) hours.append(h("div", {}, `${String(hr).padStart(2, "0")}:00`));
    body.append(hours);
    for (const d of ds) {
      const isToday = d.equals(today(z));
      head.append(
        h(
          "div",
          { class: isToday ? "day-head today" : "day-head", role: "columnheader" },
          dayLabel(d),
        ),
      );
      const col = h("div", { class: "day", role: "gridcell", "aria-label": dayLabel(d) });
      // Working time: the weekly windows of this weekday, or the whole day without a schedule.
      const work = windows
        ? windows
            .filter((w) => w.weekday === d.dayOfWeek)
            .map((w) => [minutesOf(w.startTime), minutesOf(w.endTime)] as const)
        : [[0, 24 * 60] as const];
      for (const [from, to] of work)
        col.append(place(h("div", { class: "work" }), from, to - from));
      const startMs = dayStartMs(d, z);
      const endMs = dayStartMs(d.add({ days: 1 }), z);
      // Free slots, without overlaps, so each is a separate target.
      let lastEnd = 0;
      for (const s of slots) {
        const sMs = msOf(s.startTime);
        if (sMs < startMs || sMs >= endMs || sMs < lastEnd) continue;
        lastEnd = msOf(s.endTime);
        const from = minuteOfDay(zoned(sMs, z));
        const label = `${clock(zoned(sMs, z))} free`;
        col.append(
          place(
            writable
              ? h(
                  "button",
                  {
                    class: "slot",
                    "data-focus": `slot-${s.slotId}`,
                    "data-start": sMs,
                    title: `Hold ${wallTime(sMs, z)}`,
                    "aria-label": `Hold ${wallTime(sMs, z)}`,
                    onclick: () => hold(s),
                  },
                  label,
                )
              : h("div", { class: "slot", "data-start": sMs }, label),
            from,
            (lastEnd - sMs) / MINUTE,
          ),
        );
      }
      const todays = [...bookings.values()]
        .filter((b) => msOf(b.startTime) < endMs && msOf(b.endTime) > startMs)
        .sort((a, b) => msOf(a.startTime) - msOf(b.startTime) || a.id.localeCompare(b.id));
      const lanes = laneOf(todays);
      const laneCount = Math.max(0, ...lanes.values()) + 1;
      for (const b of todays) {
        const bStart = Math.max(msOf(b.startTime), startMs);
        const bEnd = Math.min(msOf(b.endTime), endMs);
        const status = STATUS[b.status];
        const lapsed = b.status === BookingStatus.HELD && msOf(b.expireTime) <= nowMs;
        const el = h(
          "button",
          {
            class: `booking ${status}${lapsed ? " lapsed" : ""}`,
            "data-focus": `booking-${b.id}`,
            "data-booking": b.id,
            "data-status": status,
            onclick: () => bookingDialog(b),
          },
          h("span", { class: "b-status" }, status.toUpperCase()),
          " ",
          h("span", { class: "b-time" }, clock(zoned(msOf(b.startTime), z))),
          b.status === BookingStatus.HELD
            ? h("span", { class: "countdown", "data-expire": msOf(b.expireTime) }, "")
            : null,
          h("span", { class: "b-who" }, b.attendee?.name || serviceName(b.serviceId)),
        );
        el.setAttribute(
          "aria-label",
          `${status} ${wallTime(msOf(b.startTime), z)}, ${b.attendee?.name || serviceName(b.serviceId)}`,
        );
        place(el, minuteOfDay(zoned(bStart, z)), (bEnd - bStart) / MINUTE);
        const lane = lanes.get(b.id) ?? 0;
        el.style.left = `${(lane / laneCount) * 100}%`;
        el.style.width = `${100 / laneCount}%`;
        col.append(el);
      }
      if (isToday) {
        col.append(
          place(
            h("div", { class: "now-line", "aria-hidden": "true" }),
            minuteOfDay(zoned(nowMs, z)),
            0,
          ),
        );
      }
      body.append(col);
    }
    cal.append(head, body);
    return cal;
  }

  // Countdowns tick without re-rendering the week; a hold that runs out fades at once.
  function tick(): void {
    const nowMs = Date.now();
    let lapsedNow = false;
    for (const el of root.ownerDocument.querySelectorAll<HTMLElement>("[data-expire]")) {
      const left = countdown(Number(el.dataset.expire), nowMs);
      el.textContent = left || "lapsed";
      const card = el.closest(".booking");
      if (!left && card && !card.classList.contains("lapsed")) {
        card.classList.add("lapsed");
        lapsedNow = true;
      }
    }
    if (lapsedNow) refreshSlotsSoon();
  }
  const ticker = setInterval(tick, 1000);

  const onKey = (e: KeyboardEvent) => {
    const t = e.target as HTMLElement;
    if (t.closest("input, select, textarea, dialog")) return;
    if (e.key === "[") move(-1);
    else if (e.key === "]") move(1);
  };
  document.addEventListener("keydown", onKey);

  const offEvent = onEvent((e) => {
    if (!e.booking || e.booking.resourceId !== resourceId) {
      if (e.previousResourceId === resourceId && e.booking) bookings.delete(e.booking.id);
      else return;
    } else upsert(e.booking);
    refreshSlotsSoon();
    render();
  });
  const offLive = onLiveState((s) => {
    live = s;
    toolbar.querySelector(".live")?.replaceWith(h("span", { class: `live live-${s}` }, s));
  });
  // Without events.read the calendar cannot follow the stream: it polls.
  const poll = setInterval(() => {
    if (live !== "live") void reload();
  }, 5_000);

  void loadCatalog();
  return () => {
    clearInterval(ticker);
    clearInterval(poll);
    clearTimeout(slotTimer);
    document.removeEventListener("keydown", onKey);
    offEvent();
    offLive();
  };
}

function minutesOf(hhmm: string): number {
  const [hh, mm] = hhmm.split(":").map(Number);
  return (hh ?? 0) * 60 + (mm ?? 0);
}

/** Positions an element on the day's column by wall-clock minutes. */
function place<T extends HTMLElement>(el: T, fromMinute: number, lengthMinutes: number): T {
  el.style.top = `calc(var(--hour) * ${fromMinute / 60})`;
  el.style.height = `calc(var(--hour) * ${Math.max(lengthMinutes, 0) / 60})`;
  return el;
}

/** Side-by-side lanes for overlapping bookings: the first lane free at each start. */
function laneOf(sorted: Booking[]): Map<string, number> {
  const ends: number[] = [];
  const lanes = new Map<string, number>();
  for (const b of sorted) {
    const start = msOf(b.startTime);
    let lane = ends.findIndex((end) => end <= start);
    if (lane < 0) lane = ends.length;
    ends[lane] = msOf(b.endTime);
    lanes.set(b.id, lane);
  }
  return lanes;
}

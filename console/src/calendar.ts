import type { Temporal } from "temporal-polyfill";
import type { Slot } from "../../gen/holdfast/v1/availability_pb.js";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { type Booking, BookingService, BookingStatus } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService, type Service } from "../../gen/holdfast/v1/catalog_pb.js";
import {
  type Override,
  type Resource,
  ResourceService,
} from "../../gen/holdfast/v1/resource_pb.js";
import type { ResourceCalendar } from "../../src/domain/availability.js";
import { api, can, once, type Problem, problemOf } from "./api.js";
import { h, replace } from "./dom.js";
import { onEvent, onLiveState } from "./live.js";
import { listAll, MAX_LISTED } from "./paging.js";
import { calendarOf, shading } from "./schedule.js";
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
 * The week (or day) of one or several resources side by side, each on its
 * own wall clock: working time shaded, override blocks hatched, free slots
 * to hold, bookings by status, live from the event stream. A booking is
 * moved by dragging it onto a free slot (then confirming), or from its
 * dialog by keyboard. Every action sends an Idempotency-Key.
 */

type View = "week" | "day";

/** One column of the grid: a resource's local day. */
type Column = { resource: Resource; date: Temporal.PlainDate; zone: string };

const STATUS = {
  [BookingStatus.HELD]: "held",
  [BookingStatus.CONFIRMED]: "confirmed",
  [BookingStatus.CANCELLED]: "cancelled",
  [BookingStatus.EXPIRED]: "expired",
  [BookingStatus.COMPLETED]: "completed",
  [BookingStatus.NO_SHOW]: "no-show",
  [BookingStatus.UNSPECIFIED]: "unknown",
} as const;

/**
 * Bookings read per resource and view at most: a busier week shows the first
 * ones and says so. Cancelled and expired ones get what the others leave.
 */
export const MAX_BOOKINGS = 1000;
/** The statuses that hold time; the others are read after them, within the same bound. */
const OCCUPYING = [
  BookingStatus.HELD,
  BookingStatus.CONFIRMED,
  BookingStatus.COMPLETED,
  BookingStatus.NO_SHOW,
];
const LAPSED = [BookingStatus.CANCELLED, BookingStatus.EXPIRED];
/** Resources shown side by side at most. */
export const MAX_RESOURCES = 6;

// The choice of resources outlives a visit to another page.
let chosen: string[] = [];

export function calendarPage(root: HTMLElement): () => void {
  let resources: Resource[] = [];
  let services: Service[] = [];
  let serviceId = "";
  let view: View = window.matchMedia("(max-width: 700px)").matches ? "day" : "week";
  let anchor = today("UTC");
  let anchorZone = "";
  const bookings = new Map<string, Booking>();
  const calendars = new Map<string, ResourceCalendar>();
  let slots: Slot[] = [];
  let problem: { p: Problem; retry?: (slot: Slot) => void } | undefined;
  let notice = "";
  /** What the catalog's lists left out, said above the calendar. */
  let catalogCut: string[] = [];
  /** Resources whose overrides were cut off, said above the calendar. */
  let overridesCut: string[] = [];
  /** What the last reload left out, per resource: said above the calendar. */
  let cut: string[] = [];
  let live = "off";
  let loadSeq = 0;
  /**
   * Bookings changed by events or actions while a reload's list is in
   * flight: the list may have been read before them, and must not undo them.
   */
  const changedDuringReload = new Set<Map<string, Booking>>();

  const picker = h("details", { class: "picker" });
  const toolbar = h("div", { class: "toolbar" });
  const messages = h("div", { class: "messages", "aria-live": "polite" });
  const grid = h("div", { class: "cal-wrap" });
  root.replaceChildren(h("div", { class: "toolbar" }, picker, toolbar), messages, grid);

  const selected = () =>
    chosen
      .map((id) => resources.find((r) => r.id === id))
      .filter((r): r is Resource => r !== undefined);
  const zoneOf = (r: Resource | undefined) => r?.timeZone || "UTC";
  const firstZone = () => zoneOf(selected()[0]);
  const dates = () => {
    const first = view === "week" ? mondayOf(anchor) : anchor;
    return Array.from({ length: view === "week" ? 7 : 1 }, (_, i) => first.add({ days: i }));
  };
  const columns = (): Column[] =>
    dates().flatMap((date) =>
      selected().map((resource) => ({ resource, date, zone: zoneOf(resource) })),
    );
  const dayRange = (c: Column) => ({
    start: dayStartMs(c.date, c.zone),
    end: dayStartMs(c.date.add({ days: 1 }), c.zone),
  });
  /** From the earliest local midnight to the latest, over every zone shown. */
  const range = () => {
    const spans = columns().map(dayRange);
    return {
      fromMs: Math.min(...spans.map((s) => s.start)),
      toMs: Math.max(...spans.map((s) => s.end)),
    };
  };

  async function loadCatalog(): Promise<void> {
    try {
      catalogCut = [];
      const listedResources = await listAll(async (pageToken, pageSize) => {
        const res = await api.resources.listResources({ pageSize, pageToken });
        return { items: res.resources, next: res.nextPageToken };
      }, MAX_LISTED);
      resources = listedResources.items;
      if (listedResources.truncated)
        catalogCut.push(
          `Only the first ${MAX_LISTED.toLocaleString("en")} resources can be picked.`,
        );
      const listedServices = can(CatalogService.method.listServices)
        ? await listAll(async (pageToken, pageSize) => {
            const res = await api.catalog.listServices({ pageSize, pageToken });
            return { items: res.services, next: res.nextPageToken };
          }, MAX_LISTED)
        : { items: [], truncated: false };
      services = listedServices.items;
      if (listedServices.truncated)
        catalogCut.push(`Only the first ${MAX_LISTED.toLocaleString("en")} services are offered.`);
    } catch (err) {
      problem = { p: problemOf(err) };
    }
    chosen = chosen.filter((id) => resources.some((r) => r.id === id));
    if (chosen.length === 0 && resources[0]) chosen = [resources[0].id];
    renderPicker();
    await selectionChanged();
  }

  async function selectionChanged(): Promise<void> {
    const offered = offeredServices();
    if (!offered.some((s) => s.id === serviceId)) serviceId = offered[0]?.id ?? "";
    if (anchorZone !== firstZone()) {
      anchor = today(firstZone());
      anchorZone = firstZone();
    }
    await loadCalendars();
    await reload();
  }

  function offeredServices(): Service[] {
    return services.filter((s) => s.active && s.resourceIds.some((id) => chosen.includes(id)));
  }

  /** Each shown resource's schedule and overrides, for the shading. */
  async function loadCalendars(): Promise<void> {
    const readOverrides = can(ResourceService.method.listOverrides);
    const left: string[] = [];
    await Promise.all(
      selected().map(async (r) => {
        let overrides: Override[] = [];
        try {
          if (readOverrides) {
            const listed = await listAll(async (pageToken, pageSize) => {
              const res = await api.resources.listOverrides({
                resourceId: r.id,
                pageSize,
                pageToken,
              });
              return { items: res.overrides, next: res.nextPageToken };
            }, MAX_LISTED);
            overrides = listed.items;
            if (listed.truncated)
              left.push(
                `${r.name}: only the first ${MAX_LISTED.toLocaleString("en")} overrides are shaded.`,
              );
          }
        } catch (err) {
          problem = { p: problemOf(err) };
        }
        calendars.set(r.id, calendarOf(r, overrides));
      }),
    );
    overridesCut = left;
  }

  async function reload(): Promise<void> {
    const seq = ++loadSeq;
    if (chosen.length === 0) return render();
    const { fromMs, toMs } = range();
    const found = new Map<string, Booking>();
    const changed = new Map<string, Booking>();
    const left: string[] = [];
    changedDuringReload.add(changed);
    try {
      await Promise.all(
        chosen.map(async (resourceId) => {
          const read = (statuses: BookingStatus[], max: number) =>
            listAll(async (pageToken, pageSize) => {
              const res = await api.bookings.listBookings({
                resourceId,
                statuses,
                startTimeFrom: timestampFromMs(fromMs - 24 * 60 * MINUTE),
                startTimeTo: timestampFromMs(toMs),
                pageSize,
                pageToken,
              });
              return { items: res.bookings, next: res.nextPageToken };
            }, max);
          // Those holding time first, so lapsed ones never crowd them out.
          const occupying = await read(OCCUPYING, MAX_BOOKINGS);
          const room = MAX_BOOKINGS - occupying.items.length;
          // With no room left, one is read only to tell whether any is left out.
          const lapsed = await read(LAPSED, Math.max(room, 1));
          if (room === 0) lapsed.truncated ||= lapsed.items.splice(0).length > 0;
          for (const b of [...occupying.items, ...lapsed.items]) found.set(b.id, b);
          const name = resourceName(resourceId);
          const period = view === "week" ? "this week" : "this day";
          if (occupying.truncated)
            left.push(
              `${name}: showing the first ${MAX_BOOKINGS.toLocaleString("en")} bookings of ${period}; later ones are not shown${view === "week" ? ", narrow to one day" : ""}.`,
            );
          else if (lapsed.truncated)
            left.push(`${name}: some cancelled and expired bookings of ${period} are not shown.`);
        }),
      );
      if (seq !== loadSeq) return;
      cut = left;
      bookings.clear();
      for (const [id, b] of found) bookings.set(id, b);
      // A change that arrived meanwhile is newer than the list, unless the
      // list already shows a later one.
      for (const [id, b] of changed) {
        const listed = found.get(id);
        if (!listed || msOf(b.updateTime) >= msOf(listed.updateTime)) upsert(b);
      }
      await reloadSlots(seq);
    } catch (err) {
      problem = { p: problemOf(err) };
    } finally {
      changedDuringReload.delete(changed);
    }
    if (seq === loadSeq) render();
  }

  async function reloadSlots(seq = loadSeq): Promise<void> {
    const service = services.find((s) => s.id === serviceId);
    const resourceIds = chosen.filter((id) => service?.resourceIds.includes(id));
    const { fromMs, toMs } = chosen.length ? range() : { fromMs: 0, toMs: 0 };
    const startMs = Math.max(fromMs, Date.now());
    if (
      !service ||
      resourceIds.length === 0 ||
      !can(AvailabilityService.method.listSlots) ||
      startMs >= toMs
    ) {
      slots = [];
      return;
    }
    // A call's work is bounded: a page may come short with a token, so read
    // on until the week is searched or 5,000 slots are found.
    const found: Slot[] = [];
    let pageToken = "";
    do {
      const res = await api.availability.listSlots({
        serviceId,
        resourceIds,
        startTime: timestampFromMs(startMs),
        endTime: timestampFromMs(toMs),
        pageSize: 5000 - found.length,
        pageToken,
      });
      found.push(...res.slots);
      pageToken = res.nextPageToken;
    } while (pageToken && found.length < 5000 && seq === loadSeq);
    if (seq === loadSeq) slots = found;
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
    if (!b) return;
    for (const changed of changedDuringReload) changed.set(b.id, b);
    if (chosen.includes(b.resourceId)) bookings.set(b.id, b);
    else bookings.delete(b.id);
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

  /**
   * Runs an action from a dialog: closes it when done, else shows the
   * refusal in the dialog, its alternatives each a button for `retry`.
   */
  async function runInDialog(
    out: HTMLElement,
    zone: string,
    what: string,
    call: () => Promise<{ booking?: Booking }>,
    retry: (slot: Slot) => void,
  ): Promise<void> {
    if (await act(what, call)) closeDialog();
    else if (problem) {
      replace(out, problemView(problem.p, zone, retry));
      problem = undefined;
      render();
    }
  }

  function hold(slot: Slot): void {
    void act("Held", () => api.bookings.createHold({ slotId: slot.slotId }, once())).then((ok) => {
      if (!ok && problem) problem.retry = hold;
      render();
    });
  }

  function resourceName(id: string): string {
    return resources.find((r) => r.id === id)?.name ?? id;
  }

  function describe(b: Booking): string {
    const where = chosen.length > 1 ? ` · ${resourceName(b.resourceId)}` : "";
    return `${STATUS[b.status]} ${wallTime(msOf(b.startTime), b.timeZone || "UTC")}${where}`;
  }

  function moveToSlot(b: Booking, slot: Slot, out: HTMLElement): void {
    void runInDialog(
      out,
      slot.timeZone || b.timeZone,
      "Moved",
      () => api.bookings.rescheduleBooking({ bookingId: b.id, slotId: slot.slotId }, once()),
      (alternative) => moveToSlot(b, alternative, out),
    );
  }

  /** The confirm step of a drag: where from, where to, and Move or Keep. */
  function confirmMove(b: Booking, slot: Slot): void {
    const out = h("div", { class: "dialog-problem", "aria-live": "assertive" });
    const fromZone = b.timeZone || "UTC";
    const toZone = slot.timeZone || fromZone;
    const place = (resourceId: string, ms: number, zone: string) =>
      `${wallTime(ms, zone)} (${zone})${resourceId !== b.resourceId || chosen.length > 1 ? ` · ${resourceName(resourceId)}` : ""}`;
    openDialog(
      "Move this booking?",
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "From"),
        h("dd", { class: "move-from" }, place(b.resourceId, msOf(b.startTime), fromZone)),
        h("dt", {}, "To"),
        h("dd", { class: "move-to" }, place(slot.resourceId, msOf(slot.startTime), toZone)),
        b.attendee?.name ? [h("dt", {}, "Attendee"), h("dd", {}, b.attendee.name)] : null,
      ),
      out,
      h(
        "div",
        { class: "actions row" },
        h("button", { class: "primary", onclick: () => moveToSlot(b, slot, out) }, "Move"),
        h("button", { onclick: closeDialog }, "Keep it where it is"),
      ),
    );
  }

  function bookingDialog(b: Booking): void {
    const z = b.timeZone || "UTC";
    const status = STATUS[b.status];
    const startMs = msOf(b.startTime);
    const lengthMs = msOf(b.endTime) - startMs;
    const active = b.status === BookingStatus.HELD || b.status === BookingStatus.CONFIRMED;
    const dialogProblem = h("div", { class: "dialog-problem", "aria-live": "assertive" });
    const run = (what: string, call: () => Promise<{ booking?: Booking }>) =>
      runInDialog(dialogProblem, z, what, call, (slot) => moveToSlot(b, slot, dialogProblem));
    const reschedule = () => {
      const start = instantOfLocalInput(moveTo.value, z);
      void run("Moved", () =>
        api.bookings.rescheduleBooking(
          {
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
        h("dt", {}, "Resource"),
        h("dd", {}, resourceName(b.resourceId)),
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
              h("button", { onclick: reschedule }, "Move"),
            ),
          )
        : null,
    );
  }

  function serviceName(id: string): string {
    return services.find((s) => s.id === id)?.name ?? id;
  }

  // --- dragging a booking onto a free slot ---------------------------------

  type Drag = {
    booking: Booking;
    card: HTMLElement;
    x: number;
    y: number;
    ghost?: HTMLElement;
    over?: HTMLElement;
  };
  let drag: Drag | undefined;
  let renderWaiting = false;
  let swallowClick = false;

  const draggable = (b: Booking) =>
    can(BookingService.method.rescheduleBooking) &&
    (b.status === BookingStatus.HELD || b.status === BookingStatus.CONFIRMED) &&
    b.serviceId === serviceId;

  function startDrag(e: PointerEvent, b: Booking, card: HTMLElement): void {
    if (e.button !== 0 || !e.isPrimary) return;
    drag = { booking: b, card, x: e.clientX, y: e.clientY };
    // On the document, not the card: the pointer's moves are followed wherever they go.
    document.addEventListener("pointermove", moveDrag);
    document.addEventListener("pointerup", dropDrag);
    document.addEventListener("pointercancel", cancelDrag);
  }

  const dropDrag = () => endDrag(true);
  const cancelDrag = () => endDrag(false);

  function moveDrag(e: PointerEvent): void {
    if (!drag) return;
    if (!drag.ghost) {
      // A press that barely moves is a click, which opens the dialog.
      if (Math.hypot(e.clientX - drag.x, e.clientY - drag.y) < 6) return;
      const rect = drag.card.getBoundingClientRect();
      drag.ghost = drag.card.cloneNode(true) as HTMLElement;
      drag.ghost.classList.add("ghost");
      drag.ghost.removeAttribute("data-booking");
      drag.ghost.style.width = `${rect.width}px`;
      drag.ghost.style.height = `${rect.height}px`;
      document.body.append(drag.ghost);
      drag.card.classList.add("dragging");
      grid.classList.add("dragging");
    }
    drag.ghost.style.left = `${e.clientX + 8}px`;
    drag.ghost.style.top = `${e.clientY + 8}px`;
    const over = document
      .elementsFromPoint(e.clientX, e.clientY)
      .find((el): el is HTMLElement => el instanceof HTMLElement && el.matches(".slot[data-slot]"));
    if (over !== drag.over) {
      drag.over?.classList.remove("drop");
      over?.classList.add("drop");
      drag.over = over;
    }
  }

  function endDrag(drop: boolean): void {
    const d = drag;
    drag = undefined;
    document.removeEventListener("pointermove", moveDrag);
    document.removeEventListener("pointerup", dropDrag);
    document.removeEventListener("pointercancel", cancelDrag);
    if (!d) return;
    d.ghost?.remove();
    d.over?.classList.remove("drop");
    d.card.classList.remove("dragging");
    grid.classList.remove("dragging");
    if (d.ghost) {
      // The click that ends a drag is not a click on the booking.
      swallowClick = true;
      setTimeout(() => {
        swallowClick = false;
      }, 0);
    }
    const slot = drop && d.over ? slots.find((s) => s.slotId === d.over?.dataset.slot) : undefined;
    // After the click a press without a move makes, which opens the booking's dialog.
    if (renderWaiting) setTimeout(render, 0);
    if (slot) confirmMove(d.booking, slot);
  }

  // --- rendering ---------------------------------------------------------

  function renderPicker(): void {
    const names = selected().map((r) => r.name);
    replace(
      picker,
      h("summary", {}, `Resources: ${names.join(", ") || "none"}`),
      h(
        "fieldset",
        {},
        h("legend", {}, `Side by side, up to ${MAX_RESOURCES}`),
        resources.map((r) =>
          h(
            "label",
            {},
            h("input", {
              type: "checkbox",
              value: r.id,
              "data-focus": `pick-${r.id}`,
              checked: chosen.includes(r.id),
              disabled: !chosen.includes(r.id) && chosen.length >= MAX_RESOURCES,
              onchange: (e: Event) => {
                const box = e.target as HTMLInputElement;
                chosen = box.checked
                  ? resources.filter((x) => x.id === r.id || chosen.includes(x.id)).map((x) => x.id)
                  : chosen.filter((id) => id !== r.id);
                renderPicker();
                void selectionChanged();
              },
            }),
            ` ${r.name} `,
            h("span", { class: "zone" }, r.timeZone),
          ),
        ),
      ),
    );
  }

  function render(): void {
    // While a booking is pressed, its card stays put: the pointer may be starting a drag.
    if (drag) {
      renderWaiting = true;
      return;
    }
    renderWaiting = false;
    const z = firstZone();
    const offered = offeredServices();
    replace(
      toolbar,
      offered.length
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
              offered.map((s) =>
                h("option", { value: s.id, selected: s.id === serviceId }, s.name),
              ),
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
      [...catalogCut, ...overridesCut, ...cut].map((text) =>
        h("p", { class: "warning", "data-cut": "" }, text),
      ),
      problem ? problemView(problem.p, z, problem.retry) : null,
      resources.length === 0 && !problem ? h("p", {}, "No resources yet.") : null,
    );
    const scrolledBefore = grid.querySelector(".cal-body")?.scrollTop;
    replace(grid, selected().length ? calendar() : null);
    const body = grid.querySelector<HTMLElement>(".cal-body");
    if (body)
      body.scrollTop = scrolledBefore ?? firstWorkMinute() * (body.scrollHeight / (24 * 60));
    tick();
  }

  /** Where the day's view opens: a little before the earliest working time. */
  function firstWorkMinute(): number {
    const starts = selected().flatMap((r) =>
      (r.weeklySchedule?.windows ?? []).map((w) => minutesOf(w.startTime)),
    );
    return Math.max(0, (starts.length ? Math.min(...starts) : 8 * 60) - 30);
  }

  function move(step: number): void {
    anchor = anchor.add({ days: step * (view === "week" ? 7 : 1) });
    void reload();
  }

  function calendar(): HTMLElement {
    const shown = selected();
    const cols = columns();
    const zones = [...new Set(shown.map(zoneOf))];
    const several = shown.length > 1;
    const cal = h("div", {
      class: `cal cal-${view}${several ? " several" : ""}`,
      role: "grid",
      "aria-label": shown.map((r) => `${r.name}, ${zoneOf(r)}`).join("; "),
    });
    cal.style.setProperty("--cols", String(cols.length));
    cal.style.setProperty("--per-day", String(shown.length));
    const corner = h(
      "div",
      { class: "corner", title: zones.join(", ") },
      zones.length === 1 ? zones[0] : "each on its own clock",
    );
    const head = h("div", { class: "cal-head", role: "row" }, corner);
    if (several) {
      corner.style.gridRow = "span 2";
      for (const d of dates()) {
        const dayHead = h(
          "div",
          { class: d.equals(today(zones[0] ?? "UTC")) ? "day-head today" : "day-head" },
          dayLabel(d),
        );
        dayHead.style.gridColumn = `span ${shown.length}`;
        head.append(dayHead);
      }
      for (const c of cols) {
        head.append(
          h(
            "div",
            {
              class: "resource-head",
              role: "columnheader",
              title: `${c.resource.name} (${c.zone})`,
            },
            c.resource.name,
            zones.length > 1 ? h("span", { class: "zone" }, shortZone(c.zone)) : null,
          ),
        );
      }
    } else {
      for (const c of cols) {
        head.append(
          h(
            "div",
            {
              class: c.date.equals(today(c.zone)) ? "day-head today" : "day-head",
              role: "columnheader",
            },
            dayLabel(c.date),
          ),
        );
      }
    }
    const body = h("div", { class: "cal-body" });
    const hours = h("div", { class: "hours", "aria-hidden": "true" });
    for (let hr = 0; hr < 24; hr++) hours.append(h("div", {}, `${String(hr).padStart(2, "0")}:00`));
    body.append(hours);
    cols.forEach((c, i) => {
      body.append(column(c, several && i % shown.length === 0));
    });
    cal.append(head, body);
    return cal;
  }

  function column(c: Column, firstOfDay: boolean): HTMLElement {
    const z = c.zone;
    const nowMs = Date.now();
    const writable = can(BookingService.method.createHold);
    const { start: startMs, end: endMs } = dayRange(c);
    const label = `${c.resource.name}, ${dayLabel(c.date)}`;
    const col = h("div", {
      class: firstOfDay ? "day first-of-day" : "day",
      role: "gridcell",
      "aria-label": label,
      "data-resource": c.resource.id,
      "data-date": c.date.toString(),
    });
    const minuteAt = (ms: number) => (ms >= endMs ? 24 * 60 : minuteOfDay(zoned(ms, z)));
    // Working time and override blocks, as availability reads them.
    const calendar = calendars.get(c.resource.id);
    if (calendar) {
      const { open, blocks } = shading(calendar, { start: startMs, end: endMs });
      for (const i of open) {
        col.append(place(h("div", { class: "work" }), minuteAt(i.start), minuteAt(i.end)));
      }
      for (const b of blocks) {
        col.append(
          place(
            h(
              "div",
              {
                class: "block",
                title: `Blocked: ${b.title}`,
                "aria-label": `Blocked ${clock(zoned(b.span.start, z))}–${b.span.end >= endMs ? "24:00" : clock(zoned(b.span.end, z))}: ${b.title}`,
              },
              h("span", {}, b.title),
            ),
            minuteAt(b.span.start),
            minuteAt(b.span.end),
          ),
        );
      }
    }
    // Free slots, without overlaps, so each is a separate target.
    let lastEnd = 0;
    for (const s of slots) {
      const sMs = msOf(s.startTime);
      if (s.resourceId !== c.resource.id || sMs < startMs || sMs >= endMs || sMs < lastEnd)
        continue;
      lastEnd = msOf(s.endTime);
      const text = `${clock(zoned(sMs, z))} free`;
      const what = `${wallTime(sMs, z)}${selected().length > 1 ? ` with ${c.resource.name}` : ""}`;
      col.append(
        place(
          writable
            ? h(
                "button",
                {
                  class: "slot",
                  "data-focus": `slot-${s.slotId}`,
                  "data-start": sMs,
                  "data-slot": s.slotId,
                  title: `Hold ${what}`,
                  "aria-label": `Hold ${what}`,
                  onclick: () => hold(s),
                },
                text,
              )
            : h("div", { class: "slot", "data-start": sMs }, text),
          minuteAt(sMs),
          minuteAt(Math.min(lastEnd, endMs)),
        ),
      );
    }
    const todays = [...bookings.values()]
      .filter(
        (b) =>
          b.resourceId === c.resource.id && msOf(b.startTime) < endMs && msOf(b.endTime) > startMs,
      )
      .sort((a, b) => msOf(a.startTime) - msOf(b.startTime) || a.id.localeCompare(b.id));
    const lanes = laneOf(todays);
    const laneCount = Math.max(0, ...lanes.values()) + 1;
    for (const b of todays) {
      const bStart = Math.max(msOf(b.startTime), startMs);
      const bEnd = Math.min(msOf(b.endTime), endMs);
      const status = STATUS[b.status];
      const lapsed = b.status === BookingStatus.HELD && msOf(b.expireTime) <= nowMs;
      const who = b.attendee?.name || serviceName(b.serviceId);
      const canDrag = draggable(b);
      const el = h(
        "button",
        {
          class: `booking ${status}${lapsed ? " lapsed" : ""}${canDrag ? " movable" : ""}`,
          "data-focus": `booking-${b.id}`,
          "data-booking": b.id,
          "data-status": status,
          title: `${status} ${wallTime(msOf(b.startTime), z)}, ${who}${canDrag ? " (drag onto a free slot to move)" : ""}`,
          onclick: () => {
            if (swallowClick) swallowClick = false;
            else bookingDialog(b);
          },
        },
        h("span", { class: "b-status" }, status.toUpperCase()),
        " ",
        h("span", { class: "b-time" }, clock(zoned(msOf(b.startTime), z))),
        b.status === BookingStatus.HELD
          ? h("span", { class: "countdown", "data-expire": msOf(b.expireTime) }, "")
          : null,
        h("span", { class: "b-who" }, who),
      );
      el.setAttribute("aria-label", `${status} ${wallTime(msOf(b.startTime), z)}, ${who}`);
      if (canDrag) {
        el.addEventListener("pointerdown", (e) => startDrag(e, b, el));
      }
      place(el, minuteAt(bStart), minuteAt(bEnd));
      const lane = lanes.get(b.id) ?? 0;
      el.style.left = `${(lane / laneCount) * 100}%`;
      el.style.width = `${100 / laneCount}%`;
      col.append(el);
    }
    if (c.date.equals(today(z))) {
      const now = minuteOfDay(zoned(nowMs, z));
      col.append(place(h("div", { class: "now-line", "aria-hidden": "true" }), now, now));
    }
    return col;
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
    if (e.key === "Escape" && drag) return endDrag(false);
    if (t.closest("input, select, textarea, dialog")) return;
    if (e.key === "[") move(-1);
    else if (e.key === "]") move(1);
  };
  document.addEventListener("keydown", onKey);

  const offEvent = onEvent((e) => {
    const b = e.booking;
    if (!b) return;
    if (!chosen.includes(b.resourceId) && !chosen.includes(e.previousResourceId)) return;
    upsert(b);
    refreshSlotsSoon();
    render();
  });
  const offLive = onLiveState((s) => {
    live = s;
    toolbar.querySelector(".live")?.replaceWith(h("span", { class: `live live-${s}` }, s));
  });
  // Without events.read the calendar cannot follow the stream: it polls.
  const poll = setInterval(() => {
    if (live !== "live" && !drag) void reload();
  }, 5_000);

  void loadCatalog();
  return () => {
    clearInterval(ticker);
    clearInterval(poll);
    clearTimeout(slotTimer);
    endDrag(false);
    document.removeEventListener("keydown", onKey);
    offEvent();
    offLive();
  };
}

function minutesOf(hhmm: string): number {
  const [hh, mm] = hhmm.split(":").map(Number);
  return (hh ?? 0) * 60 + (mm ?? 0);
}

/** "America/New_York" as "New York". */
function shortZone(zone: string): string {
  return (zone.split("/").pop() ?? zone).replaceAll("_", " ");
}

/** Positions an element on the day's column between two wall-clock minutes. */
function place<T extends HTMLElement>(el: T, fromMinute: number, toMinute: number): T {
  el.style.top = `calc(var(--hour) * ${fromMinute / 60})`;
  el.style.height = `calc(var(--hour) * ${Math.max(toMinute - fromMinute, 0) / 60})`;
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

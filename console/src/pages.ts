import { CalendarFeedService } from "../../gen/holdfast/v1/calendar_feed_pb.js";
import type { Service } from "../../gen/holdfast/v1/catalog_pb.js";
import {
  type Override,
  OverrideKind,
  RecurrenceFrequency,
  type Resource,
  ResourceKind,
  ResourceService,
} from "../../gen/holdfast/v1/resource_pb.js";
import {
  type Delivery,
  DeliveryStatus,
  type Webhook,
  WebhookState,
} from "../../gen/holdfast/v1/webhook_pb.js";
import { api, can, once, problemOf, session } from "./api.js";
import { h, replace } from "./dom.js";
import { cutNote, listAll, MAX_LISTED } from "./paging.js";
import { msOf } from "./time.js";
import { problemView } from "./ui.js";

/** The console's other pages: catalog, webhooks, API keys. */

const when = (ms: number) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "");
const enumName = (e: Record<number, string>, v: number, prefix: string) =>
  (e[v] ?? "").replace(prefix, "").toLowerCase();

function table(headers: string[], rows: Node[][]): HTMLElement {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          headers.map((t) => h("th", { scope: "col" }, t)),
        ),
      ),
      h(
        "tbody",
        {},
        rows.map((cells) =>
          h(
            "tr",
            {},
            cells.map((c) => h("td", {}, c)),
          ),
        ),
      ),
    ),
  );
}

const text = (s: string | number) => document.createTextNode(String(s));

/** Said under a list cut off at its bound, so what is left out does not look absent. */
const cutOff = (note: string) => (note ? h("p", { class: "warning", "data-cut": "" }, note) : null);

/** Newest-first logs show one page: they say when older entries exist. */
const NEWEST = 50;

/** Runs `work`, showing its error (reason and message) in `out` instead of throwing. */
async function guarded(out: HTMLElement, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    replace(out, problemView(problemOf(err), "UTC"));
  }
}

// --- resources and services -----------------------------------------------

export function catalogPage(root: HTMLElement): () => void {
  const out = h("div");
  const detail = h("div", { class: "detail", "aria-live": "polite" });
  root.replaceChildren(h("h2", {}, "Resources and services"), out, detail);
  void guarded(out, async () => {
    const listedResources = await listAll(async (pageToken, pageSize) => {
      const res = await api.resources.listResources({ pageSize, pageToken, includeInactive: true });
      return { items: res.resources, next: res.nextPageToken };
    }, MAX_LISTED);
    const listedServices = await listAll(async (pageToken, pageSize) => {
      const res = await api.catalog.listServices({ pageSize, pageToken, includeInactive: true });
      return { items: res.services, next: res.nextPageToken };
    }, MAX_LISTED);
    const resources = listedResources.items;
    const services = listedServices.items;
    replace(
      out,
      h("h3", {}, "Resources"),
      cutOff(cutNote(listedResources, "resources")),
      table(
        ["Name", "Kind", "Time zone", "Capacity", "Working time", "Active", ""],
        resources.map((r) => [
          text(r.name),
          text(enumName(ResourceKind, r.kind, "RESOURCE_KIND_")),
          text(r.timeZone),
          text(r.capacity),
          text(scheduleText(r)),
          text(r.active ? "yes" : "no"),
          h(
            "span",
            { class: "row-actions" },
            h("button", { onclick: () => showOverrides(r) }, "Overrides"),
            can(CalendarFeedService.method.createCalendarFeed)
              ? h(
                  "button",
                  { onclick: () => newFeed({ resourceId: r.id }, r.name) },
                  "Calendar feed",
                )
              : null,
          ),
        ]),
      ),
      h("h3", {}, "Services"),
      cutOff(cutNote(listedServices, "services")),
      table(
        ["Name", "Resources", "Durations", "Hold", "Policy", "Active", ""],
        services.map((s) => [
          text(s.name),
          text(
            s.resourceIds.map((id) => resources.find((r) => r.id === id)?.name ?? id).join(", "),
          ),
          text((s.policy?.durations ?? []).map((d) => `${Number(d.seconds) / 60} min`).join(", ")),
          text(s.policy?.holdTtl ? `${Number(s.policy.holdTtl.seconds)} s` : ""),
          text(`v${s.policyVersion}`),
          text(s.active ? "yes" : "no"),
          h(
            "span",
            { class: "row-actions" },
            h("button", { onclick: () => showVersions(s) }, "Policy versions"),
            can(CalendarFeedService.method.createCalendarFeed)
              ? h(
                  "button",
                  { onclick: () => newFeed({ serviceId: s.id }, s.name) },
                  "Calendar feed",
                )
              : null,
          ),
        ]),
      ),
    );
  });

  function showOverrides(r: Resource): void {
    const manage = can(ResourceService.method.createOverride);
    void guarded(detail, async () => {
      const listed = await listAll(async (pageToken, pageSize) => {
        const res = await api.resources.listOverrides({ resourceId: r.id, pageSize, pageToken });
        return { items: res.overrides, next: res.nextPageToken };
      }, MAX_LISTED);
      const overrides = listed.items;
      const problem = h("div", { "aria-live": "polite" });
      replace(
        detail,
        h("h3", {}, `Overrides of ${r.name}`),
        cutOff(cutNote(listed, "overrides")),
        overrides.length
          ? table(
              ["Kind", "Title", "From", "To", "Times", "Repeats", ...(manage ? [""] : [])],
              overrides.map((o) => [
                text(o.kind === OverrideKind.BLOCK ? "block" : "open"),
                text(o.title),
                text(o.startDate),
                text(o.endDate),
                text(o.allDay ? "all day" : `${o.startTime}–${o.endTime}`),
                text(repeatsText(o)),
                ...(manage
                  ? [
                      h(
                        "button",
                        {
                          class: "danger",
                          onclick: () =>
                            guarded(problem, async () => {
                              if (!confirm(`Delete the override "${o.title || o.startDate}"?`))
                                return;
                              await api.resources.deleteOverride(
                                { resourceId: r.id, overrideId: o.id },
                                once(),
                              );
                              showOverrides(r);
                            }),
                        },
                        "Delete",
                      ),
                    ]
                  : []),
              ]),
            )
          : h("p", {}, "None."),
        problem,
        manage ? overrideForm(r, problem) : null,
      );
    });
  }

  /**
   * A form adding an override to `r`: a day or days from-to, once or
   * repeating weekly (on chosen weekdays) or monthly (on the start date's
   * day of the month); the server checks it.
   */
  function overrideForm(r: Resource, problem: HTMLElement): HTMLElement {
    const field = (label: string, input: HTMLInputElement | HTMLSelectElement) =>
      h("label", {}, `${label} `, input);
    const kind = h(
      "select",
      {},
      h("option", { value: String(OverrideKind.BLOCK) }, "block (closed)"),
      h("option", { value: String(OverrideKind.OPEN) }, "open (extra time)"),
    );
    const title = h("input", { type: "text", maxlength: 200 });
    const from = h("input", { type: "date", required: true });
    const to = h("input", { type: "date" });
    const allDay = h("input", { type: "checkbox", checked: true });
    const startTime = h("input", { type: "time" });
    const endTime = h("input", { type: "time" });
    const repeats = h(
      "select",
      {},
      h("option", { value: "" }, "never"),
      h("option", { value: String(RecurrenceFrequency.WEEKLY) }, "weekly"),
      h(
        "option",
        { value: String(RecurrenceFrequency.MONTHLY) },
        "monthly, on the start date's day",
      ),
    );
    const every = h("input", { type: "number", min: 1, max: 99, value: 1 });
    const weekdays = WEEKDAYS.map((name, i) =>
      h("input", { type: "checkbox", value: i + 1, "aria-label": name }),
    );
    const until = h("input", { type: "date" });
    const recurrence = () => {
      const frequency = Number(repeats.value);
      if (!frequency) return undefined;
      return {
        frequency,
        interval: Number(every.value) || 1,
        weekdays:
          frequency === RecurrenceFrequency.WEEKLY
            ? weekdays.filter((c) => c.checked).map((c) => Number(c.value))
            : [],
        monthDay:
          frequency === RecurrenceFrequency.MONTHLY ? Number(from.value.slice(8, 10)) || 0 : 0,
        until: until.value,
      };
    };
    return h(
      "form",
      {
        class: "card",
        onsubmit: (e: Event) => {
          e.preventDefault();
          void guarded(problem, async () => {
            await api.resources.createOverride(
              {
                resourceId: r.id,
                kind: Number(kind.value),
                title: title.value,
                startDate: from.value,
                endDate: to.value,
                allDay: allDay.checked,
                startTime: allDay.checked ? "" : startTime.value,
                endTime: allDay.checked ? "" : endTime.value,
                recurrence: recurrence(),
              },
              once(),
            );
            showOverrides(r);
          });
        },
      },
      h("h3", {}, "New override"),
      field("Kind", kind),
      field("Title", title),
      field("From", from),
      field("To", to),
      field("All day", allDay),
      field("Starts", startTime),
      field("Ends", endTime),
      field("Repeats", repeats),
      field("Every (weeks or months)", every),
      h(
        "fieldset",
        {},
        h("legend", {}, "On (weekly; none: the start date's weekday)"),
        weekdays.map((c) => h("label", {}, c, ` ${c.getAttribute("aria-label")}`)),
      ),
      field("Until", until),
      h("button", { type: "submit", class: "primary" }, "Add override"),
    );
  }

  function showVersions(s: Service): void {
    void guarded(detail, async () => {
      const listed = await listAll(async (pageToken, pageSize) => {
        const res = await api.catalog.listPolicyVersions({ serviceId: s.id, pageSize, pageToken });
        return { items: res.versions, next: res.nextPageToken };
      }, NEWEST);
      const versions = listed.items;
      replace(
        detail,
        h("h3", {}, `Policy versions of ${s.name}`),
        cutOff(
          listed.truncated ? `The newest ${NEWEST} versions are shown; older ones are not.` : "",
        ),
        table(
          ["Version", "Since", "Durations", "Buffers", "Notice"],
          versions.map((v) => [
            text(`v${v.version}`),
            text(when(msOf(v.createTime))),
            text(
              (v.policy?.durations ?? []).map((d) => `${Number(d.seconds) / 60} min`).join(", "),
            ),
            text(
              `${Number(v.policy?.bufferBefore?.seconds ?? 0) / 60} / ${Number(v.policy?.bufferAfter?.seconds ?? 0) / 60} min`,
            ),
            text(`${Number(v.policy?.minNotice?.seconds ?? 0) / 60} min`),
          ]),
        ),
      );
    });
  }

  function newFeed(subject: { resourceId?: string; serviceId?: string }, name: string): void {
    void guarded(detail, async () => {
      const { urlPath } = await api.feeds.createCalendarFeed(
        { ...subject, includeHolds: true, description: `console: ${name}` },
        once(),
      );
      const url = `${location.origin}${urlPath}`;
      replace(
        detail,
        h("h3", {}, `Calendar feed of ${name}`),
        h(
          "p",
          {},
          "Subscribe to this URL in a calendar app. It is shown only now; anyone with it can read the feed.",
        ),
        h("input", {
          type: "text",
          readonly: true,
          value: url,
          class: "secret",
          "aria-label": "Feed URL",
        }),
      );
    });
  }

  return () => {};
}

function scheduleText(r: Resource): string {
  const windows = r.weeklySchedule?.windows;
  if (!windows) return "all hours";
  if (windows.length === 0) return "none";
  return windows.map((w) => `${WEEKDAYS[w.weekday - 1]} ${w.startTime}–${w.endTime}`).join(", ");
}

// --- webhooks -------------------------------------------------------------

export function webhooksPage(root: HTMLElement): () => void {
  const out = h("div");
  const detail = h("div", { class: "detail", "aria-live": "polite" });
  root.replaceChildren(h("h2", {}, "Webhooks"), out, detail);
  // The delivery log shown follows its deliveries: attempts and retries appear as they happen.
  let shown: Webhook | undefined;
  const follow = setInterval(() => {
    if (shown) void deliveries(shown);
  }, 2_000);
  const load = () =>
    guarded(out, async () => {
      const listed = await listAll(async (pageToken, pageSize) => {
        const res = await api.webhooks.listWebhooks({ pageSize, pageToken });
        return { items: res.webhooks, next: res.nextPageToken };
      }, MAX_LISTED);
      const webhooks = listed.items;
      replace(
        out,
        cutOff(cutNote(listed, "webhooks")),
        webhooks.length
          ? table(
              ["URL", "Events", "State", "Failures", ""],
              webhooks.map((w) => [
                h("span", { class: "mono" }, w.url),
                text(w.eventTypes.join(", ")),
                text(
                  enumName(WebhookState, w.state, "WEBHOOK_STATE_") +
                    (w.disabledReason ? `: ${w.disabledReason}` : ""),
                ),
                text(w.consecutiveFailures),
                h(
                  "button",
                  {
                    "data-focus": `deliveries-${w.id}`,
                    onclick: () => {
                      shown = w;
                      void deliveries(w);
                    },
                  },
                  "Deliveries",
                ),
              ]),
            )
          : h("p", {}, "No webhooks."),
      );
    });
  const deliveries = (w: Webhook) =>
    guarded(detail, async () => {
      const listed = await listAll(async (pageToken, pageSize) => {
        const res = await api.webhooks.listDeliveries({ webhookId: w.id, pageSize, pageToken });
        return { items: res.deliveries, next: res.nextPageToken };
      }, NEWEST);
      const res = { deliveries: listed.items };
      replace(
        detail,
        h("h3", {}, `Deliveries to ${w.url}`),
        cutOff(
          listed.truncated ? `The newest ${NEWEST} deliveries are shown; older ones are not.` : "",
        ),
        res.deliveries.length
          ? table(
              ["Created", "Event", "Status", "Attempts", "Next attempt", ""],
              res.deliveries.map((d) => [
                text(when(msOf(d.createTime))),
                text(d.eventType),
                h(
                  "span",
                  { "data-delivery": d.id, class: "delivery-status" },
                  enumName(DeliveryStatus, d.status, "DELIVERY_STATUS_"),
                ),
                text(attemptsText(d)),
                text(when(msOf(d.nextAttemptTime))),
                d.status === DeliveryStatus.SUCCEEDED
                  ? text("")
                  : h(
                      "button",
                      {
                        "data-focus": `retry-${d.id}`,
                        onclick: () =>
                          guarded(detail, async () => {
                            await api.webhooks.retryDelivery(
                              { webhookId: w.id, deliveryId: d.id },
                              once(),
                            );
                            await deliveries(w);
                          }),
                      },
                      "Retry now",
                    ),
              ]),
            )
          : h("p", {}, "No deliveries yet."),
      );
    });
  void load();
  return () => clearInterval(follow);
}

/** Weekday n (1 = Monday ... 7 = Sunday, as the API numbers them) is WEEKDAYS[n - 1]. */
const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const ORDINALS: Record<number, string> = {
  1: "first",
  2: "second",
  3: "third",
  4: "fourth",
  5: "fifth",
};

/** How an override repeats, in words: "" when it does not. */
function repeatsText(o: Override): string {
  const r = o.recurrence;
  if (!r?.frequency) return "";
  const weekly = r.frequency === RecurrenceFrequency.WEEKLY;
  const every = r.interval > 1 ? ` every ${r.interval} ${weekly ? "weeks" : "months"}` : "";
  // A weekly one without weekdays repeats on its start date's.
  const days = r.weekdays.length
    ? r.weekdays
    : [new Date(`${o.startDate}T00:00:00Z`).getUTCDay() || 7];
  const on = weekly
    ? days.map((d) => WEEKDAYS[d - 1]).join(", ")
    : r.monthDay
      ? `on day ${r.monthDay}`
      : `on the ${ORDINALS[r.weekOfMonth] ?? "last"} ${WEEKDAYS[r.weekday - 1]}`;
  return [`${weekly ? "weekly" : "monthly"}${every}`, on, r.until ? `until ${r.until}` : ""]
    .filter(Boolean)
    .join(" ");
}

function attemptsText(d: Delivery): string {
  return d.attempts
    .map((a) => (a.error ? `${a.statusCode || "–"} ${a.error}` : String(a.statusCode)))
    .join("; ");
}

// --- API keys -------------------------------------------------------------

export function keysPage(root: HTMLElement): () => void {
  const out = h("div");
  const created = h("div", { "aria-live": "polite" });
  const description = h("input", { type: "text", id: "key-description", maxlength: 500 });
  const scopes = session.scopes
    .filter((s) => s !== "tenants.manage")
    .map((s) => h("input", { type: "checkbox", value: s, id: `scope-${s}` }));
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: (e: Event) => {
        e.preventDefault();
        void guarded(created, async () => {
          const res = await api.keys.createApiKey(
            {
              scopes: scopes.filter((c) => c.checked).map((c) => c.value),
              description: description.value,
            },
            once(),
          );
          replace(
            created,
            h("p", {}, "The new key, shown only now:"),
            h("input", {
              type: "text",
              readonly: true,
              value: res.apiKey,
              class: "secret",
              "aria-label": "New API key",
            }),
          );
          await load();
        });
      },
    },
    h("h3", {}, "New key"),
    h(
      "fieldset",
      {},
      h("legend", {}, "Scopes"),
      scopes.map((c) => h("label", { for: c.id }, c, ` ${c.value}`)),
    ),
    h("label", { for: "key-description" }, "Description "),
    description,
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );
  root.replaceChildren(h("h2", {}, "API keys"), form, created, out);
  const load = () =>
    guarded(out, async () => {
      const listed = await listAll(async (pageToken, pageSize) => {
        const res = await api.keys.listApiKeys({ pageSize, pageToken });
        return { items: res.keys, next: res.nextPageToken };
      }, MAX_LISTED);
      const keys = listed.items;
      replace(
        out,
        cutOff(cutNote(listed, "API keys")),
        table(
          ["Prefix", "Scopes", "Description", "Created", ""],
          keys.map((k) => [
            h("span", { class: "mono" }, `${k.prefix}…`),
            text(k.scopes.join(", ")),
            text(k.description),
            text(when(msOf(k.createTime))),
            k.id === session.keyId
              ? text("this key")
              : h(
                  "button",
                  {
                    class: "danger",
                    onclick: () =>
                      guarded(out, async () => {
                        if (!confirm(`Revoke ${k.prefix}…? It stops working at once.`)) return;
                        await api.keys.revokeApiKey({ apiKeyId: k.id }, once());
                        await load();
                      }),
                  },
                  "Revoke",
                ),
          ]),
        ),
      );
    });
  void load();
  return () => {};
}

import type { DescMethod } from "@bufbuild/protobuf";
import { type Duration, durationFromMs, timestampFromMs } from "@bufbuild/protobuf/wkt";
import type { CallToolResult, Tool } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { AvailabilityService } from "../../gen/holdfast/v1/availability_pb.js";
import { type Booking, BookingService } from "../../gen/holdfast/v1/booking_pb.js";
import { CatalogService } from "../../gen/holdfast/v1/catalog_pb.js";
import { ResourceKind, ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { slotFollows } from "../domain/availability.js";
import { MAX_SERVICE_RESOURCES } from "../domain/catalog.js";
import { DAY_MS, isCalendarDate, localDateTime, MINUTE_MS } from "../domain/time.js";
import { ANY_SCOPE, requiredScopeOf } from "../rpc/auth.js";
import { BOOKING_STATUS, msOfDuration, msOfTimestamp } from "../rpc/convert.js";
import { MAX_PAGE_SIZE as MAX_RESOURCES_PAGE } from "../rpc/paging.js";
import { instantText } from "../zod-messages.js";
import type { McpApi } from "./api.js";
import {
  badArgument,
  bookingView,
  describeBooking,
  type FailureView,
  failed,
  failureOf,
  ok,
  PAST_HINT,
  type SlotView,
  slotView,
  ToolFailure,
} from "./results.js";
import { retrySafe } from "./retry-safety.js";
import { localDayRange, NOT_A_DATE, readTime, TIME_FORMATS } from "./times.js";

/**
 * The Holdfast tools for MCP clients. Each tool calls one RPC of the API
 * (plus reads that help it), through the caller's own key: a tool is listed
 * only when the key holds that RPC's `required_scope` from the proto.
 */

type ToolDef<S extends z.ZodObject> = {
  name: string;
  /** The RPC the tool exists for; its required_scope decides who sees the tool. */
  rpc: DescMethod;
  title: string;
  description: string;
  input: S;
  readOnly: boolean;
  run(api: McpApi, args: z.infer<S>): Promise<CallToolResult>;
};

const id = (what: string) => z.string().min(1).max(200).describe(what);
const notATime = `is not a time: give ${TIME_FORMATS}`;
const time = (what: string) =>
  z.string().min(1, notATime).max(64, notATime).describe(`${what} ${TIME_FORMATS}.`);
const idempotencyKey = z
  .string()
  .min(1)
  .max(255)
  .optional()
  .describe(
    "Optional. A unique string for this one request (e.g. a UUID); send the same value when you retry the same request. Without it, a retry with identical arguments is still recognised and never books twice.",
  );
/** Labels of the agent's own on a booking, and the same shape as a filter. */
const labels = (what: string) =>
  z
    .record(z.string().min(1).max(64), z.string().max(500))
    .refine((o) => Object.keys(o).length <= 20, "at most 20 labels")
    // The refinement does not reach the JSON schema; the bound must.
    .meta({ maxProperties: 20 })
    .optional()
    .describe(what);
const durationMinutes = (fallback: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(1440)
    .optional()
    .describe(`Length in minutes; one of the service's durations. Default: ${fallback}.`);

const limitArg = (what: string, max: number, fallback: number) =>
  z
    .number()
    .int()
    .min(1)
    .max(max)
    .optional()
    .describe(`Most ${what} to return, 1 to ${max}. Default ${fallback}.`);
const pageTokenArg = (tool: string) =>
  z.string().max(4096).optional().describe(`From a previous ${tool} answer.`);

const slotIdArg = id(
  "A slot_id copied exactly from find_slots or from the `alternatives` of a failure.",
);

function methodOf(service: { method: Record<string, DescMethod> }, name: string): DescMethod {
  return service.method[name] as DescMethod;
}

/** Where an agent gets a service_id, whether or not its key may call list_services. */
const SERVICE_ID_SOURCE = "a service_id from list_services, or the one you were given";

/**
 * The time zone that wall-clock arguments are read in: the resource's, or
 * the service's first resource's. Asked for by the argument that needs it,
 * so an error names the argument the agent gave; learnt once per call.
 */
type ZoneFinder = (field: string) => Promise<string>;

/**
 * Whose zones count: "search", the active resources a search of the
 * service covers (find_slots, hold_slot); "bookings", every resource of
 * the service, inactive ones too, since bookings made on a resource stay
 * after it or its service is retired (list_bookings).
 */
type ZonesFor = "search" | "bookings";

function zoneFinder(
  api: McpApi,
  serviceId: string | undefined,
  resourceId: string | undefined,
  zonesFor: ZonesFor = "search",
): ZoneFinder {
  let found: Promise<string> | undefined;
  return (field) => {
    found ??= zoneOf(api, serviceId, resourceId, field, zonesFor);
    return found;
  };
}

/**
 * From the catalog when the key may read it; otherwise from a ListSlots
 * answer (bookings.read), which names the time zone of each resource it
 * searched, whether or not any slot is free. A service-wide wall-clock time
 * has a meaning only when the service's resources share one zone: otherwise
 * it is refused, naming the zones, rather than read in one of them.
 */
async function zoneOf(
  api: McpApi,
  serviceId: string | undefined,
  resourceId: string | undefined,
  field: string,
  zonesFor: ZonesFor,
): Promise<string> {
  const instead = insteadOfWallClock(field);
  if (!serviceId && !resourceId) {
    throw badArgument(
      field,
      `is a local wall-clock time: give service_id or resource_id so that it is read in that resource's time zone, or ${instead}`,
    );
  }
  const readsCatalog = api.caller.scopes.includes("catalog.read");
  const readsSlots = api.caller.scopes.includes("bookings.read");
  if (resourceId && readsCatalog) {
    const { resource } = await api.resources.getResource({ resourceId });
    return resource?.timeZone || "UTC";
  }
  if (serviceId && (readsCatalog || readsSlots)) {
    const zones = await knownZones(api, serviceId, resourceId, field, zonesFor);
    if (zones.size > 1) {
      throw badArgument(
        field,
        `is a local wall-clock time, and this service's resources are in different time zones (${[...zones].sort().join(", ")}): give resource_id so that it is read in that resource's zone, or ${instead}`,
      );
    }
    return [...zones][0] as string;
  }
  throw badArgument(
    field,
    readsSlots
      ? `is a local wall-clock time, and this API key cannot read the time zone of resource_id alone (that needs catalog.read): give service_id too, or ${instead}`
      : `is a local wall-clock time, and this API key cannot learn the resource's time zone (that needs catalog.read or bookings.read): ${instead}`,
  );
}

/**
 * The zones of the resources of `serviceId` (only `resourceId`, when
 * given) that `zonesFor` counts, at least one: with none to be learnt (an
 * inactive service, or no active resource, offers no slots to name them),
 * a wall-clock time has no zone to be read in, and `field` is refused,
 * never read as UTC.
 */
async function knownZones(
  api: McpApi,
  serviceId: string,
  resourceId: string | undefined,
  field: string,
  zonesFor: ZonesFor,
): Promise<Set<string>> {
  const zones = new Set(Object.values(await zonesOf(api, serviceId, resourceId, zonesFor)));
  if (zones.size > 0) return zones;
  const why =
    zonesFor === "bookings" && !api.caller.scopes.includes("catalog.read")
      ? "this service (or the resource) takes no bookings now, so no free time names its zone, and this API key cannot read the zones of inactive resources (that needs catalog.read)"
      : zonesFor === "bookings"
        ? "this service has no resources"
        : "this service (or the resource) takes no bookings now: it has no active resource to read it in";
  throw badArgument(
    field,
    `is a local wall-clock time, and no time zone can be learnt (${why}): ${insteadOfWallClock(field)}`,
  );
}

/** What to give instead of a wall-clock `field` whose zone cannot be learnt. */
function insteadOfWallClock(field: string): string {
  return field === "date"
    ? "give start_time and end_time with a UTC offset or Z instead"
    : "give the time with a UTC offset or Z";
}

/** ListResources pages that hold every resource a service may name. */
const SERVICE_RESOURCE_PAGES = Math.ceil(MAX_SERVICE_RESOURCES / MAX_RESOURCES_PAGE);

/**
 * The time zone of each resource of `serviceId` that `zonesFor` counts
 * (only `resourceId`, when given), by resource id: of a search's, from a
 * one-minute ListSlots answer when the key has bookings.read (one call,
 * however many resources), else from the catalog: ListResources of the
 * service's resources (inactive ones too for bookings'), a page of 100 at
 * a time, so at most five calls (a service names at most 500), never one
 * per resource.
 */
async function zonesOf(
  api: McpApi,
  serviceId: string,
  resourceId: string | undefined,
  zonesFor: ZonesFor,
): Promise<Record<string, string>> {
  const readsCatalog = api.caller.scopes.includes("catalog.read");
  if (api.caller.scopes.includes("bookings.read") && !(zonesFor === "bookings" && readsCatalog)) {
    const now = Date.now();
    const { timeZones } = await api.availability.listSlots({
      serviceId,
      resourceIds: resourceId ? [resourceId] : [],
      startTime: timestampFromMs(now),
      endTime: timestampFromMs(now + MINUTE_MS),
      pageSize: 1,
    });
    return timeZones;
  }
  if (resourceId) {
    const { resource } = await api.resources.getResource({ resourceId });
    return { [resourceId]: resource?.timeZone || "UTC" };
  }
  const zones: Record<string, string> = {};
  let pageToken = "";
  for (let page = 0; page < SERVICE_RESOURCE_PAGES; page++) {
    const answer = await api.resources.listResources({
      serviceId,
      includeInactive: zonesFor === "bookings",
      pageSize: MAX_RESOURCES_PAGE,
      pageToken,
    });
    for (const r of answer.resources) zones[r.id] = r.timeZone || "UTC";
    pageToken = answer.nextPageToken;
    if (!pageToken) break;
  }
  return zones;
}

/** Wraps a tool's work: any failure becomes a tool result, never a protocol error. */
async function guarded(
  work: () => Promise<CallToolResult>,
  onFailure?: (f: FailureView) => Promise<void>,
) {
  try {
    return await work();
  } catch (err) {
    const view = failureOf(err);
    if (onFailure) await onFailure(view).catch(() => undefined);
    return failed(view);
  }
}

const NEAR_REASONS = new Set([
  "SLOT_UNAVAILABLE",
  "OUTSIDE_WORKING_HOURS",
  "SCHEDULE_BLOCKED",
  "OFF_GRID",
  "TOO_SOON",
]);

/**
 * For refusals of a time that carry no alternatives (the API adds them to
 * SLOT_UNAVAILABLE and OUTSIDE_WORKING_HOURS only), the nearest free slots
 * of the same service and length, the same resource first among equals,
 * found with ListSlots.
 */
async function addNearest(
  api: McpApi,
  view: FailureView,
  want: { serviceId: string; resourceId?: string; startMs: number; durationMs?: number },
): Promise<void> {
  // With a notice period the API says only "at least N min from now".
  if (view.reason === "TOO_SOON" && want.startMs <= Date.now()) view.hint = PAST_HINT;
  if (!NEAR_REASONS.has(view.reason) || (view.alternatives?.length ?? 0) > 0) return;
  if (!api.caller.scopes.includes("bookings.read")) return;
  const from = Math.max(Date.now(), want.startMs - DAY_MS);
  const { slots } = await api.availability.listSlots({
    serviceId: want.serviceId,
    startTime: timestampFromMs(from),
    endTime: timestampFromMs(Math.max(from, want.startMs) + 7 * DAY_MS),
    duration: want.durationMs ? durationFromMs(want.durationMs) : undefined,
    pageSize: 500,
  });
  const distance = (ms: number) => Math.abs(ms - want.startMs);
  view.alternatives = slots
    .map((s) => ({ s, d: distance(s.startTime ? msOfTimestamp(s.startTime) : 0) }))
    .sort(
      (a, b) =>
        a.d - b.d ||
        Number(b.s.resourceId === want.resourceId) - Number(a.s.resourceId === want.resourceId),
    )
    .slice(0, 3)
    .map((x) => slotView(x.s));
}

function bookingAnswer(
  b: Booking | undefined,
  replayed: boolean,
  next: string,
  unchecked = false,
): CallToolResult {
  if (!b) return ok("Done.", {});
  const data: Record<string, unknown> = { booking: bookingView(b) };
  if (replayed) data.replayed = true;
  if (unchecked) {
    // The status is the earlier call's: the booking may since have been
    // cancelled, confirmed or lapsed, and this key cannot read it now.
    data.status_unchecked = true;
    const status = (BOOKING_STATUS.nameOf(b.status) ?? "unknown").toUpperCase();
    return ok(
      `An identical earlier call made booking ${b.id}; nothing was done twice. Its status then was ${status}, but it may have changed since (cancelled, lapsed or confirmed) and this API key cannot read bookings now (that needs bookings.read): do not tell the caller the time is ${status.toLowerCase()} on the strength of this answer. To be sure, check with whoever can read bookings (a key with bookings.read has get_booking); to hold a time anew, call hold_slot with a new idempotency_key. The earlier answer was: ${describeBooking(b)}`,
      data,
    );
  }
  const again = replayed
    ? " (the answer to an identical earlier call: nothing was done twice)"
    : "";
  return ok(`${describeBooking(b)}${again} ${next}`.trim(), data);
}

// ---- find_slots paging: the token carries the whole search, so a follow-up needs nothing else.

/** An instant in ms, within what a Date (and a Timestamp) can hold. */
const tokenInstant = z.number().int().min(-8.64e15).max(8.64e15);

/**
 * A find_slots page_token, as encodeSearch writes it. A token is the
 * caller's text: every field is checked, so an edited one is refused as
 * INVALID_PAGE_TOKEN, never sent on to fail as INTERNAL or to search
 * something else.
 */
const SLOT_SEARCH = z
  .strictObject({
    service_id: z.string().min(1).max(200),
    resource_id: z.string().min(1).max(200).optional(),
    from: tokenInstant,
    to: tokenInstant,
    duration_ms: z.number().int().min(MINUTE_MS).max(DAY_MS).optional(),
    /** A local date searched: only slots on it, on their own resource's clock, are kept. */
    date: z.string().refine(isCalendarDate).optional(),
    api_token: z.string().max(4096),
    /**
     * Where a page that filled inside a ListSlots page ends: the next starts
     * after this slot (by start, then resource id), with a ListSlots from its
     * start (and `api_token`, when set, of that ListSlots).
     */
    after: z
      .strictObject({ start: tokenInstant, resourceId: z.string().min(1).max(200) })
      .optional(),
  })
  .refine((s) => s.to > s.from);

type SlotSearch = z.infer<typeof SLOT_SEARCH>;

function encodeSearch(s: SlotSearch): string {
  return Buffer.from(JSON.stringify(s)).toString("base64url");
}

function decodeSearch(token: string): SlotSearch {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(token, "base64url").toString("utf8"));
  } catch {
    // refused below
  }
  const search = SLOT_SEARCH.safeParse(parsed);
  if (search.success) return search.data;
  const description = "is not a page_token from find_slots: search again without it";
  throw new ToolFailure("INVALID_PAGE_TOKEN", `page_token: ${description}`, [
    { field: "page_token", description },
  ]);
}

/**
 * A search's range in the local time of its resources' zone when they share
 * one (as every other time is given), with UTC beside it.
 */
function between(search: SlotSearch, timeZones: Record<string, string>): string {
  const zones = new Set(
    search.resource_id ? [timeZones[search.resource_id]] : Object.values(timeZones),
  );
  const utc = `${instantText(timestampFromMs(search.from))} and ${instantText(timestampFromMs(search.to))}`;
  const [zone] = zones;
  if (zones.size !== 1 || !zone) return utc;
  const local = (ms: number) => localDateTime(ms, zone).slice(0, 16).replace("T", " ");
  return `${local(search.from)} and ${local(search.to)} ${zone} (${utc.replace(" and ", " to ")})`;
}

const findSlots: ToolDef<z.ZodObject> = {
  name: "find_slots",
  rpc: methodOf(AvailabilityService, "listSlots"),
  title: "Find free times",
  description:
    "Lists free, bookable times of a service, earliest first, each with a slot_id to pass to hold_slot or reschedule_booking. Use it before offering times to the caller. Give `date` for one local day, or a start_time/end_time window (default: the next 7 days). Returns at most `limit` slots (default 10); when `page_token` is in the answer, more follow: call find_slots with only that page_token (and limit) to get them. Times come in UTC and as local wall-clock time of the resource's time zone. `search_complete` says whether the whole range (or date) was searched: an empty list with search_complete true means nothing is free there, so try a later range or another resource; with search_complete false the call stopped at its bound first, so call find_slots with the page_token to search on before saying nothing is free.",
  input: z.strictObject({
    service_id: id(`The service to book: ${SERVICE_ID_SOURCE}.`).optional(),
    resource_id: id(
      "Only this resource (a resource_id from list_resources or from a slot). Default: any resource of the service.",
    ).optional(),
    date: z
      .string()
      .max(10, NOT_A_DATE)
      .optional()
      .describe(
        "One local calendar day, \"YYYY-MM-DD\", instead of start_time/end_time: the slots on that date on each resource's own clock, also when the service's resources are in different time zones.",
      ),
    start_time: time("Earliest start. Default: now.").optional(),
    end_time: time(
      "Latest start (exclusive). Default: 7 days after start_time; at most 62 days after it.",
    ).optional(),
    duration_minutes: durationMinutes("the service's first"),
    limit: limitArg("slots", 50, 10),
    page_token: z
      .string()
      .max(4096)
      .optional()
      .describe(
        "From a previous find_slots answer: returns the next slots of the same search. Pass it without the other arguments (limit aside): any other argument given must match that search, or the call is refused.",
      ),
  }),
  readOnly: true,
  async run(api, a) {
    const args = a as Record<string, string | number | undefined>;
    return guarded(async () => {
      const limit = (args.limit as number | undefined) ?? 10;
      let search: SlotSearch;
      if (typeof args.page_token === "string") {
        search = decodeSearch(args.page_token);
        await refuseOtherSearch(api, args, search);
      } else {
        const serviceId = args.service_id as string | undefined;
        if (!serviceId) throw badArgument("service_id", `is required: ${SERVICE_ID_SOURCE}`);
        const resourceId = args.resource_id as string | undefined;
        const zone = zoneFinder(api, serviceId, resourceId);
        let from: number;
        let to: number;
        let date: string | undefined;
        if (typeof args.date === "string") {
          if (args.start_time !== undefined || args.end_time !== undefined) {
            throw badArgument("date", "give date, or start_time/end_time, not both");
          }
          date = args.date;
          [from, to] = await dateSpan(api, serviceId, resourceId, date);
        } else {
          from =
            args.start_time === undefined
              ? Date.now()
              : await readTime("start_time", args.start_time as string, zone);
          to =
            args.end_time === undefined
              ? from + 7 * DAY_MS
              : await readTime("end_time", args.end_time as string, zone);
          if (to <= from) throw badArgument("end_time", "must be after start_time");
        }
        search = {
          service_id: serviceId,
          resource_id: resourceId,
          from,
          to,
          duration_ms:
            args.duration_minutes === undefined
              ? undefined
              : (args.duration_minutes as number) * MINUTE_MS,
          ...(date !== undefined && { date }),
          api_token: "",
        };
      }
      const found = await searchSlots(api, search, limit);
      const { slots, timeZones, next } = found;
      const data: Record<string, unknown> = { slots, search_complete: next === undefined };
      const range = search.date
        ? `${search.date} (local time of each resource)`
        : `between ${between(search, timeZones)}`;
      let summary =
        slots.length > 0
          ? `${slots.length} free slot(s), earliest ${slots[0]?.local_start_time} ${slots[0]?.time_zone}. Hold one with hold_slot(slot_id).`
          : next
            ? `Nothing free found yet, but the search is not finished: this call stopped at its bound (${MAX_SEARCH_ROUNDS} ListSlots pages) before searching all of ${search.date ? "" : "the range "}${range}. Do not tell the caller nothing is free: call find_slots with page_token to search on.`
            : search.date
              ? `No free time on ${range}: try another day or another resource.`
              : `No free time ${range}: try a later range or another resource.`;
      if (next) {
        data.page_token = encodeSearch(next);
        if (slots.length > 0) {
          summary += " More slots may follow: call find_slots with page_token.";
        }
      }
      return ok(summary, data);
    });
  },
};

/** ListSlots calls one find_slots may make to fill its page, and their largest page. */
const MAX_SEARCH_ROUNDS = 8;
const MAX_SCAN_PAGE = 5000;

/**
 * Up to `limit` free slots of a search, earliest first, and where a next
 * page resumes (undefined once the range is searched to its end).
 *
 * A call of ListSlots does bounded work, so a page may come short, even
 * empty, with a token: the search reads on, at most MAX_SEARCH_ROUNDS
 * calls. A search by date covers the instants the date spans in every zone
 * searched and keeps only each resource's slots on that date on its own
 * clock, so pages also bring slots it drops (a New York resource's
 * evening of the day before, while Tokyo's day has begun): each round asks
 * for four times as many as the last, up to MAX_SCAN_PAGE, so a search is
 * not spent on them. Stopping inside a page, at `limit`, the next page
 * resumes after the last slot kept (slots are ordered by start, then
 * resource id), with a new ListSlots from its start.
 */
async function searchSlots(
  api: McpApi,
  search: SlotSearch,
  limit: number,
): Promise<{ slots: SlotView[]; timeZones: Record<string, string>; next?: SlotSearch }> {
  const slots: SlotView[] = [];
  const after = search.after;
  const from = after ? Math.max(search.from, after.start) : search.from;
  let apiToken = search.api_token;
  let timeZones: Record<string, string> = {};
  let pageSize = limit;
  for (let round = 0; round < MAX_SEARCH_ROUNDS; round++) {
    const answer = await api.availability.listSlots({
      serviceId: search.service_id,
      resourceIds: search.resource_id ? [search.resource_id] : [],
      startTime: timestampFromMs(from),
      endTime: timestampFromMs(search.to),
      duration: search.duration_ms ? durationFromMs(search.duration_ms) : undefined,
      pageSize: search.date ? pageSize : limit - slots.length,
      pageToken: apiToken,
    });
    timeZones = answer.timeZones;
    for (const slot of answer.slots) {
      const at = {
        start: slot.startTime ? msOfTimestamp(slot.startTime) : 0,
        resourceId: slot.resourceId,
      };
      if (after && !slotFollows({ ...at, end: 0, remaining: 0 }, after)) continue;
      const view = slotView(slot);
      if (search.date && view.local_start_time?.slice(0, 10) !== search.date) continue;
      slots.push(view);
      if (slots.length === limit && slot !== answer.slots.at(-1)) {
        // Full inside the page: the next page starts after this slot.
        return {
          slots,
          timeZones,
          next: { ...search, api_token: "", after: { start: at.start, resourceId: at.resourceId } },
        };
      }
    }
    apiToken = answer.nextPageToken;
    if (!apiToken) return { slots, timeZones };
    if (slots.length === limit) break;
    pageSize = Math.min(MAX_SCAN_PAGE, pageSize * 4);
  }
  return { slots, timeZones, next: { ...search, api_token: apiToken } };
}

/**
 * The instants a local date covers on the clocks of the resources searched:
 * from its first midnight among their zones to its last end.
 */
async function dateSpan(
  api: McpApi,
  serviceId: string,
  resourceId: string | undefined,
  date: string,
): Promise<[number, number]> {
  if (!isCalendarDate(date)) throw badArgument("date", `"${date}" ${NOT_A_DATE}`);
  const zones = await knownZones(api, serviceId, resourceId, "date", "search");
  let from = Number.POSITIVE_INFINITY;
  let to = Number.NEGATIVE_INFINITY;
  for (const zone of zones) {
    const [f, t] = await localDayRange("date", date, async () => zone);
    from = Math.min(from, f);
    to = Math.max(to, t);
  }
  return [from, to];
}

/**
 * A page_token carries its whole search: other search arguments given with
 * it must ask the same, or the call is refused rather than one of the two
 * searches silently ignored.
 */
async function refuseOtherSearch(
  api: McpApi,
  args: Record<string, string | number | undefined>,
  search: SlotSearch,
): Promise<void> {
  const differs = (field: string) =>
    badArgument(
      field,
      "differs from the search the page_token continues: call find_slots with only page_token (and limit) for the next page, or without page_token for a new search",
    );
  if (args.service_id !== undefined && args.service_id !== search.service_id) {
    throw differs("service_id");
  }
  if (args.resource_id !== undefined && args.resource_id !== search.resource_id) {
    throw differs("resource_id");
  }
  if (
    args.duration_minutes !== undefined &&
    (args.duration_minutes as number) * MINUTE_MS !== search.duration_ms
  ) {
    throw differs("duration_minutes");
  }
  if (args.date !== undefined && args.date !== search.date) throw differs("date");
  const zone = zoneFinder(api, search.service_id, search.resource_id);
  for (const [field, at] of [
    ["start_time", search.from],
    ["end_time", search.to],
  ] as const) {
    const given = args[field];
    if (given === undefined) continue;
    if (search.date || (await readTime(field, given as string, zone)) !== at) throw differs(field);
  }
}

const attendee = {
  attendee_name: z.string().max(200).optional().describe("The caller's name, as they said it."),
  attendee_email: z.string().max(320).optional().describe("The caller's email address, if given."),
  attendee_phone: z.string().max(50).optional().describe("The caller's phone number, if given."),
};

const holdSlot: ToolDef<z.ZodObject> = {
  name: "hold_slot",
  rpc: methodOf(BookingService, "createHold"),
  title: "Hold a time",
  description:
    "Holds a time for a few minutes while the caller decides; nobody else can take it meanwhile. Give slot_id from find_slots alone (it names its service, resource and length), or service_id with start_time (and optionally resource_id and duration_minutes). The answer says when the hold lapses (hold_seconds_left): call confirm_booking before then, extend_hold if the caller needs longer, cancel_booking if they decline. If the time was just taken (SLOT_UNAVAILABLE) or is not bookable, the failure lists `alternatives` with slot_ids: offer those. Safe to retry: a call with the same arguments as one that went through returns that hold (replayed: true) while it is held, never a second one. So holds for different callers must differ: give each caller's attendee details, or a distinct idempotency_key for each hold.",
  input: z.strictObject({
    slot_id: slotIdArg.optional(),
    service_id: id(
      `The service, when holding by time instead of slot_id: ${SERVICE_ID_SOURCE}.`,
    ).optional(),
    resource_id: id(
      "A specific resource, when holding by time. Default: any free resource of the service.",
    ).optional(),
    start_time: time("When holding by time: the start.").optional(),
    duration_minutes: durationMinutes("the service's first"),
    hold_minutes: z
      .number()
      .int()
      .min(1)
      .max(1440)
      .optional()
      .describe("How long to hold. Default: the service's hold time; never more than its maximum."),
    ...attendee,
    metadata: labels(
      'Optional labels of your own for this booking, as text values, e.g. {"caller_phone": "+12025550147", "ticket": "A-17"}: list_bookings finds the booking again by them.',
    ),
    idempotency_key: idempotencyKey,
  }),
  readOnly: false,
  async run(api, a) {
    const args = a as Record<string, string | number | undefined>;
    let near: Near | undefined;
    return guarded(
      async () => {
        const request = await bookingTarget(api, args);
        near = nearOf(request);
        const { answer, replayed, unchecked } = await retrySafe(
          api,
          "hold_slot",
          a,
          (key, onHeader) =>
            api.bookings.createHold(
              {
                slotId: request.slotId,
                serviceId: request.serviceId,
                resourceId: request.resourceId,
                startTime:
                  request.startMs === undefined ? undefined : timestampFromMs(request.startMs),
                endTime: request.endMs === undefined ? undefined : timestampFromMs(request.endMs),
                ttl:
                  args.hold_minutes === undefined
                    ? undefined
                    : durationFromMs((args.hold_minutes as number) * MINUTE_MS),
                attendee: {
                  name: (args.attendee_name as string) ?? "",
                  email: (args.attendee_email as string) ?? "",
                  phone: (args.attendee_phone as string) ?? "",
                },
                metadata: (a.metadata as Record<string, string> | undefined) ?? {},
              },
              { headers: { "idempotency-key": key }, onHeader },
            ),
        );
        return bookingAnswer(
          answer.booking,
          replayed,
          replayed
            ? "To hold this time for another caller, call again with their attendee details or a new idempotency_key."
            : "",
          unchecked,
        );
      },
      async (view) => {
        if (near) await addNearest(api, view, near);
      },
    );
  },
};

/**
 * The time a hold or a reschedule asks for: a slot id, or a start (UTC or
 * local) with a length (given, or else the booking's current length when
 * moving one, the service's first duration when holding).
 *
 * A move names its booking, not its service: `move.current` is that
 * booking when the key may read it (bookings.read). Without it, neither
 * the booking's zone nor its length can be learnt, so a wall-clock
 * start_time (without a resource_id to read it by) and a start_time
 * without duration_minutes are refused, saying so.
 */
async function bookingTarget(
  api: McpApi,
  args: Record<string, string | number | undefined>,
  move?: { current: Booking | undefined },
): Promise<{
  slotId: string;
  serviceId: string;
  resourceId: string;
  startMs?: number;
  endMs?: number;
  durationMs?: number;
}> {
  const slotId = args.slot_id as string | undefined;
  const start = args.start_time as string | undefined;
  if (slotId && start !== undefined)
    throw badArgument("slot_id", "give slot_id or start_time, not both");
  if (slotId) {
    // A slot id names its service, resource, time and length itself: a
    // different one given beside it would be silently ignored.
    for (const field of ["service_id", "resource_id", "duration_minutes"]) {
      if (args[field] !== undefined) {
        throw badArgument(
          field,
          `give slot_id alone (it names its service, resource and length), or ${field} with start_time instead of slot_id`,
        );
      }
    }
    return { slotId, serviceId: "", resourceId: "" };
  }
  const current = move?.current;
  if (start === undefined) {
    throw badArgument(
      "slot_id",
      `give slot_id (from find_slots), or start_time${move ? "" : " with service_id"}`,
    );
  }
  const serviceId = (args.service_id as string | undefined) ?? current?.serviceId ?? "";
  if (!serviceId && !move)
    throw badArgument("service_id", `is required with start_time: ${SERVICE_ID_SOURCE}`);
  const resourceId = (args.resource_id as string | undefined) ?? current?.resourceId ?? "";
  const cannotRead = "this API key cannot read the booking (that needs bookings.read)";
  const zone: ZoneFinder =
    // A booking staying on its resource already names the zone.
    current?.timeZone && resourceId === current.resourceId
      ? async () => current.timeZone
      : move && !current && !resourceId
        ? async (field) => {
            throw badArgument(
              field,
              `is a local wall-clock time, and ${cannotRead} to learn its time zone: give the time with a UTC offset or Z${api.caller.scopes.includes("catalog.read") ? ", or resource_id too so that it is read in that resource's zone" : ""}`,
            );
          }
        : zoneFinder(api, serviceId || undefined, resourceId || undefined);
  const startMs = await readTime("start_time", start, zone);
  let durationMs =
    args.duration_minutes === undefined ? undefined : (args.duration_minutes as number) * MINUTE_MS;
  if (durationMs === undefined && current?.startTime && current.endTime) {
    durationMs = msOfTimestamp(current.endTime) - msOfTimestamp(current.startTime);
  }
  if (durationMs === undefined && move) {
    throw badArgument(
      "duration_minutes",
      `is required with start_time: ${cannotRead} to learn its current length`,
    );
  }
  durationMs ??= await firstDuration(api, serviceId);
  return {
    slotId: "",
    serviceId,
    resourceId,
    startMs,
    endMs: startMs + durationMs,
    durationMs,
  };
}

/**
 * The service's first duration: from the catalog when the key may read it;
 * otherwise the length of a free slot (bookings.read), since ListSlots asked
 * for no duration offers slots of the first one.
 */
async function firstDuration(api: McpApi, serviceId: string): Promise<number> {
  if (api.caller.scopes.includes("catalog.read")) {
    const { service } = await api.catalog.getService({ serviceId });
    const first = service?.policy?.durations[0];
    return first ? msOfDuration(first) : 30 * MINUTE_MS;
  }
  if (api.caller.scopes.includes("bookings.read")) {
    const now = Date.now();
    const { slots } = await api.availability.listSlots({
      serviceId,
      startTime: timestampFromMs(now),
      endTime: timestampFromMs(now + 62 * DAY_MS),
      pageSize: 1,
    });
    const s = slots[0];
    if (s?.startTime && s.endTime) return msOfTimestamp(s.endTime) - msOfTimestamp(s.startTime);
  }
  throw badArgument(
    "duration_minutes",
    "is required: this API key cannot learn the service's durations (that needs catalog.read)",
  );
}

/** A write of one booking, retry-safe (see retry-safety.ts), answered with the booking. */
function writeBooking(
  api: McpApi,
  tool: string,
  args: Record<string, unknown>,
  call: (options: {
    headers: Record<string, string>;
    onHeader: (h: Headers) => void;
  }) => Promise<{ booking?: Booking }>,
): Promise<CallToolResult> {
  return guarded(async () => {
    const { answer, replayed, unchecked } = await retrySafe(api, tool, args, (key, onHeader) =>
      call({ headers: { "idempotency-key": key }, onHeader }),
    );
    return bookingAnswer(answer.booking, replayed, "", unchecked);
  });
}

type Near = Parameters<typeof addNearest>[2];

/** What to look for free times near, when a time (not a slot id) was asked for. */
function nearOf(t: Awaited<ReturnType<typeof bookingTarget>>): Near | undefined {
  if (t.startMs === undefined || !t.serviceId) return undefined;
  return {
    serviceId: t.serviceId,
    resourceId: t.resourceId,
    startMs: t.startMs,
    durationMs: t.durationMs,
  };
}

const bookingIdArg = id("The booking_id from hold_slot, get_booking or list_bookings.");

const confirmBooking: ToolDef<z.ZodObject> = {
  name: "confirm_booking",
  rpc: methodOf(BookingService, "confirmBooking"),
  title: "Confirm a held time",
  description:
    "Turns a hold into a confirmed booking. Call it once the caller has agreed, before the hold lapses. If it fails with HOLD_EXPIRED the time was released: call find_slots and hold again. Confirming an already confirmed booking returns it unchanged, so it is safe to retry.",
  input: z.strictObject({ booking_id: bookingIdArg, idempotency_key: idempotencyKey }),
  readOnly: false,
  async run(api, args) {
    return writeBooking(api, "confirm_booking", args, (options) =>
      api.bookings.confirmBooking({ bookingId: args.booking_id as string }, options),
    );
  },
};

const extendHold: ToolDef<z.ZodObject> = {
  name: "extend_hold",
  rpc: methodOf(BookingService, "extendHold"),
  title: "Keep a hold longer",
  description:
    "Gives the caller more time to decide: the hold then lapses `minutes` from now (never past the service's maximum hold). Only for a booking that is still held. Repeating it is harmless.",
  input: z.strictObject({
    booking_id: bookingIdArg,
    minutes: z
      .number()
      .int()
      .min(1)
      .max(1440)
      .optional()
      .describe("Minutes from now. Default: the service's hold time."),
    idempotency_key: idempotencyKey,
  }),
  readOnly: false,
  async run(api, args) {
    return guarded(async () => {
      const headers: Record<string, string> = {};
      if (typeof args.idempotency_key === "string")
        headers["idempotency-key"] = args.idempotency_key;
      const answer = await api.bookings.extendHold(
        {
          bookingId: args.booking_id as string,
          ttl:
            args.minutes === undefined
              ? undefined
              : durationFromMs((args.minutes as number) * MINUTE_MS),
        },
        { headers },
      );
      return bookingAnswer(answer.booking, false, "");
    });
  },
};

const cancelBooking: ToolDef<z.ZodObject> = {
  name: "cancel_booking",
  rpc: methodOf(BookingService, "cancelBooking"),
  title: "Cancel a hold or booking",
  description:
    "Cancels a held or confirmed booking; its time is free for others at once. Use it when the caller declines a held time or calls off a booking. Safe to retry.",
  input: z.strictObject({
    booking_id: bookingIdArg,
    reason: z.string().max(500).optional().describe("Why, in a few words (kept with the booking)."),
    idempotency_key: idempotencyKey,
  }),
  readOnly: false,
  async run(api, args) {
    return writeBooking(api, "cancel_booking", args, (options) =>
      api.bookings.cancelBooking(
        { bookingId: args.booking_id as string, reason: (args.reason as string) ?? "" },
        options,
      ),
    );
  },
};

const rescheduleBooking: ToolDef<z.ZodObject> = {
  name: "reschedule_booking",
  rpc: methodOf(BookingService, "rescheduleBooking"),
  title: "Move a booking",
  description:
    "Moves a held or confirmed booking to another time (and optionally another resource of the same service), atomically: the new time is secured before the old one is freed, so a failure leaves the booking as it was. Give slot_id from find_slots, or start_time (the length stays the same unless duration_minutes is given; an API key that cannot read bookings must give duration_minutes, and the time with a UTC offset or with resource_id). On SLOT_UNAVAILABLE the failure lists `alternatives`. Safe to retry.",
  input: z.strictObject({
    booking_id: bookingIdArg,
    slot_id: slotIdArg.optional(),
    start_time: time("The new start, instead of slot_id.").optional(),
    resource_id: id(
      "Move to this resource of the same service. Default: the same resource.",
    ).optional(),
    duration_minutes: durationMinutes("the booking's current length"),
    idempotency_key: idempotencyKey,
  }),
  readOnly: false,
  async run(api, a) {
    const args = a as Record<string, string | number | undefined>;
    let near: Near | undefined;
    return guarded(
      async () => {
        let current: Booking | undefined;
        if (args.slot_id === undefined && api.caller.scopes.includes("bookings.read")) {
          current = (await api.bookings.getBooking({ bookingId: args.booking_id as string }))
            .booking;
        }
        const target = await bookingTarget(api, args, { current });
        near = nearOf(target);
        const { answer, replayed, unchecked } = await retrySafe(
          api,
          "reschedule_booking",
          a,
          (key, onHeader) =>
            api.bookings.rescheduleBooking(
              {
                bookingId: args.booking_id as string,
                slotId: target.slotId,
                resourceId: target.slotId ? "" : ((args.resource_id as string) ?? ""),
                startTime:
                  target.startMs === undefined ? undefined : timestampFromMs(target.startMs),
                endTime: target.endMs === undefined ? undefined : timestampFromMs(target.endMs),
              },
              { headers: { "idempotency-key": key }, onHeader },
            ),
        );
        return bookingAnswer(answer.booking, replayed, "", unchecked);
      },
      async (view) => {
        if (near) await addNearest(api, view, near);
      },
    );
  },
};

const getBooking: ToolDef<z.ZodObject> = {
  name: "get_booking",
  rpc: methodOf(BookingService, "getBooking"),
  title: "Look up a booking",
  description:
    "Returns one booking in any status (held, confirmed, cancelled, expired, completed, no_show), with its times in UTC and local time and, for a hold, how many seconds are left.",
  input: z.strictObject({ booking_id: bookingIdArg }),
  readOnly: true,
  async run(api, args) {
    return guarded(async () => {
      const { booking } = await api.bookings.getBooking({ bookingId: args.booking_id as string });
      return bookingAnswer(booking, false, "");
    });
  },
};

const STATUS_NAMES = ["held", "confirmed", "cancelled", "expired", "completed", "no_show"] as const;

const listBookings: ToolDef<z.ZodObject> = {
  name: "list_bookings",
  rpc: methodOf(BookingService, "listBookings"),
  title: "List bookings",
  description:
    "Lists bookings, ordered by start time, filtered by any of status, resource, service, a start-time range and the metadata labels given to hold_slot; e.g. to find a caller's upcoming booking before moving or cancelling it (by the label you stored with it, such as their phone number). Returns at most `limit` (default 20); when `page_token` is in the answer, call again with the same filters and that page_token for more.",
  input: z.strictObject({
    statuses: z
      .array(z.enum(STATUS_NAMES))
      .max(6)
      .optional()
      .describe("Only these statuses. Default: all."),
    resource_id: id("Only this resource.").optional(),
    service_id: id("Only this service.").optional(),
    start_time_from: time("Only bookings starting at or after this.").optional(),
    start_time_to: time("Only bookings starting before this.").optional(),
    metadata: labels(
      'Only bookings whose metadata has each of these labels with exactly this value, e.g. {"caller_phone": "+12025550147"}.',
    ),
    limit: limitArg("bookings", 50, 20),
    page_token: z
      .string()
      .max(4096)
      .optional()
      .describe("From a previous list_bookings answer, with the same filters."),
  }),
  readOnly: true,
  async run(api, a) {
    const args = a as Record<string, unknown>;
    return guarded(async () => {
      const zone = zoneFinder(
        api,
        args.service_id as string | undefined,
        args.resource_id as string | undefined,
        "bookings",
      );
      const from =
        args.start_time_from === undefined
          ? undefined
          : await readTime("start_time_from", args.start_time_from as string, zone);
      const to =
        args.start_time_to === undefined
          ? undefined
          : await readTime("start_time_to", args.start_time_to as string, zone);
      const answer = await api.bookings.listBookings({
        pageSize: (args.limit as number | undefined) ?? 20,
        pageToken: (args.page_token as string | undefined) ?? "",
        resourceId: (args.resource_id as string | undefined) ?? "",
        serviceId: (args.service_id as string | undefined) ?? "",
        statuses: ((args.statuses as string[] | undefined) ?? []).map((s) =>
          BOOKING_STATUS.valueOf(s),
        ),
        startTimeFrom: from === undefined ? undefined : timestampFromMs(from),
        startTimeTo: to === undefined ? undefined : timestampFromMs(to),
        metadata: (args.metadata as Record<string, string> | undefined) ?? {},
      });
      const data: Record<string, unknown> = {
        bookings: answer.bookings.map((b) => bookingView(b)),
      };
      if (answer.nextPageToken) data.page_token = answer.nextPageToken;
      return ok(
        `${answer.bookings.length} booking(s)${answer.nextPageToken ? "; more follow: call again with page_token" : ""}.`,
        data,
      );
    });
  },
};

const listResources: ToolDef<z.ZodObject> = {
  name: "list_resources",
  rpc: methodOf(ResourceService, "listResources"),
  title: "List resources",
  description:
    'Lists the bookable resources (people, rooms, equipment, locations) with their ids, time zones and capacity. Use it to learn which resource the caller means ("Dr. Lee") and its time zone.',
  input: z.strictObject({
    limit: limitArg("resources", 100, 50),
    page_token: pageTokenArg("list_resources"),
  }),
  readOnly: true,
  async run(api, args) {
    return guarded(async () => {
      const answer = await api.resources.listResources({
        pageSize: (args.limit as number | undefined) ?? 50,
        pageToken: (args.page_token as string | undefined) ?? "",
      });
      const data: Record<string, unknown> = {
        resources: answer.resources.map((r) => ({
          resource_id: r.id,
          name: r.name,
          kind: (ResourceKind[r.kind] ?? "UNSPECIFIED").toLowerCase(),
          time_zone: r.timeZone,
          capacity: r.capacity,
        })),
      };
      if (answer.nextPageToken) data.page_token = answer.nextPageToken;
      return ok(`${answer.resources.length} resource(s).`, data);
    });
  },
};

const listServices: ToolDef<z.ZodObject> = {
  name: "list_services",
  rpc: methodOf(CatalogService, "listServices"),
  title: "List services",
  description:
    'Lists what can be booked (e.g. "Consultation"), with service_id, the resources that deliver it, the lengths offered (minutes) and how long a hold lasts. Call it first to get the service_id that find_slots needs.',
  input: z.strictObject({
    resource_id: id("Only services this resource delivers.").optional(),
    limit: limitArg("services", 100, 50),
    page_token: pageTokenArg("list_services"),
  }),
  readOnly: true,
  async run(api, args) {
    return guarded(async () => {
      const answer = await api.catalog.listServices({
        resourceId: (args.resource_id as string | undefined) ?? "",
        pageSize: (args.limit as number | undefined) ?? 50,
        pageToken: (args.page_token as string | undefined) ?? "",
      });
      const minutes = (d: Duration | undefined) => (d ? msOfDuration(d) / MINUTE_MS : undefined);
      const data: Record<string, unknown> = {
        services: answer.services.map((s) => ({
          service_id: s.id,
          name: s.name,
          resource_ids: s.resourceIds,
          duration_minutes: s.policy?.durations.map(minutes) ?? [],
          hold_minutes: minutes(s.policy?.holdTtl),
          time_zone: s.timeZone,
        })),
      };
      if (answer.nextPageToken) data.page_token = answer.nextPageToken;
      return ok(`${answer.services.length} service(s).`, data);
    });
  },
};

export const TOOLS: readonly ToolDef<z.ZodObject>[] = [
  listServices,
  listResources,
  findSlots,
  holdSlot,
  confirmBooking,
  extendHold,
  cancelBooking,
  rescheduleBooking,
  getBooking,
  listBookings,
];

/** The scope a tool needs: its RPC's required_scope, from the proto. */
export function scopeOf(tool: { rpc: DescMethod }): string {
  return requiredScopeOf(tool.rpc);
}

export function toolsFor(scopes: readonly string[]): ToolDef<z.ZodObject>[] {
  return TOOLS.filter((t) => {
    const s = scopeOf(t);
    return s === ANY_SCOPE || scopes.includes(s);
  });
}

/** A tool as tools/list shows it. */
export function listing(t: ToolDef<z.ZodObject>): Tool {
  const schema = z.toJSONSchema(t.input, { io: "input" }) as Record<string, unknown>;
  delete schema.$schema;
  return {
    name: t.name,
    title: t.title,
    description: t.description,
    inputSchema: schema as Tool["inputSchema"],
    annotations: {
      title: t.title,
      readOnlyHint: t.readOnly,
      destructiveHint: t.name === "cancel_booking",
      idempotentHint: true,
      openWorldHint: false,
    },
  };
}

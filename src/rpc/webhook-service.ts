import { randomUUID } from "node:crypto";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ServiceImpl } from "@connectrpc/connect";
import { z } from "zod";
import {
  type DeliverySchema,
  type DeliveryStatus,
  DeliveryStatusSchema,
  type WebhookSchema,
  type WebhookService,
  WebhookState,
  WebhookStateSchema,
} from "../../gen/holdfast/v1/webhook_pb.js";
import type { Db } from "../db/pool.js";
import {
  type DeliveryRow,
  type DeliveryStatus as DeliveryStatusName,
  deleteWebhook,
  getWebhook,
  insertWebhook,
  listDeliveries,
  listWebhooks,
  queueTestEvent,
  retryDelivery,
  rotateSecret,
  updateWebhook,
  type WebhookRow,
  type WebhookState as WebhookStateName,
} from "../db/webhooks.js";
import { isEventType } from "../domain/events.js";
import { invalid, Rejection } from "../domain/rejection.js";
import { deliveryBody, newSigningSecret, seal, urlProblem } from "../domain/webhooks.js";
import type { EventFeed } from "../events/feed.js";
import { principalOf } from "./auth.js";
import { durationOfMs, timestampOfDate } from "./convert.js";
import { enumNames } from "./enum-names.js";
import { dbOf } from "./idempotency.js";
import { readPage, writePage } from "./paging.js";
import { withinQuota } from "./quota.js";
import * as v from "./validate.js";

const STATE = enumNames<WebhookState, WebhookStateName>(WebhookStateSchema);
const DELIVERY_STATUS = enumNames<DeliveryStatus, DeliveryStatusName>(DeliveryStatusSchema);

function webhookOf(w: WebhookRow): MessageInitShape<typeof WebhookSchema> {
  return {
    id: w.id,
    url: w.url,
    eventTypes: w.eventTypes,
    description: w.description,
    state: STATE.valueOf(w.state),
    disabledReason: w.disabledReason,
    consecutiveFailures: w.consecutiveFailures,
    createTime: timestampOfDate(w.createTime),
    updateTime: timestampOfDate(w.updateTime),
  };
}

function deliveryOf(d: DeliveryRow): MessageInitShape<typeof DeliverySchema> {
  return {
    id: d.id,
    webhookId: d.webhookId,
    eventId: d.eventId,
    eventType: d.eventType,
    status: DELIVERY_STATUS.valueOf(d.status),
    attempts: d.attempts.map((a) => ({
      attemptTime: timestampOfDate(new Date(a.attemptTime)),
      statusCode: a.statusCode,
      latency: durationOfMs(a.latencyMs),
      error: a.error,
    })),
    nextAttemptTime: d.nextAttemptTime ? timestampOfDate(d.nextAttemptTime) : undefined,
    createTime: timestampOfDate(d.createTime),
  };
}

/** A delivery status filter; UNSPECIFIED for all. */
const deliveryStatus = z.number().transform((s, ctx) => {
  if (s === 0) return undefined;
  const name = DELIVERY_STATUS.nameOf(s as DeliveryStatus);
  if (name) return name;
  ctx.addIssue({ code: "custom", message: "must be PENDING, SUCCEEDED or FAILED" });
  return z.NEVER;
});

/**
 * The states an owner may set: ACTIVE or PAUSED. Only Holdfast disables an
 * endpoint, so DISABLED is refused like UNSPECIFIED or a number the enum
 * lacks, with a message that names only what may be set.
 */
const settableState = z.number().transform((s, ctx): WebhookStateName => {
  if (s === WebhookState.ACTIVE || s === WebhookState.PAUSED)
    return STATE.nameOf(s) as WebhookStateName;
  ctx.addIssue({
    code: "custom",
    message: `must be WEBHOOK_STATE_ACTIVE or WEBHOOK_STATE_PAUSED${s === WebhookState.DISABLED ? " (only Holdfast disables an endpoint)" : ""}`,
  });
  return z.NEVER;
});

function webhookNotFound(id: string, field = "webhook_id"): Rejection {
  return new Rejection("WEBHOOK_NOT_FOUND", `no webhook with id "${id}"`, {
    fieldViolations: [{ field, description: "no such webhook" }],
  });
}

export function webhookService(
  base: Db,
  feed: EventFeed,
  settings: { allowPrivate: boolean; secretKey: Buffer },
): ServiceImpl<typeof WebhookService> {
  const url = z.string().superRefine((u, ctx) => {
    const problem = urlProblem(u, settings.allowPrivate);
    if (problem) ctx.addIssue({ code: "custom", message: problem });
  });
  const eventTypes = z
    .array(z.string().refine((t) => t === "*" || isEventType(t), "is not an event type (or *)"))
    .min(1, "must list at least one event type, or *")
    .transform((t) => [...new Set(t)]);
  const createSchema = z.object({ url, eventTypes, description: v.freeText });
  const UPDATABLE = ["url", "event_types", "description", "state"] as const;
  const updateFields = {
    url,
    eventTypes,
    description: v.freeText,
    state: settableState,
  };

  async function existing(tenantId: string, id: string, field = "webhook_id"): Promise<WebhookRow> {
    const w = id === "" ? undefined : await getWebhook(base, tenantId, id);
    if (!w) throw webhookNotFound(id, field);
    return w;
  }

  return {
    async createWebhook(req, ctx) {
      const f = v.parseRequest(createSchema, req);
      const secret = newSigningSecret();
      const tenantId = principalOf(ctx).tenantId;
      const w = await withinQuota(dbOf(ctx, base), tenantId, "webhooks", (tx) =>
        insertWebhook(tx, tenantId, {
          url: f.url,
          eventTypes: f.eventTypes,
          description: f.description,
          sealedSecret: seal(settings.secretKey, secret),
        }),
      );
      return { webhook: webhookOf(w), secret };
    },

    async listWebhooks(req, ctx) {
      v.parseRequest(z.object(v.pageFields), req);
      const page = readPage(ctx, req, {});
      const rows = await listWebhooks(base, principalOf(ctx).tenantId, {
        after: page.after,
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (w) => w.id);
      return { webhooks: items.map(webhookOf), nextPageToken };
    },

    async getWebhook(req, ctx) {
      return { webhook: webhookOf(await existing(principalOf(ctx).tenantId, req.webhookId)) };
    },

    async updateWebhook(req, ctx) {
      const target = req.webhook;
      if (!target || target.id === "")
        throw invalid([{ field: "webhook.id", description: "is required" }]);
      const paths = v.updatePaths(req.updateMask, target, UPDATABLE);
      const changes = v.parseUpdate("webhook", updateFields, target, paths);
      const w = await updateWebhook(dbOf(ctx, base), principalOf(ctx).tenantId, target.id, changes);
      if (!w) throw webhookNotFound(target.id, "webhook.id");
      return { webhook: webhookOf(w) };
    },

    async deleteWebhook(req, ctx) {
      if (!(await deleteWebhook(dbOf(ctx, base), principalOf(ctx).tenantId, req.webhookId)))
        throw webhookNotFound(req.webhookId);
      return {};
    },

    async rotateWebhookSecret(req, ctx) {
      const secret = newSigningSecret();
      const w = await rotateSecret(
        dbOf(ctx, base),
        principalOf(ctx).tenantId,
        req.webhookId,
        seal(settings.secretKey, secret),
      );
      if (!w) throw webhookNotFound(req.webhookId);
      return { webhook: webhookOf(w), secret };
    },

    async listDeliveries(req, ctx) {
      const f = v.parseRequest(
        z.object({ ...v.pageFields, webhookId: v.id, status: deliveryStatus }),
        req,
      );
      const status = f.status;
      const tenantId = principalOf(ctx).tenantId;
      const page = readPage(ctx, req, { w: f.webhookId, s: status });
      await existing(tenantId, f.webhookId, "webhook_id");
      const rows = await listDeliveries(base, tenantId, f.webhookId, {
        status,
        before: page.after,
        limit: page.size + 1,
      });
      const { items, nextPageToken } = writePage(rows, page, (d) => d.id);
      return { deliveries: items.map(deliveryOf), nextPageToken };
    },

    async retryDelivery(req, ctx) {
      const tenantId = principalOf(ctx).tenantId;
      const retry =
        req.webhookId === ""
          ? ({ outcome: "webhook_not_found" } as const)
          : await retryDelivery(dbOf(ctx, base), tenantId, req.webhookId, req.deliveryId);
      switch (retry.outcome) {
        case "webhook_not_found":
          throw webhookNotFound(req.webhookId, "webhook_id");
        case "not_found":
          throw new Rejection(
            "DELIVERY_NOT_FOUND",
            `webhook "${req.webhookId}" has no delivery "${req.deliveryId}"`,
            { fieldViolations: [{ field: "delivery_id", description: "no such delivery" }] },
          );
        case "webhook_disabled":
          throw webhookDisabled(req.webhookId, retry.disabledReason, "retry");
        case "in_flight":
          throw new Rejection(
            "DELIVERY_IN_FLIGHT",
            `delivery "${req.deliveryId}" is being attempted right now; its result shows in ListDeliveries when the attempt ends (by ${retry.inFlightUntil} at the latest): retry then if it failed`,
            { metadata: { in_flight_until: retry.inFlightUntil } },
          );
      }
      feed.committed();
      return { delivery: deliveryOf(retry.delivery) };
    },

    async sendTestEvent(req, ctx) {
      const tenantId = principalOf(ctx).tenantId;
      const webhookId = req.webhookId;
      const queued =
        webhookId === ""
          ? ({ outcome: "webhook_not_found" } as const)
          : await queueTestEvent(dbOf(ctx, base), tenantId, webhookId, {
              eventId: `evt_test_${randomUUID().replaceAll("-", "")}`,
              eventType: "webhook.test",
              body: (now) =>
                deliveryBody("webhook.test", now, {
                  webhookId,
                  detail: "a test event from Holdfast",
                }),
            });
      switch (queued.outcome) {
        case "webhook_not_found":
          throw webhookNotFound(webhookId, "webhook_id");
        case "webhook_disabled":
          throw webhookDisabled(webhookId, queued.disabledReason, "send it again");
      }
      feed.committed();
      return { delivery: deliveryOf(queued.delivery) };
    },
  };
}

/** WEBHOOK_DISABLED: nothing is sent to a disabled endpoint, so nothing is queued for it. */
function webhookDisabled(webhookId: string, disabledReason: string, then: string): Rejection {
  return new Rejection(
    "WEBHOOK_DISABLED",
    `webhook "${webhookId}" is disabled (${disabledReason}): nothing is sent to it; re-enable it with UpdateWebhook (state WEBHOOK_STATE_ACTIVE), then ${then}`,
    { metadata: { disabled_reason: disabledReason } },
  );
}

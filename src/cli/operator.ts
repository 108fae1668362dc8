import { create, toJson } from "@bufbuild/protobuf";
import type { Command } from "commander";
import { z } from "zod";
import {
  ApiKeySchema,
  CreateApiKeyResponseSchema,
  GetUsageResponseSchema,
  ListApiKeysResponseSchema,
  RevokeApiKeyResponseSchema,
} from "../../gen/holdfast/v1/key_pb.js";
import {
  CreateTenantResponseSchema,
  ListTenantsResponseSchema,
  SetTenantQuotasResponseSchema,
  SetTenantRateLimitResponseSchema,
} from "../../gen/holdfast/v1/tenant_pb.js";
import { insertKey, listKeys, revokeKey } from "../db/keys.js";
import { appliedVersion, latestVersion, migrate } from "../db/migrate.js";
import { outboxSpan } from "../db/outbox.js";
import type { Queryable } from "../db/pool.js";
import { quotaUsage, setQuotas } from "../db/quotas.js";
import { rateRemaining, setTenantRateLimit } from "../db/rate-limits.js";
import { runningInstances } from "../db/signals.js";
import {
  createTenant,
  DEFAULT_TENANT,
  findTenant,
  listTenants,
  rotateOperatorKey,
  type TenantRow,
} from "../db/tenants.js";
import { deliveryBacklog } from "../db/webhooks.js";
import { Rejection } from "../domain/rejection.js";
import { TENANT_SCOPES } from "../domain/scopes.js";
import { apiKeyOf, newKeySchema } from "../rpc/key-service.js";
import { quotasMessage, tenantOf } from "../rpc/tenant-service.js";
import "../zod-messages.js";
import * as v from "../rpc/validate.js";
import { list, number } from "./arguments.js";
import { withDatabase } from "./database.js";
import { CommandFailed, UsageError } from "./failure.js";
import { type FlagNames, inFlagWords } from "./flags.js";
import { printJson, printMessage, printTable, terminal, visible } from "./output.js";

/**
 * Commands for whoever runs Holdfast, needing only access to its database
 * (DATABASE_URL, or the embedded one under .data): no API key, so they are
 * also the way back in when the operator key is lost. They go through the
 * same repositories as the server, so a key made here is the same as one
 * made over the API, and a revocation reaches running instances at once.
 */

const BACKLOG_CAP = 100_000;
const MAX_LISTED = 1_000;

type Globals = { json: boolean };
const globalsOf = (cmd: Command) => cmd.optsWithGlobals<Globals>();
const iso = (d: Date | null | undefined) => (d ? d.toISOString() : "");

export function operatorCommands(program: Command): void {
  const tenants = program.command("tenants").description("tenants (operator; database access)");
  tenants
    .command("create")
    .description("create a tenant and print its first all-scopes API key, once")
    .argument("<name>", "unique name of the tenant")
    .action(async (name: string, _o, cmd: Command) => {
      const f = parseOptions(z.object({ name: v.name }), { name }, { name: "<name>" });
      const made = await withDatabase({ create: false, requireSchema: true }, ({ db }) =>
        createTenant(db, f.name),
      );
      if (globalsOf(cmd).json) {
        printMessage(CreateTenantResponseSchema, {
          tenant: tenantOf(made.tenant),
          apiKey: made.secret,
          key: apiKeyOf(made.key),
        });
        return;
      }
      process.stdout.write(
        terminal`Created tenant "${made.tenant.name}" (${made.tenant.id}).\n` +
          terminal`Its first API key (all tenant scopes; shown once, store it now):\n\n  ${made.secret}\n\n`,
      );
    });
  tenants
    .command("list")
    .description("list tenants")
    .action(async (_o, cmd: Command) => {
      const rows = await withDatabase({ create: false, requireSchema: true }, ({ db }) =>
        listTenants(db, { after: undefined, limit: MAX_LISTED }),
      );
      if (globalsOf(cmd).json) {
        printMessage(ListTenantsResponseSchema, { tenants: rows.map(tenantOf) });
        return;
      }
      printTable(rows, [
        { header: "TENANT", value: (t) => t.id },
        { header: "NAME", value: (t) => t.name },
        { header: "CREATED", value: (t) => iso(t.create_time) },
      ]);
    });

  tenants
    .command("rate-limit")
    .description("set a tenant's rate limit, or with --default go back to the configured one")
    .argument("<tenant>", "the tenant's id or name")
    .option("--requests-per-second <n>", "calls a second, 1 to 1000000", number)
    .option("--burst <n>", "calls at once, 1 to 1000000", number)
    .option("--default", "use the configured default (HOLDFAST_TENANT_RATE_*)")
    .action(async (idOrName: string, o, cmd: Command) => {
      const given = o.requestsPerSecond !== undefined || o.burst !== undefined;
      if (given === Boolean(o.default)) {
        throw new UsageError("give --requests-per-second and --burst, or --default");
      }
      // The API's RateLimit has no default for either half.
      if (given && o.burst === undefined)
        throw new UsageError("--burst is required with --requests-per-second");
      if (given && o.requestsPerSecond === undefined)
        throw new UsageError("--requests-per-second is required with --burst");
      const f = parseOptions(
        z.object({ rateLimit: v.rateLimit }),
        {
          rateLimit: o.default
            ? undefined
            : { requestsPerSecond: o.requestsPerSecond, burst: o.burst },
        },
        {
          "rate_limit.requests_per_second": "--requests-per-second",
          "rate_limit.burst": "--burst",
        },
      );
      const { tenant, limit } = await withDatabase(
        { create: false, requireSchema: true },
        async ({ db, config }) => {
          const tenant = await tenantNamed(db, idOrName);
          await setTenantRateLimit(db, tenant.id, f.rateLimit);
          return { tenant, limit: f.rateLimit ?? config.rateLimits.tenant };
        },
      );
      if (globalsOf(cmd).json) {
        printMessage(SetTenantRateLimitResponseSchema, {
          rateLimit: { requestsPerSecond: limit.perSecond, burst: limit.burst },
          isDefault: f.rateLimit === undefined,
        });
        return;
      }
      const configured = f.rateLimit ? "" : " (the configured default)";
      process.stdout.write(
        terminal`Tenant "${tenant.name}" may now make ${limit.perSecond} calls a second, ${limit.burst} at once` +
          `${configured}.\n`,
      );
    });
  tenants
    .command("quotas")
    .description(
      "set all of a tenant's quotas at once: each one left out is unlimited; a quota below what is in use refuses new work and deletes nothing",
    )
    .argument("<tenant>", "the tenant's id or name")
    .option("--bookings-per-month <n>", "bookings made in a calendar month (UTC)", number)
    .option("--active-holds <n>", "holds not yet confirmed, cancelled or lapsed", number)
    .option("--resources <n>", "active resources", number)
    .option("--services <n>", "active services", number)
    .option("--webhooks <n>", "webhooks", number)
    .option("--api-keys <n>", "API keys not revoked", number)
    .action(async (idOrName: string, o, cmd: Command) => {
      const f = parseOptions(
        z.object({ quotas: v.quotas }),
        {
          quotas: {
            bookingsPerMonth: o.bookingsPerMonth,
            activeHolds: o.activeHolds,
            resources: o.resources,
            services: o.services,
            webhooks: o.webhooks,
            apiKeys: o.apiKeys,
          },
        },
        {
          "quotas.bookings_per_month": "--bookings-per-month",
          "quotas.active_holds": "--active-holds",
          "quotas.resources": "--resources",
          "quotas.services": "--services",
          "quotas.webhooks": "--webhooks",
          "quotas.api_keys": "--api-keys",
        },
      );
      const tenant = await withDatabase({ create: false, requireSchema: true }, async ({ db }) => {
        const tenant = await tenantNamed(db, idOrName);
        await setQuotas(db, tenant.id, f.quotas);
        return tenant;
      });
      if (globalsOf(cmd).json) {
        printMessage(SetTenantQuotasResponseSchema, { quotas: quotasMessage(f.quotas) });
        return;
      }
      const set = Object.entries(f.quotas).filter(([, n]) => n !== undefined);
      const quotas = set.map(([q, n]) => `${q} ${n}`).join(", ") || "none (unlimited)";
      process.stdout.write(terminal`Tenant "${tenant.name}" quotas: ${quotas}.\n`);
    });
  tenants
    .command("usage")
    .description(
      "a tenant's rate limit and what is left of its burst, and its quotas with their usage",
    )
    .argument("<tenant>", "the tenant's id or name")
    .action(async (idOrName: string, _o, cmd: Command) => {
      const { tenant, rate, quotas } = await withDatabase(
        { create: false, requireSchema: true },
        async ({ db, config }) => {
          const tenant = await tenantNamed(db, idOrName);
          // The tenant's bucket only: no key is asking.
          const [rate] = await rateRemaining(db, tenant.id, "", config.rateLimits);
          const quotas = (await quotaUsage(db, tenant.id)) ?? [];
          return { tenant, rate, quotas };
        },
      );
      if (!rate) throw new CommandFailed("no rate limit found");
      if (globalsOf(cmd).json) {
        printMessage(GetUsageResponseSchema, {
          tenantId: tenant.id,
          rateLimits: [
            {
              policy: rate.policy,
              rateLimit: { requestsPerSecond: rate.limit.perSecond, burst: rate.limit.burst },
              remaining: rate.remaining,
            },
          ],
          quotas: quotas.map((q) => ({ quota: q.quota, limit: q.limit, usage: BigInt(q.usage) })),
        });
        return;
      }
      printTable(
        [
          {
            what: "rate limit",
            limit: `${rate.limit.perSecond}/s, burst ${rate.limit.burst}`,
            usage: `${rate.remaining} left`,
          },
          ...quotas.map((q) => ({
            what: q.quota,
            limit: q.limit === undefined ? "unlimited" : String(q.limit),
            usage: String(q.usage),
          })),
        ],
        [
          { header: `TENANT ${tenant.name}`, value: (r) => r.what },
          { header: "LIMIT", value: (r) => r.limit },
          { header: "IN USE", value: (r) => r.usage },
        ],
      );
    });

  const keys = program
    .command("keys")
    .description("API keys of a tenant (operator; database access)");
  const tenantOption = ["--tenant <id-or-name>", "the tenant", DEFAULT_TENANT] as const;
  keys
    .command("create")
    .description("create an API key and print its secret, once")
    .option(...tenantOption)
    .requiredOption(
      "--scopes <scope...>",
      `comma-separated, from: ${TENANT_SCOPES.join(", ")}`,
      list,
    )
    .option("--description <text>", "what the key is for", "")
    .action(async (o, cmd: Command) => {
      const f = parseOptions(
        newKeySchema,
        { scopes: o.scopes, description: o.description },
        { scopes: "--scopes", description: "--description" },
      );
      const made = await withDatabase({ create: false, requireSchema: true }, async ({ db }) => {
        const tenant = await tenantNamed(db, o.tenant);
        return insertKey(db, tenant.id, f.scopes, f.description);
      });
      if (globalsOf(cmd).json) {
        printMessage(CreateApiKeyResponseSchema, { apiKey: made.secret, key: apiKeyOf(made.key) });
        return;
      }
      process.stdout.write(
        terminal`Created key ${made.key.id} with ${made.key.scopes.join(", ")}.\n` +
          terminal`Its secret (shown once, store it now):\n\n  ${made.secret}\n\n`,
      );
    });
  keys
    .command("list")
    .description("list the keys of a tenant (never their secrets)")
    .option(...tenantOption)
    .option("--include-revoked", "also list revoked keys")
    .action(async (o, cmd: Command) => {
      const rows = await withDatabase({ create: false, requireSchema: true }, async ({ db }) => {
        const tenant = await tenantNamed(db, o.tenant);
        return listKeys(db, tenant.id, {
          after: undefined,
          limit: MAX_LISTED,
          includeRevoked: Boolean(o.includeRevoked),
        });
      });
      if (globalsOf(cmd).json) {
        printMessage(ListApiKeysResponseSchema, { keys: rows.map(apiKeyOf) });
        return;
      }
      printTable(rows, [
        { header: "KEY", value: (k) => k.id },
        { header: "PREFIX", value: (k) => k.prefix },
        { header: "SCOPES", value: (k) => k.scopes.join(",") },
        { header: "DESCRIPTION", value: (k) => k.description },
        { header: "CREATED", value: (k) => iso(k.create_time) },
        { header: "REVOKED", value: (k) => iso(k.revoke_time) },
      ]);
    });
  keys
    .command("revoke")
    .description("revoke a key; every running instance refuses it at once")
    .argument("<key-id>")
    .option(...tenantOption)
    .action(async (keyId: string, o, cmd: Command) => {
      const revoked = await withDatabase({ create: false, requireSchema: true }, async ({ db }) => {
        const tenant = await tenantNamed(db, o.tenant);
        const done = await db.transaction((tx) => revokeKey(tx, tenant.id, keyId));
        // The operator, working on the database, may revoke any key.
        if (!done || !("key" in done))
          throw new CommandFailed(terminal`no key ${keyId} in tenant "${tenant.name}"`);
        return done.key;
      });
      if (globalsOf(cmd).json) printMessage(RevokeApiKeyResponseSchema, { key: apiKeyOf(revoked) });
      else process.stdout.write(terminal`Revoked key ${revoked.id} (${revoked.prefix}...).\n`);
    });

  program
    .command("operator-key")
    .description("the operator key of tenant default (operator; database access)")
    .command("rotate")
    .description(
      "revoke every operator key and print a new one, once: the way back in when it is lost",
    )
    .action(async (_o, cmd: Command) => {
      const rotated = await withDatabase({ create: false, requireSchema: true }, ({ db }) =>
        rotateOperatorKey(db),
      );
      if (globalsOf(cmd).json) {
        const keyJson = (k: (typeof rotated.revoked)[number]) =>
          toJson(ApiKeySchema, create(ApiKeySchema, apiKeyOf(k)));
        printJson({
          apiKey: rotated.secret,
          key: keyJson(rotated.key),
          revoked: rotated.revoked.map(keyJson),
        });
        return;
      }
      const revoked = rotated.revoked.map((k) => k.id).join(", ") || "none";
      process.stdout.write(
        terminal`Revoked operator keys: ${revoked}.\n` +
          terminal`New operator key ${rotated.key.id} (shown once, store it now):\n\n  ${rotated.secret}\n\n`,
      );
      if (process.env.HOLDFAST_ADMIN_KEY) {
        process.stderr.write(
          "Note: a key set with HOLDFAST_ADMIN_KEY is not stored and stays valid while servers run with it.\n",
        );
      }
    });

  program
    .command("migrate")
    .description("apply the database migrations this checkout has (safe while servers run)")
    .action(async (_o, cmd: Command) => {
      const { report, version } = await withDatabase(
        { create: true, requireSchema: false },
        async ({ pool }) => ({ report: await migrate(pool), version: await appliedVersion(pool) }),
      );
      if (globalsOf(cmd).json) {
        printJson({
          applied: report.migrations,
          functions: report.functions,
          schemaVersion: version,
        });
        return;
      }
      const done = [
        report.migrations.length > 0 ? `Applied ${report.migrations.join(", ")}` : "",
        report.functions.length > 0
          ? `re-created the functions of ${report.functions.join(", ")}`
          : "",
      ].filter(Boolean);
      process.stdout.write(
        done.length === 0
          ? `Schema up to date (version ${version}).\n`
          : `${done.join("; ")}; schema version ${version}.\n`,
      );
    });

  program
    .command("status")
    .description("schema version, running instances and how far event delivery is behind")
    .action(async (_o, cmd: Command) => {
      const status = await withDatabase({ create: false, requireSchema: false }, async (d) =>
        statusOf(d.pool, d.where),
      );
      if (globalsOf(cmd).json) {
        printJson(status);
        return;
      }
      const { schema, instances, outbox, webhooks } = status;
      const lines: [string, string][] = [
        ["database", status.database],
        [
          "schema",
          `version ${schema.applied} of ${schema.latest}` +
            (schema.applied < schema.latest ? ": run `holdfast migrate`" : " (up to date)"),
        ],
        [
          "instances",
          instances.length === 0
            ? "none seen (a role without pg_read_all_stats sees only its own)"
            : instances.map((i) => `${i.client} since ${i.since}`).join("; "),
        ],
      ];
      if (outbox) {
        lines.push([
          "events",
          outbox.newest ? `kept from ${outbox.oldest} to ${outbox.newest}` : "none kept",
        ]);
      }
      if (webhooks) {
        const more = (n: number) => (n >= BACKLOG_CAP ? `${n}+` : String(n));
        lines.push([
          "webhooks",
          `dispatch ${more(webhooks.undispatched)} events behind` +
            (webhooks.oldestUndispatched ? ` (oldest ${webhooks.oldestUndispatched})` : "") +
            `; ${more(webhooks.pending)} deliveries pending, ${more(webhooks.due)} due` +
            (webhooks.oldestDue ? ` (due since ${webhooks.oldestDue})` : ""),
        ]);
      }
      for (const [name, value] of lines) {
        process.stdout.write(`${name.padEnd(10)} ${visible(value)}\n`);
      }
    });
}

async function statusOf(q: Queryable, where: string) {
  const schema = { applied: await appliedVersion(q), latest: await latestVersion() };
  const current = schema.applied === schema.latest;
  const instances = (await runningInstances(q)).map((i) => ({
    client: i.client,
    since: iso(i.since),
  }));
  const span = current ? await outboxSpan(q) : undefined;
  const backlog = current ? await deliveryBacklog(q, BACKLOG_CAP) : undefined;
  return {
    database: where,
    schema,
    instances,
    // Only a current schema is known to have these tables in this shape.
    outbox: span && { oldest: iso(span.oldest), newest: iso(span.newest) },
    webhooks: backlog && {
      undispatched: backlog.undispatched,
      oldestUndispatched: iso(backlog.oldestUndispatched),
      pending: backlog.pending,
      due: backlog.due,
      oldestDue: iso(backlog.oldestDue),
    },
  };
}

/**
 * The options checked by the API's own rules, a refusal naming each by the
 * flag that gave it (`--burst`, not `rate_limit.burst`): bad input, the
 * usage and exit code 2.
 */
function parseOptions<T>(schema: z.ZodType<T>, input: unknown, flags: FlagNames): T {
  try {
    return v.parseRequest(schema, input);
  } catch (err) {
    if (err instanceof Rejection && err.reason === "VALIDATION_ERROR") {
      throw new UsageError(visible(inFlagWords(err.message, flags)));
    }
    throw err;
  }
}

async function tenantNamed(q: Queryable, idOrName: string): Promise<TenantRow> {
  const tenant = await findTenant(q, idOrName);
  if (!tenant) throw new CommandFailed(terminal`no tenant with the id or name "${idOrName}"`);
  return tenant;
}

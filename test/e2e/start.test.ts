import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/health/v1/health_pb.js";
import { ResourceService } from "../../gen/holdfast/v1/resource_pb.js";
import { TenantService } from "../../gen/holdfast/v1/tenant_pb.js";
import { clientFor } from "../support/clients.js";
import { freshDatabase } from "../support/database.js";
import { spawnFailing, spawnServer } from "../support/process.js";

describe("npm start", () => {
  it("on DATABASE_URL: prints the operator key once, serves, and stops on SIGTERM", async () => {
    const databaseUrl = await freshDatabase();
    const first = await spawnServer({ DATABASE_URL: databaseUrl, PORT: "0" });
    const key = /Operator API key[^\n]*\n\s*\n\s*(hf_\S+)/.exec(first.stdout())?.[1];
    expect(key).toMatch(/^hf_/);
    const tenants = await clientFor(TenantService, first.url, key).listTenants({});
    expect(tenants.tenants.map((t) => t.name)).toEqual(["default"]);
    expect(await first.stop()).toBe(0);

    const second = await spawnServer({ DATABASE_URL: databaseUrl, PORT: "0" });
    expect(second.stdout()).not.toContain("Operator API key");
    // The key printed by the first start still works.
    expect((await clientFor(TenantService, second.url, key).listTenants({})).tenants).toHaveLength(
      1,
    );
    expect(await second.stop()).toBe(0);
  });

  it("without DATABASE_URL: runs an embedded Postgres under the data directory and keeps its data", async () => {
    const dataDir = await mkdtemp(join(tmpdir(), "holdfast-start-"));
    afterAll(() => rm(dataDir, { recursive: true, force: true }));
    const env = {
      HOLDFAST_DATA_DIR: dataDir,
      HOLDFAST_ADMIN_KEY: "hf_start_test_admin_key_42",
      PORT: "0",
    };

    const first = await spawnServer(env);
    expect((await clientFor(Health, first.url, undefined).check({})).status).toBe(
      HealthCheckResponse_ServingStatus.SERVING,
    );
    const resources = clientFor(ResourceService, first.url, env.HOLDFAST_ADMIN_KEY, "connect");
    const made = await resources.createResource({ name: "Kept", timeZone: "UTC" });
    expect(existsSync(join(dataDir, "pg", "PG_VERSION"))).toBe(true);
    expect(await first.stop()).toBe(0);
    // Postgres was stopped with the server.
    expect(existsSync(join(dataDir, "pg", "postmaster.pid"))).toBe(false);

    const second = await spawnServer(env);
    const again = clientFor(ResourceService, second.url, env.HOLDFAST_ADMIN_KEY);
    expect(
      (await again.getResource({ resourceId: made.resource?.id as string })).resource?.name,
    ).toBe("Kept");
    expect(await second.stop()).toBe(0);
  });

  it("refuses a bad configuration, naming the variable", async () => {
    const port = await spawnFailing({ PORT: "eighty" });
    expect(port.code).toBe(2);
    expect(port.stderr).toContain("PORT");
    const key = await spawnFailing({ HOLDFAST_ADMIN_KEY: "short", PORT: "0" });
    expect(key.code).toBe(2);
    expect(key.stderr).toContain("HOLDFAST_ADMIN_KEY");
    const url = await spawnFailing({ DATABASE_URL: "mysql://nope" });
    expect(url.stderr).toContain("DATABASE_URL");
  });
});

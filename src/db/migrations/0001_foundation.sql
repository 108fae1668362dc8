-- Tenants, their API keys, and the catalog: resources and services with
-- versioned policies. Every row belongs to a tenant; child tables reference
-- parents by (tenant_id, id) so a row can never point into another tenant.

-- Time-ordered ids with a readable type prefix (`rsc_0193...`): 12 hex digits
-- of milliseconds, then 16 random hex digits. Time order keeps B-tree inserts
-- at the right edge and makes id order creation order, which list paging uses.
-- Unlike the functions in src/db/functions/, this one lives in a migration:
-- column defaults depend on it, so it cannot be dropped and re-created.
CREATE FUNCTION new_id(prefix text) RETURNS text
LANGUAGE sql VOLATILE AS $$
  SELECT prefix || '_'
    || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
    || substr(md5(random()::text || clock_timestamp()::text), 1, 16)
$$;

CREATE TABLE tenants (
  id text PRIMARY KEY DEFAULT new_id('ten'),
  name text NOT NULL UNIQUE,
  create_time timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id text PRIMARY KEY DEFAULT new_id('key'),
  tenant_id text NOT NULL REFERENCES tenants (id),
  -- SHA-256 of the secret; the secret itself is never stored.
  secret_hash bytea NOT NULL UNIQUE,
  prefix text NOT NULL,
  scopes text[] NOT NULL,
  description text NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT now(),
  revoke_time timestamptz
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant_id, id);

CREATE TABLE resources (
  tenant_id text NOT NULL REFERENCES tenants (id),
  id text NOT NULL DEFAULT new_id('rsc'),
  name text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('person', 'room', 'equipment', 'location', 'other')),
  time_zone text NOT NULL,
  capacity integer NOT NULL DEFAULT 1 CHECK (capacity BETWEEN 1 AND 10000),
  metadata jsonb NOT NULL DEFAULT '{}',
  -- NULL: available at all hours. Otherwise [{weekday, start, end}] with
  -- start/end in minutes since local midnight.
  weekly_schedule jsonb,
  active boolean NOT NULL DEFAULT true,
  -- Bumped by every change that affects what may be booked, so cached
  -- copies can be checked cheaply inside the booking transaction.
  revision integer NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE services (
  tenant_id text NOT NULL REFERENCES tenants (id),
  id text NOT NULL DEFAULT new_id('svc'),
  name text NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}',
  active boolean NOT NULL DEFAULT true,
  policy_version integer NOT NULL DEFAULT 1,
  revision integer NOT NULL DEFAULT 1,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

-- Every policy a service ever had. Rows are never updated: bookings refer
-- to the version they were made under.
CREATE TABLE policy_versions (
  tenant_id text NOT NULL,
  service_id text NOT NULL,
  version integer NOT NULL CHECK (version >= 1),
  policy jsonb NOT NULL,
  time_zone text NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, service_id, version),
  FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id)
);

CREATE TABLE service_resources (
  tenant_id text NOT NULL,
  service_id text NOT NULL,
  resource_id text NOT NULL,
  position integer NOT NULL,
  PRIMARY KEY (tenant_id, service_id, resource_id),
  FOREIGN KEY (tenant_id, service_id) REFERENCES services (tenant_id, id),
  FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id)
);
CREATE INDEX service_resources_by_resource ON service_resources (tenant_id, resource_id);

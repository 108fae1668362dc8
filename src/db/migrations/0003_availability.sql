-- Schedule exceptions of a resource, and keys the instances share.

CREATE TABLE overrides (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('ovr'),
  resource_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('block', 'open')),
  title text NOT NULL DEFAULT '',
  all_day boolean NOT NULL,
  start_date date NOT NULL,
  end_date date,
  -- Minutes since local midnight when not all day; the end may be 1440 (24:00).
  start_minute integer CHECK (start_minute BETWEEN 0 AND 1439),
  end_minute integer CHECK (end_minute BETWEEN 1 AND 1440),
  -- {frequency, interval, weekdays, monthDay, weekOfMonth, weekday, until} or NULL.
  recurrence jsonb,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id),
  CHECK (all_day = (start_minute IS NULL) AND all_day = (end_minute IS NULL)),
  CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX overrides_by_resource ON overrides (tenant_id, resource_id, id);

-- Keys the instances on one database share, e.g. for signing slot ids.
-- Created at random on first use; the first instance to insert wins.
CREATE TABLE server_secrets (
  name text PRIMARY KEY,
  secret bytea NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now()
);

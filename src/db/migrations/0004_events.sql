-- Delivering the outbox: event retention, webhook endpoints and their
-- deliveries.

-- Old events are pruned; the newest position pruned is kept, so a consumer
-- resuming from before it learns it missed events instead of silently
-- skipping them.
CREATE TABLE outbox_pruned (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  xid xid8 NOT NULL,
  seq bigint NOT NULL
);

-- Pruning finds old events by time.
CREATE INDEX outbox_by_time ON outbox (occur_time);

CREATE TABLE webhooks (
  tenant_id text NOT NULL REFERENCES tenants (id),
  id text NOT NULL DEFAULT new_id('whk'),
  url text NOT NULL,
  event_types text[] NOT NULL,
  description text NOT NULL DEFAULT '',
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'disabled')),
  disabled_reason text NOT NULL DEFAULT '',
  -- Events in a row whose delivery failed, since the last success.
  consecutive_failures integer NOT NULL DEFAULT 0,
  -- Signing secrets, encrypted (AES-256-GCM); the previous one keeps signing
  -- until previous_secret_expires after a rotation.
  secret bytea NOT NULL,
  previous_secret bytea,
  previous_secret_expires timestamptz,
  create_time timestamptz NOT NULL DEFAULT now(),
  update_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id)
);

CREATE TABLE deliveries (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('dlv'),
  webhook_id text NOT NULL,
  event_id text NOT NULL,
  event_type text NOT NULL,
  -- The exact JSON body POSTed on every attempt: {type, timestamp, data}.
  body text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempt_count integer NOT NULL DEFAULT 0,
  next_attempt_time timestamptz,
  -- A worker's claim on the delivery; if the worker dies, the lease runs out
  -- and another worker takes it.
  lease_until timestamptz,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  UNIQUE (tenant_id, webhook_id, event_id),
  FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_time) WHERE status = 'pending';
CREATE INDEX deliveries_by_webhook ON deliveries (tenant_id, webhook_id, id DESC);

CREATE TABLE delivery_attempts (
  tenant_id text NOT NULL,
  delivery_id text NOT NULL,
  attempt integer NOT NULL,
  attempt_time timestamptz NOT NULL,
  status_code integer NOT NULL,
  latency_ms integer NOT NULL,
  error text NOT NULL DEFAULT '',
  PRIMARY KEY (tenant_id, delivery_id, attempt),
  FOREIGN KEY (tenant_id, delivery_id) REFERENCES deliveries (tenant_id, id) ON DELETE CASCADE
);

-- How far the outbox has been turned into deliveries. One row; the
-- instance that locks it (SKIP LOCKED) dispatches, the others skip.
CREATE TABLE webhook_dispatch (
  only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
  xid xid8 NOT NULL,
  seq bigint NOT NULL
);
-- Start from the current position: events written before webhooks existed
-- had no endpoints to go to.
INSERT INTO webhook_dispatch (xid, seq) VALUES (pg_snapshot_xmin(pg_current_snapshot()), 0);

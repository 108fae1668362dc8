-- Bookings, the transactional outbox and idempotency keys. The functions
-- that write them are in src/db/functions/.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE bookings (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('bkg'),
  service_id text NOT NULL,
  resource_id text NOT NULL,
  start_time timestamptz NOT NULL,
  end_time timestamptz NOT NULL,
  -- The time the booking keeps the resource from others: its own range
  -- widened by the policy's buffers. Capacity counts these ranges.
  block_start timestamptz NOT NULL,
  block_end timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired', 'completed', 'no_show')),
  expire_time timestamptz,
  attendee jsonb NOT NULL DEFAULT '{}',
  metadata jsonb NOT NULL DEFAULT '{}',
  policy_version integer NOT NULL,
  cancel_reason text NOT NULL DEFAULT '',
  -- The resource took one booking at a time when this was written: the
  -- exclusion constraint below applies to it.
  exclusive boolean NOT NULL,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, id),
  -- No foreign keys to services and resources: those rows are never
  -- deleted (only deactivated), and the write functions read both under
  -- the lock before writing. A foreign key check locks the parent row
  -- (FOR KEY SHARE), so every concurrent hold of a service would share a
  -- multixact on its one row; measured, that cost a fifth of the hold rate.
  CHECK (end_time > start_time),
  CHECK (block_start <= start_time AND block_end >= end_time),
  -- Durations are at most a day and each buffer at most a day, so a block
  -- is at most 72 hours; overlap queries rely on this bound.
  CHECK (block_end - block_start <= interval '72 hours'),
  CHECK (status <> 'held' OR expire_time IS NOT NULL),
  -- The backstop: even a bug in the locked path cannot double-book a
  -- resource that takes one booking at a time. Lapsed holds must be marked
  -- expired before an overlapping insert, which the write functions do.
  -- The resource is keyed by the same 64-bit hash as its advisory lock:
  -- a GiST index compares that three times faster than two text columns.
  -- Two resources whose hashes collided (odds ~1e-19 per pair) would only
  -- refuse each other's overlapping bookings: it can fail closed, never open.
  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
    hashtextextended(tenant_id || '/' || resource_id, 0) WITH =, tstzrange(block_start, block_end) WITH &&
  ) WHERE (exclusive AND status IN ('held', 'confirmed'))
);

-- Occupancy lookups: blocks of one resource near a time.
CREATE INDEX bookings_occupancy ON bookings (tenant_id, resource_id, block_start)
  INCLUDE (block_end, status, expire_time) WHERE status IN ('held', 'confirmed');
-- Listing by start time.
CREATE INDEX bookings_by_start ON bookings (tenant_id, start_time, id);
-- The sweeper's queue of holds to expire.
CREATE INDEX bookings_holds_by_expiry ON bookings (expire_time) WHERE status = 'held';

-- Every state change, written in the transaction that made it. `xid` is the
-- writing transaction's id: readers only take events of transactions older
-- than every running one, so a transaction that commits late is never
-- skipped (see src/events/).
CREATE TABLE outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id text NOT NULL,
  event_id text NOT NULL DEFAULT new_id('evt'),
  type text NOT NULL,
  booking_id text,
  resource_id text,
  service_id text,
  occur_time timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- The event as protobuf JSON (holdfast.v1.Event without id, type, time, cursor).
  payload jsonb NOT NULL
);
CREATE INDEX outbox_order ON outbox (xid, seq);
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, xid, seq);

-- One row per Idempotency-Key, per tenant and method. `outcome` is the
-- response (or business rejection) as stored in the transaction that did
-- the work, so a crash can never separate the two.
CREATE TABLE idempotency_keys (
  tenant_id text NOT NULL,
  method text NOT NULL,
  key text NOT NULL,
  request_hash bytea NOT NULL,
  outcome jsonb,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, method, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (create_time);

-- Per-slot tallies of a tenant's booking writes, so that a hold checks its
-- tenant's booking quotas by summing 16 small rows instead of counting its
-- bookings (see quota_rejection in src/db/functions/11_quotas.sql). Each
-- is an upper bound of what it tallies, never the usage itself: `bookings`
-- the bookings made in `month` (UTC), `holds` the holds now active. Only
-- tenants with a booking quota have rows. Unlogged: a crash that empties
-- it only makes the next write count exactly and start the tallies again.
CREATE UNLOGGED TABLE quota_tallies (
  tenant_id text NOT NULL,
  slot integer NOT NULL,
  month timestamptz NOT NULL,
  bookings bigint NOT NULL,
  holds bigint NOT NULL,
  PRIMARY KEY (tenant_id, slot)
);

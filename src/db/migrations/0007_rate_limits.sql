-- Rate limits: requests per second with a burst, for a tenant (set by the
-- operator) and for an API key (set when it is created). NULL is the
-- configured default (HOLDFAST_TENANT_RATE_*, HOLDFAST_KEY_RATE_*). A key's
-- limit is also capped, when it is read, by its tenant's.
ALTER TABLE tenants
  ADD COLUMN rate_per_second integer CHECK (rate_per_second BETWEEN 1 AND 1000000),
  ADD COLUMN rate_burst integer CHECK (rate_burst BETWEEN 1 AND 1000000),
  ADD CONSTRAINT tenants_rate_limit_whole CHECK ((rate_per_second IS NULL) = (rate_burst IS NULL));

ALTER TABLE api_keys
  ADD COLUMN rate_per_second integer CHECK (rate_per_second BETWEEN 1 AND 1000000),
  ADD COLUMN rate_burst integer CHECK (rate_burst BETWEEN 1 AND 1000000),
  ADD CONSTRAINT api_keys_rate_limit_whole CHECK ((rate_per_second IS NULL) = (rate_burst IS NULL));

-- One token bucket per tenant and per key, shared by every instance, kept
-- as GCRA's "theoretical arrival time": the bucket is full when tat <= now,
-- and each request moves tat on by 1/rate seconds. Unlogged: it is rewritten
-- on almost every request, and a crash that empties it only forgives one
-- burst.
CREATE UNLOGGED TABLE rate_buckets (
  -- 't/<tenant id>' or 'k/<key id>'.
  bucket text PRIMARY KEY,
  tat timestamptz NOT NULL
);

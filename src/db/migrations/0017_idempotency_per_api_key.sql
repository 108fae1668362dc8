-- Idempotency-Keys are scoped to the API key that sent them as well as to
-- the tenant and method: a stored answer depends on what the sending key
-- made and may do (its calendar feeds, the scopes it may grant), so another
-- key of the tenant must not be given it, nor have its own request answered
-- by it. The operator's HOLDFAST_ADMIN_KEY has the fixed id
-- 'env:HOLDFAST_ADMIN_KEY'.
--
-- Which key stored the rows already here was not recorded: they get '',
-- which no API key has, and the functions (03_idempotency.sql) let such a
-- row answer any key of its tenant, as before, so a retry sent across the
-- upgrade still replays rather than runs twice. Rows are kept 24 hours, so
-- none is left a day after the upgrade. New rows always name their key.
ALTER TABLE idempotency_keys ADD COLUMN api_key_id text NOT NULL DEFAULT '';
ALTER TABLE idempotency_keys ALTER COLUMN api_key_id DROP DEFAULT;
ALTER TABLE idempotency_keys
  DROP CONSTRAINT idempotency_keys_pkey,
  ADD PRIMARY KEY (tenant_id, api_key_id, method, key);

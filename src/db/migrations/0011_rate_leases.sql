-- Rate-limit leases: each instance takes tokens from the shared buckets a
-- few at a time and spends them from memory (see lease_rate in
-- src/db/functions/10_rate_limits.sql). A row holds, per bucket and
-- instance, how many leased tokens that instance may still hold unspent:
-- what another instance, finding the bucket empty, may admit on credit, so
-- that tokens stranded at one instance never refuse a caller within its
-- limit at another. Unlogged like the buckets: worthless after a crash.
CREATE UNLOGGED TABLE rate_leases (
  -- The rate_buckets row the tokens came from.
  bucket text NOT NULL,
  -- A random id per running server process.
  instance text NOT NULL,
  tokens integer NOT NULL CHECK (tokens >= 0),
  -- When the instance can no longer spend them: its lease's lifetime, plus
  -- time for it to hand back what is left. Past this, a row is ignored
  -- (the instance stopped without handing them back).
  expire_time timestamptz NOT NULL,
  PRIMARY KEY (bucket, instance)
);

-- Rate limits, shared by every instance. GCRA (the generic cell rate
-- algorithm) is a token bucket kept as one timestamp, tat: the bucket holds
-- burst - (tat - now) * rate tokens, and taking n moves tat on by n/rate
-- seconds. Instances take tokens in leases (lease_rate) and spend them
-- from memory; see docs/limits.md for what that guarantees.
--
-- p_defaults: the configured {tenant rate, tenant burst, key rate, key burst}.
-- The limits in force for {tenant, key}: their own, else the configured
-- defaults; the key's never above the tenant's.
CREATE FUNCTION rate_limits_in_force(p_tenant text, p_key text, p_defaults integer[],
  OUT rates integer[], OUT bursts integer[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
  t_rate integer;
  t_burst integer;
  k_rate integer;
  k_burst integer;
BEGIN
  SELECT t.rate_per_second, t.rate_burst INTO t_rate, t_burst FROM tenants t WHERE t.id = p_tenant;
  SELECT k.rate_per_second, k.rate_burst INTO k_rate, k_burst
  FROM api_keys k WHERE k.id = p_key AND k.tenant_id = p_tenant;
  t_rate := coalesce(t_rate, p_defaults[1]);
  t_burst := coalesce(t_burst, p_defaults[2]);
  rates := ARRAY[t_rate, least(coalesce(k_rate, p_defaults[3]), t_rate)];
  bursts := ARRAY[t_burst, least(coalesce(k_burst, p_defaults[4]), t_burst)];
END
$$;

-- What GetUsage shows: the limits in force and the calls each bucket would
-- admit now, without taking any.
CREATE FUNCTION rate_remaining(p_tenant text, p_key text, p_defaults integer[],
  OUT rates integer[], OUT bursts integer[], OUT remaining integer[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_tat timestamptz;
  names text[] := ARRAY['t/' || p_tenant, 'k/' || p_key];
BEGIN
  SELECT l.rates, l.bursts INTO rates, bursts FROM rate_limits_in_force(p_tenant, p_key, p_defaults) l;
  remaining := '{}';
  FOR i IN 1..2 LOOP
    SELECT r.tat INTO v_tat FROM rate_buckets r WHERE r.bucket = names[i];
    remaining := remaining || greatest(floor((bursts[i]::double precision / rates[i]
      - coalesce(extract(epoch FROM (greatest(v_tat, v_now) - v_now))::double precision, 0)) * rates[i] + 1e-6), 0)::integer;
  END LOOP;
END
$$;

-- Leases a few tokens from the tenant's and the key's buckets at once, for
-- the instance p_instance to spend from memory: a lease is a sixteenth of
-- the smaller burst (1 for small bursts), at most p_lease_max; fewer when
-- the buckets hold fewer. An instance holds one lease per key, but all of
-- them draw on the one tenant bucket: so what it holds of the tenant's
-- tokens, over all its keys, is kept within one lease of the tenant's own
-- size (a sixteenth of its burst) too, and a key leased past that takes one
-- token per call. Otherwise the tokens held and lent (below) would grow
-- with the number of keys, and so would what a tenant is admitted beyond
-- its limit. The buckets are locked in a fixed order (tenant,
-- then key, so two calls never wait on each other the other way round);
-- the clock is read once both are held. A lease refused by either bucket
-- takes from neither.
--
-- The instance's previous lease of this key ends in the same statement:
-- p_refund unspent tokens go back (taken at p_refund_rates), and p_release
-- is what its rate_leases rows counted for it. With p_lease_max = 0 the
-- call only ends the previous lease. p_lease_ms: how long the instance may
-- spend the new one.
--
-- When the buckets are empty, the tokens instances may still hold unspent
-- (rate_leases rows not expired: other instances', and this one's for
-- the tenant's other keys) are credit: one token is admitted against them,
-- driving the bucket below zero by at most that much. So tokens stranded
-- in one lease never make a caller within its limit refused elsewhere, and
-- the deployment admits at most those tokens beyond burst + rate * time;
-- since no instance holds more than a lease of any bucket, that is at most
-- a lease per instance, however many keys the tenant has.
--
-- Returns the tokens granted (0: refused, with retry_ms until one would
-- be), the limits in force, and per bucket {tenant, key} the tokens left
-- in it and the milliseconds until it is full again.
CREATE FUNCTION lease_rate(
  p_tenant text, p_key text, p_defaults integer[], p_instance text, p_lease_max integer,
  p_lease_ms integer, p_refund integer, p_release integer, p_refund_rates integer[]
)
RETURNS TABLE (
  granted integer, retry_ms double precision, rates integer[], bursts integer[],
  remaining integer[], reset_ms double precision[]
)
LANGUAGE plpgsql AS $$
DECLARE
  names text[] := ARRAY['t/' || p_tenant, 'k/' || p_key];
  tats timestamptz[] := '{}';
  levels double precision[] := '{}';
  v_want integer;
  v_credit double precision;
  v_held integer;
  t0 timestamptz;
  b timestamptz;
BEGIN
  SELECT l.rates, l.bursts INTO rates, bursts FROM rate_limits_in_force(p_tenant, p_key, p_defaults) l;
  v_want := least(p_lease_max, greatest(1, least(bursts[1], bursts[2]) / 16));

  FOR i IN 1..2 LOOP
    INSERT INTO rate_buckets (bucket, tat) VALUES (names[i], '-infinity') ON CONFLICT DO NOTHING;
    SELECT r.tat INTO b FROM rate_buckets r WHERE r.bucket = names[i] FOR UPDATE;
    -- Read the clock once both locks are held: a wait for a lock is no credit.
    IF i = 2 THEN t0 := clock_timestamp(); END IF;
    tats := tats || b;
  END LOOP;

  -- The previous lease no longer counts as held.
  IF p_release > 0 THEN
    UPDATE rate_leases l SET tokens = greatest(l.tokens - p_release, 0)
    WHERE l.bucket = ANY (names) AND l.instance = p_instance;
  END IF;

  -- What this instance still holds of the tenant's tokens for its other
  -- keys: with it, the new lease may hold no more than a lease of the
  -- tenant's size (it holds granted - 1 once this call spends its token).
  SELECT coalesce(sum(l.tokens), 0) INTO v_held FROM rate_leases l
  WHERE l.bucket = names[1] AND l.instance = p_instance AND l.expire_time > t0;
  v_want := least(v_want, greatest(1, least(p_lease_max, bursts[1] / 16) - v_held));

  FOR i IN 1..2 LOOP
    -- Unspent tokens go back, as if never taken.
    IF p_refund > 0 THEN
      tats[i] := tats[i] - make_interval(secs => p_refund::double precision / p_refund_rates[i]);
    END IF;
    levels := levels || (bursts[i] - extract(epoch FROM (greatest(tats[i], t0) - t0))::double precision * rates[i]);
  END LOOP;

  -- A microsecond of slack absorbs the rounding of timestamps.
  granted := greatest(0, least(v_want, floor(least(levels[1], levels[2]) + 1e-6)::integer));
  retry_ms := 0;
  IF granted = 0 AND v_want > 0 THEN
    FOR i IN 1..2 LOOP
      SELECT coalesce(sum(l.tokens), 0) INTO v_credit FROM rate_leases l
      WHERE l.bucket = names[i] AND l.expire_time > t0;
      IF levels[i] + v_credit < 1 - 1e-6 THEN
        retry_ms := greatest(retry_ms, (1 - levels[i] - v_credit) / rates[i] * 1000);
      END IF;
    END LOOP;
    IF retry_ms = 0 THEN
      granted := 1;
    END IF;
  END IF;

  remaining := '{}';
  reset_ms := '{}';
  FOR i IN 1..2 LOOP
    IF granted > 0 THEN
      tats[i] := greatest(tats[i], t0) + make_interval(secs => granted::double precision / rates[i]);
      levels[i] := levels[i] - granted;
    END IF;
    IF granted > 0 OR p_refund > 0 THEN
      UPDATE rate_buckets SET tat = tats[i] WHERE bucket = names[i];
    END IF;
    -- The caller spends one token at once; the rest it may hold.
    IF granted > 1 THEN
      -- Ten seconds more than the lease: time for the sweep to hand back the rest.
      INSERT INTO rate_leases AS l (bucket, instance, tokens, expire_time)
      VALUES (names[i], p_instance, granted - 1, t0 + make_interval(secs => p_lease_ms / 1000.0 + 10))
      ON CONFLICT (bucket, instance) DO UPDATE
      -- Tokens of a row past its expiry can no longer be spent: not held.
      SET tokens = CASE WHEN l.expire_time > t0 THEN l.tokens ELSE 0 END + granted - 1,
        expire_time = greatest(l.expire_time, excluded.expire_time);
    END IF;
    remaining := remaining || greatest(floor(levels[i] + 1e-6), 0)::integer;
    reset_ms := reset_ms || greatest(extract(epoch FROM (greatest(tats[i], t0) - t0))::double precision, 0) * 1000;
  END LOOP;
  RETURN NEXT;
END
$$;

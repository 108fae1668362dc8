-- Rate limits, enforced for every instance at once: one call per request,
-- before any other work. GCRA (the generic cell rate algorithm) is a token
-- bucket kept as one timestamp: a request is admitted when, after it, the
-- bucket's backlog (tat - now) is at most burst/rate seconds. The tenant's
-- and the key's buckets are taken together, in that order (so two calls
-- never wait on each other's locks the other way round): a request refused
-- by either consumes from neither. Postgres's clock is the only clock, so
-- instances whose clocks differ still share one budget.
--
-- p_defaults: the configured {tenant rate, tenant burst, key rate, key burst}.
-- Returns, for the buckets {tenant, key}: the limits in force, the requests
-- left right now, and the milliseconds until the bucket is full again; and
-- when refused, the milliseconds until this request would be admitted.
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

CREATE FUNCTION take_rate(p_tenant text, p_key text, p_defaults integer[])
RETURNS TABLE (
  allowed boolean, retry_ms double precision, rates integer[], bursts integer[],
  remaining integer[], reset_ms double precision[]
)
LANGUAGE plpgsql AS $$
DECLARE
  names text[] := ARRAY['t/' || p_tenant, 'k/' || p_key];
  tats timestamptz[] := '{}';
  backlog double precision[] := '{}';
  after double precision[] := '{}';
  t0 timestamptz;
  b timestamptz;
  i integer;
BEGIN
  SELECT l.rates, l.bursts INTO rates, bursts FROM rate_limits_in_force(p_tenant, p_key, p_defaults) l;

  FOR i IN 1..2 LOOP
    INSERT INTO rate_buckets (bucket, tat) VALUES (names[i], '-infinity') ON CONFLICT DO NOTHING;
    SELECT r.tat INTO b FROM rate_buckets r WHERE r.bucket = names[i] FOR UPDATE;
    -- Read the clock once both locks are held: a wait for a lock is no credit.
    IF i = 2 THEN t0 := clock_timestamp(); END IF;
    tats := tats || b;
  END LOOP;

  allowed := true;
  retry_ms := 0;
  FOR i IN 1..2 LOOP
    -- Seconds of backlog before and after this request.
    backlog := backlog || extract(epoch FROM (greatest(tats[i], t0) - t0))::double precision;
    after := after || (backlog[i] + 1.0 / rates[i]);
    -- A microsecond of slack absorbs the rounding of timestamps.
    IF after[i] > bursts[i]::double precision / rates[i] + 1e-6 THEN
      allowed := false;
      retry_ms := greatest(retry_ms, (after[i] - bursts[i]::double precision / rates[i]) * 1000);
    END IF;
  END LOOP;

  remaining := '{}';
  reset_ms := '{}';
  FOR i IN 1..2 LOOP
    IF allowed THEN
      UPDATE rate_buckets SET tat = t0 + make_interval(secs => after[i]) WHERE bucket = names[i];
      backlog[i] := after[i];
    END IF;
    remaining := remaining || greatest(floor((bursts[i]::double precision / rates[i] - backlog[i]) * rates[i] + 1e-6), 0)::integer;
    reset_ms := reset_ms || backlog[i] * 1000;
  END LOOP;
  RETURN NEXT;
END
$$;

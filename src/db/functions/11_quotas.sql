-- Quotas per tenant. Each is checked where the work that would exceed it is
-- written, in the same transaction, and only for tenants that have that
-- quota: a tenant without quotas pays one primary-key read and takes no
-- lock. A tenant with one takes a tenant-wide advisory lock for the quota's
-- group (bookings, or one catalog kind) before counting, held until commit,
-- so two instances can never both take the last unit.

-- How much of a quota is in use. `bookings_per_month` counts the bookings
-- made since the calendar month began (UTC): holds and direct bookings,
-- each once (confirming a hold adds nothing), leaving out holds that lapsed.
CREATE FUNCTION quota_usage(p_tenant text, p_quota text, p_now timestamptz) RETURNS bigint
LANGUAGE plpgsql STABLE AS $$
DECLARE
  n bigint;
BEGIN
  CASE p_quota
    WHEN 'bookings_per_month' THEN
      SELECT count(*) INTO n FROM bookings b
      WHERE b.tenant_id = p_tenant
        AND b.create_time >= date_trunc('month', p_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        AND b.status <> 'expired' AND NOT (b.status = 'held' AND b.expire_time <= p_now);
    WHEN 'active_holds' THEN
      SELECT count(*) INTO n FROM bookings b
      WHERE b.tenant_id = p_tenant AND b.status = 'held' AND b.expire_time > p_now;
    WHEN 'resources' THEN
      SELECT count(*) INTO n FROM resources r WHERE r.tenant_id = p_tenant AND r.active;
    WHEN 'services' THEN
      SELECT count(*) INTO n FROM services s WHERE s.tenant_id = p_tenant AND s.active;
    WHEN 'webhooks' THEN
      SELECT count(*) INTO n FROM webhooks w WHERE w.tenant_id = p_tenant;
    WHEN 'api_keys' THEN
      SELECT count(*) INTO n FROM api_keys k WHERE k.tenant_id = p_tenant AND k.revoke_time IS NULL;
  END CASE;
  RETURN n;
END
$$;

-- A tenant's quotas, by name; NULL for unlimited.
CREATE FUNCTION quota_limits(p_tenant text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object(
    'bookings_per_month', t.quota_bookings_per_month, 'active_holds', t.quota_active_holds,
    'resources', t.quota_resources, 'services', t.quota_services,
    'webhooks', t.quota_webhooks, 'api_keys', t.quota_api_keys)
  FROM tenants t WHERE t.id = p_tenant
$$;

-- The number of lock slots of the bookings group: that many writes of one
-- tenant with a quota can check it at once.
CREATE FUNCTION quota_slots() RETURNS integer
LANGUAGE sql IMMUTABLE AS 'SELECT 16';

-- Before writing one more of what `p_quotas` count (all of one group, e.g.
-- {active_holds, bookings_per_month}): NULL if there is room, else a
-- LIMIT_REACHED rejection naming the first quota used up. Nothing is locked
-- unless the tenant has one of these quotas. Callers that also lock
-- resources take these locks after them.
--
-- Catalog groups take one tenant lock for the group: their writes are rare.
-- The bookings group must not serialise a tenant's bookings, so its lock is
-- split into quota_slots() slots. Far from every limit (the usage committed
-- so far, plus a slot's worth for each slot, leaves room), a write takes one
-- slot at random and counts again under it: at most quota_slots() - 1 other
-- writes are then between their count and their commit, each adding at most
-- one, so usage + quota_slots() <= limit proves there is room for all of
-- them. Near a limit a write takes every slot, in order, and is alone. A
-- write that finds itself near the limit only under its slot raises HF004:
-- the caller runs it again, which then takes every slot.
CREATE FUNCTION quota_rejection(p_tenant text, p_group text, p_quotas text[], p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_limits jsonb := quota_limits(p_tenant);
  v_set text[] := '{}';
  v_quota text;
  v_limit bigint;
  v_usage bigint;
  v_slots integer := CASE WHEN p_group = 'bookings' THEN quota_slots() ELSE 1 END;
  v_near boolean := v_slots = 1;
  v_lock text := 'quota/' || p_tenant || '/' || p_group;
BEGIN
  FOREACH v_quota IN ARRAY p_quotas LOOP
    IF v_limits->>v_quota IS NOT NULL THEN
      v_set := v_set || v_quota;
    END IF;
  END LOOP;
  IF cardinality(v_set) = 0 THEN
    RETURN NULL;
  END IF;

  IF NOT v_near THEN
    FOREACH v_quota IN ARRAY v_set LOOP
      v_near := v_near OR quota_usage(p_tenant, v_quota, p_now) + 2 * v_slots > (v_limits->>v_quota)::bigint;
    END LOOP;
  END IF;
  IF v_near THEN
    FOR i IN 0 .. v_slots - 1 LOOP
      PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || i, 0));
    END LOOP;
  ELSE
    PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || floor(random() * v_slots)::integer, 0));
  END IF;

  FOREACH v_quota IN ARRAY v_set LOOP
    v_limit := (v_limits->>v_quota)::bigint;
    v_usage := quota_usage(p_tenant, v_quota, p_now);
    IF NOT v_near AND v_usage + v_slots > v_limit THEN
      RAISE EXCEPTION 'the tenant came near its quota % while the request was checked', v_quota
        USING ERRCODE = 'HF004';
    END IF;
    IF v_usage >= v_limit THEN
      RETURN rejection('LIMIT_REACHED',
        format('the tenant''s quota %s is used up: %s in use of %s', v_quota, v_usage, v_limit),
        jsonb_build_object('metadata', jsonb_build_object(
          'quota', v_quota, 'limit', v_limit::text, 'usage', v_usage::text)));
    END IF;
  END LOOP;
  RETURN NULL;
END
$$;

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

-- Before writing one more of what `p_quotas` count (all of one group, e.g.
-- {active_holds, bookings_per_month}): NULL if there is room, else a
-- LIMIT_REACHED rejection naming the first quota used up. Takes the group's
-- tenant lock only when one of them is set; callers that also lock
-- resources take this lock after them.
CREATE FUNCTION quota_rejection(p_tenant text, p_group text, p_quotas text[], p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_limits jsonb := quota_limits(p_tenant);
  v_quota text;
  v_limit bigint;
  v_usage bigint;
  v_locked boolean := false;
BEGIN
  FOREACH v_quota IN ARRAY p_quotas LOOP
    v_limit := (v_limits->>v_quota)::bigint;
    CONTINUE WHEN v_limit IS NULL;
    IF NOT v_locked THEN
      PERFORM pg_advisory_xact_lock(hashtextextended('quota/' || p_tenant || '/' || p_group, 0));
      v_locked := true;
    END IF;
    v_usage := quota_usage(p_tenant, v_quota, p_now);
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

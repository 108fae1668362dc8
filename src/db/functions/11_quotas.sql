-- Quotas per tenant. Each is checked where the work that would exceed it is
-- written, in the same transaction, and only for tenants that have that
-- quota: a tenant without quotas pays one primary-key read (a booking
-- write reads the tenant's quota columns with its service and calls
-- quota_rejection only when one is set) and takes no lock. A tenant with one takes advisory locks (see quota_rejection), held
-- until commit, so two instances can never both take the last unit.

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

-- Whether usage plus p_margin stays within every quota of p_set: bookings
-- for bookings_per_month, holds for active_holds.
CREATE FUNCTION quota_room(p_set text[], p_limits jsonb, p_bookings bigint, p_holds bigint, p_margin integer)
RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
  SELECT bool_and(CASE q WHEN 'active_holds' THEN p_holds ELSE p_bookings END + p_margin
                  <= (p_limits->>q)::bigint)
  FROM unnest(p_set) AS q
$$;

-- Takes the tenant's lock of a catalog group (one quota: resources,
-- services, webhooks or api_keys), the one quota_rejection takes, when the
-- tenant has that quota; held until commit. For a write that adds one only
-- in some cases (bringing an inactive row back): it takes this lock first,
-- then reads whether it adds one, so no other write of the group can add
-- one in between, and calls quota_rejection only if it does.
CREATE FUNCTION quota_lock(p_tenant text, p_group text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF quota_limits(p_tenant)->>p_group IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('quota/' || p_tenant || '/' || p_group || '/0', 0));
  END IF;
END
$$;

-- Before writing one more of what `p_quotas` count (all of one group, e.g.
-- {active_holds, bookings_per_month}): NULL if there is room, else a
-- LIMIT_REACHED rejection naming the first quota used up. Nothing is locked
-- unless the tenant has one of these quotas. Callers that also lock
-- resources take these locks after them.
--
-- Catalog groups take one tenant lock for the group and count: their
-- writes are rare.
--
-- The bookings group must not serialise a tenant's bookings, so its lock is
-- split into quota_slots() slots, and it does not count: each slot has a
-- row in quota_tallies whose sums over the slots are upper bounds of the
-- month's bookings and of the active holds (every booking write adds one to
-- its slot's row, made or not, and nothing is taken off: a booking
-- cancelled or a hold lapsed still counts there). Far from every limit (the
-- committed tallies leave room for two writes per slot), a write takes one
-- slot at random, adds itself to that slot's row, and sums the rows again:
-- at most quota_slots() - 1 other writes are then between their sum and
-- their commit, each adding at most one, so tallies + quota_slots() - 1
-- within the limit proves there is room for all of them, and they run side
-- by side. Near a limit (or without tallies yet) a write takes every slot,
-- in order, so it is alone, counts exactly, and starts the tallies again
-- from the exact counts. A write that finds itself near the limit only
-- under its slot raises HF004: the caller runs it again, which then takes
-- every slot. So the exact count runs only once the tallies, which drift
-- up with every cancelled booking and lapsed hold, come near a limit.
CREATE FUNCTION quota_rejection(p_tenant text, p_group text, p_quotas text[], p_now timestamptz)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_limits jsonb := quota_limits(p_tenant);
  v_set text[] := '{}';
  v_quota text;
  v_limit bigint;
  v_usage bigint;
  v_lock text := 'quota/' || p_tenant || '/' || p_group;
  v_slots integer := quota_slots();
  v_slot integer;
  v_month timestamptz := date_trunc('month', p_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  v_hold integer := CASE WHEN 'active_holds' = ANY (p_quotas) THEN 1 ELSE 0 END;
  v_rows integer;
  v_bookings bigint;
  v_holds bigint;
BEGIN
  FOREACH v_quota IN ARRAY p_quotas LOOP
    IF v_limits->>v_quota IS NOT NULL THEN
      v_set := v_set || v_quota;
    END IF;
  END LOOP;
  IF cardinality(v_set) = 0 THEN
    RETURN NULL;
  END IF;

  IF p_group <> 'bookings' THEN
    PERFORM quota_lock(p_tenant, p_group);
    v_usage := quota_usage(p_tenant, v_set[1], p_now);
    v_limit := (v_limits->>v_set[1])::bigint;
    IF v_usage >= v_limit THEN
      RETURN quota_used_up(v_set[1], v_limit, v_usage);
    END IF;
    RETURN NULL;
  END IF;

  SELECT count(*), coalesce(sum(t.bookings) FILTER (WHERE t.month = v_month), 0), coalesce(sum(t.holds), 0)
  INTO v_rows, v_bookings, v_holds FROM quota_tallies t WHERE t.tenant_id = p_tenant;
  IF v_rows = v_slots AND quota_room(v_set, v_limits, v_bookings, v_holds, 2 * v_slots) THEN
    v_slot := floor(random() * v_slots)::integer;
    PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || v_slot, 0));
    UPDATE quota_tallies t
    SET bookings = CASE WHEN t.month = v_month THEN t.bookings ELSE 0 END + 1, month = v_month,
        holds = t.holds + v_hold
    WHERE t.tenant_id = p_tenant AND t.slot = v_slot;
    SELECT count(*), coalesce(sum(t.bookings) FILTER (WHERE t.month = v_month), 0), coalesce(sum(t.holds), 0)
    INTO v_rows, v_bookings, v_holds FROM quota_tallies t WHERE t.tenant_id = p_tenant;
    -- This write is in the sums already; the other slots' writers are not.
    IF v_rows < v_slots OR NOT quota_room(v_set, v_limits, v_bookings, v_holds, v_slots - 1) THEN
      RAISE EXCEPTION 'the tenant came near its booking quotas while the request was checked'
        USING ERRCODE = 'HF004';
    END IF;
    RETURN NULL;
  END IF;

  FOR i IN 0 .. v_slots - 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || i, 0));
  END LOOP;
  v_bookings := quota_usage(p_tenant, 'bookings_per_month', p_now);
  v_holds := quota_usage(p_tenant, 'active_holds', p_now);
  FOREACH v_quota IN ARRAY v_set LOOP
    v_limit := (v_limits->>v_quota)::bigint;
    v_usage := CASE v_quota WHEN 'active_holds' THEN v_holds ELSE v_bookings END;
    IF v_usage >= v_limit THEN
      RETURN quota_used_up(v_quota, v_limit, v_usage);
    END IF;
  END LOOP;
  -- The tallies start again from the exact counts, this write included.
  INSERT INTO quota_tallies AS t (tenant_id, slot, month, bookings, holds)
  SELECT p_tenant, s, v_month, CASE WHEN s = 0 THEN v_bookings + 1 ELSE 0 END,
         CASE WHEN s = 0 THEN v_holds + v_hold ELSE 0 END
  FROM generate_series(0, v_slots - 1) AS s
  ON CONFLICT (tenant_id, slot) DO UPDATE
  SET month = excluded.month, bookings = excluded.bookings, holds = excluded.holds;
  RETURN NULL;
END
$$;

-- The LIMIT_REACHED rejection of a quota used up.
CREATE FUNCTION quota_used_up(p_quota text, p_limit bigint, p_usage bigint) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT rejection('LIMIT_REACHED',
    format('the tenant''s quota %s is used up: %s in use of %s', p_quota, p_usage, p_limit),
    jsonb_build_object('metadata', jsonb_build_object(
      'quota', p_quota, 'limit', p_limit::text, 'usage', p_usage::text)))
$$;

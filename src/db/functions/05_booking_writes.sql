-- Every booking write is one function call: it locks, checks against the
-- database clock, writes the booking, its event and the idempotent outcome,
-- and commits, so the resource lock is held for one round trip at most.
--
-- The writes run with plan_cache_mode = force_generic_plan. Their queries
-- take their times as parameters, and for a range over a parameter the
-- planner estimates a generic plan dearer than a plan for the actual values,
-- so by default it may plan every such query afresh on every call (with
-- every index of bookings to consider): with holds at scattered times that
-- was about a quarter of a hold's Postgres CPU (docs/benchmarks.md). The
-- generic plans use the same indexes (checked with EXPLAIN (GENERIC_PLAN)):
-- each query names the tenant and the resource or booking by equality.
--
-- The p_idem_* arguments are the call's Idempotency-Key (03_idempotency.sql):
-- the method, the key, the request's hash and the API key that sent it,
-- which scopes the key with the tenant and method. All NULL without a key;
-- p_idem_api_key comes last, with a default, so direct calls without a key
-- can leave it out.

-- CreateHold (p_hold_ttl set) and CreateBooking (p_hold_ttl NULL), in one
-- call. The caller has checked the clock-free rules against the service and
-- resources at the given revisions; if any changed since, this raises HF001
-- and the caller re-reads and retries. Candidates come in order of
-- preference and the first with room gets the booking: a hold that names
-- its resource passes one; a hold that lets Holdfast pick passes the
-- service's free resources in fair order. All candidates are locked first,
-- in the order of their lock keys, so concurrent picks over overlapping sets
-- cannot deadlock, and the idempotency key records the one outcome of the
-- whole attempt. Returns {"response": {"booking": ...}} or {"error": {...}},
-- plus "replayed".
CREATE FUNCTION create_booking(
  p_tenant text, p_service text, p_resources text[],
  p_service_revision integer, p_resource_revisions integer[], p_policy_version integer,
  p_start timestamptz, p_end timestamptz,
  p_buffer_before interval, p_buffer_after interval,
  p_min_notice interval, p_max_advance interval,
  p_hold_ttl interval,
  p_attendee jsonb, p_metadata jsonb,
  p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_capacity integer;
  v_resource text;
  v_key bigint;
  v_from timestamptz := p_start - p_buffer_before;
  v_to timestamptz := p_end + p_buffer_after;
  v_stored jsonb;
  v_current boolean;
  v_quotas boolean;
  b bookings;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  -- The resource locks. One resource: when its lock is free it is taken at
  -- once. When another write holds it, a time that committed bookings
  -- already fill is refused before queueing for the lock, so when many
  -- callers race for one slot the late ones answer at once rather than one
  -- after another. Only a refusal is decided without the lock: it is true
  -- of the committed state this statement reads. Everything else is decided
  -- under the lock.
  IF cardinality(p_resources) = 1 THEN
    v_key := hashtextextended(p_tenant || '/' || p_resources[1], 0);
    IF NOT pg_try_advisory_xact_lock(v_key) THEN
      v_now := clock_timestamp();
      SELECT r.capacity INTO v_capacity FROM resources r WHERE r.tenant_id = p_tenant AND r.id = p_resources[1];
      IF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NULL
         AND peak_occupancy(p_tenant, p_resources[1], v_from, v_to, v_now, NULL, v_capacity) >= v_capacity THEN
        v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
          jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resources[1], v_from, v_to, v_now, NULL)));
      ELSE
        PERFORM pg_advisory_xact_lock(v_key);
      END IF;
    END IF;
  ELSE
    FOR v_key IN
      SELECT DISTINCT hashtextextended(p_tenant || '/' || r, 0) AS k FROM unnest(p_resources) AS r ORDER BY k
    LOOP
      PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
  END IF;

  IF v_outcome IS NULL THEN
    v_now := clock_timestamp();

    -- The service as checked, whether the tenant has a quota this write
    -- counts against, and the first candidate as checked (its capacity,
    -- NULL if it changed), in one read.
    SELECT s.revision = p_service_revision,
           t.quota_bookings_per_month IS NOT NULL OR (p_hold_ttl IS NOT NULL AND t.quota_active_holds IS NOT NULL),
           (SELECT r.capacity FROM resources r
            WHERE r.tenant_id = p_tenant AND r.id = p_resources[1] AND r.revision = p_resource_revisions[1])
      INTO v_current, v_quotas, v_capacity
    FROM services s, tenants t WHERE s.tenant_id = p_tenant AND s.id = p_service AND t.id = p_tenant;
    IF v_current IS NOT TRUE THEN
      RAISE EXCEPTION 'the service changed while the request was checked' USING ERRCODE = 'HF001';
    END IF;

    -- The tenant's booking quotas (11_quotas.sql), locked after the resources.
    IF v_quotas THEN
      v_outcome := quota_rejection(p_tenant, 'bookings', CASE WHEN p_hold_ttl IS NULL
        THEN ARRAY['bookings_per_month'] ELSE ARRAY['active_holds', 'bookings_per_month'] END, v_now);
    END IF;
    v_outcome := coalesce(v_outcome, notice_rejection(p_start, v_now, p_min_notice, p_max_advance));
    IF v_outcome IS NULL THEN
      FOR i IN 1 .. cardinality(p_resources) LOOP
        v_resource := p_resources[i];
        IF i > 1 THEN
          SELECT r.capacity INTO v_capacity FROM resources r
          WHERE r.tenant_id = p_tenant AND r.id = v_resource AND r.revision = p_resource_revisions[i];
        END IF;
        IF v_capacity IS NULL THEN
          RAISE EXCEPTION 'a resource changed while the request was checked' USING ERRCODE = 'HF001';
        END IF;
        IF room_for_block(p_tenant, v_resource, v_from, v_to, v_now, NULL, v_capacity) THEN
          INSERT INTO bookings (tenant_id, service_id, resource_id, start_time, end_time, block_start, block_end,
                                status, expire_time, attendee, metadata, policy_version, exclusive,
                                create_time, update_time)
          VALUES (p_tenant, p_service, v_resource, p_start, p_end, v_from, v_to,
                  CASE WHEN p_hold_ttl IS NULL THEN 'confirmed' ELSE 'held' END,
                  v_now + p_hold_ttl, p_attendee, p_metadata, p_policy_version, v_capacity = 1,
                  clock_timestamp(), clock_timestamp())
          RETURNING * INTO b;
          v_outcome := jsonb_build_object('response', jsonb_build_object('booking',
            emit_booking_event(CASE WHEN p_hold_ttl IS NULL THEN 'booking.confirmed' ELSE 'booking.held' END, b)));
          EXIT;
        END IF;
      END LOOP;
      IF v_outcome IS NULL THEN
        v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
          jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resources[1], v_from, v_to, v_now, NULL)));
      END IF;
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      b.id IS NOT NULL);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$$;

-- One state change of one booking: confirm, extend, cancel, complete,
-- no_show. These never add occupancy, so the booking's row lock is enough:
-- a concurrent write that expires the hold, or reads it as taken, waits
-- for this one and sees its result (room_for_block counts again after it
-- waited).
CREATE FUNCTION change_booking(
  p_tenant text, p_id text, p_action text, p_ttl interval, p_reason text,
  p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_hold interval;
  v_max interval;
  v_was text;
  v_json jsonb;
  v_stored jsonb;
  b bookings;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  SELECT * INTO b FROM bookings WHERE tenant_id = p_tenant AND id = p_id FOR UPDATE;
  v_now := clock_timestamp();
  IF NOT FOUND THEN
    v_outcome := rejection('BOOKING_NOT_FOUND', format('no booking with id "%s"', p_id));
  ELSE
    IF b.status = 'held' AND b.expire_time <= v_now THEN
      -- The hold lapsed and the sweeper has not marked it yet: record it now.
      UPDATE bookings SET status = 'expired', update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.expired', b);
    END IF;
    v_was := b.status;

    IF p_action = 'confirm' AND b.status = 'held' THEN
      UPDATE bookings SET status = 'confirmed', expire_time = NULL, update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.confirmed', b);
    ELSIF p_action = 'extend' AND b.status = 'held' THEN
      SELECT make_interval(secs => (p.policy->>'holdTtlMs')::numeric / 1000),
             make_interval(secs => (p.policy->>'maxHoldTtlMs')::numeric / 1000)
        INTO v_hold, v_max
      FROM policy_versions p
      WHERE p.tenant_id = p_tenant AND p.service_id = b.service_id AND p.version = b.policy_version;
      -- The expiry never moves earlier; an extension that would not move it
      -- later changes nothing and records no event.
      IF v_now + least(coalesce(p_ttl, v_hold), v_max) > b.expire_time THEN
        UPDATE bookings SET expire_time = v_now + least(coalesce(p_ttl, v_hold), v_max), update_time = v_now
        WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
        v_json := emit_booking_event('booking.hold_extended', b);
      END IF;
    ELSIF p_action = 'cancel' AND b.status IN ('held', 'confirmed') THEN
      UPDATE bookings SET status = 'cancelled', cancel_reason = coalesce(p_reason, ''), update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.cancelled', b);
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' AND b.start_time > v_now THEN
      v_outcome := rejection('NOT_STARTED', format('the booking starts at %s; it can be marked %s once it has started',
        ts_text(b.start_time), CASE p_action WHEN 'complete' THEN 'completed' ELSE 'a no-show' END));
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' THEN
      UPDATE bookings SET status = CASE p_action WHEN 'complete' THEN 'completed' ELSE 'no_show' END, update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event(CASE p_action WHEN 'complete' THEN 'booking.completed' ELSE 'booking.no_show' END, b);
    ELSIF (p_action = 'confirm' AND b.status = 'confirmed')
       OR (p_action = 'cancel' AND b.status IN ('cancelled', 'expired'))
       OR (p_action = 'complete' AND b.status = 'completed')
       OR (p_action = 'no_show' AND b.status = 'no_show') THEN
      NULL; -- already there (a lapsed hold has released its time too): the booking unchanged
    ELSIF b.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(b.expire_time)));
    ELSE
      v_outcome := rejection('INVALID_STATE', format('cannot %s a booking that is %s', replace(p_action, '_', ' '), v_was),
        jsonb_build_object('metadata', jsonb_build_object('status', v_was)));
    END IF;
    IF v_outcome IS NULL THEN
      v_outcome := jsonb_build_object('response', jsonb_build_object('booking', coalesce(v_json, booking_json(b))));
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_json IS NOT NULL);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$$;

-- Moves a HELD or CONFIRMED booking to a new time and maybe another
-- resource of its service, in one call: the new time is secured and the old
-- one released by the same UPDATE, and the booking keeps its id and status.
-- When two resources are involved their locks are taken in a fixed order,
-- so two reschedules crossing each other cannot deadlock. The caller
-- checked the clock-free rules against the given revisions (HF001 if they
-- changed); the resource the booking is on is re-read under the locks and
-- the call raises HF002 if a concurrent move changed it, to be retried.
CREATE FUNCTION reschedule_booking(
  p_tenant text, p_id text, p_from_resource text, p_resource text,
  p_service_revision integer, p_resource_revision integer,
  p_start timestamptz, p_end timestamptz,
  p_buffer_before interval, p_buffer_after interval,
  p_min_notice interval, p_max_advance interval,
  p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_capacity integer;
  v_from timestamptz := p_start - p_buffer_before;
  v_to timestamptz := p_end + p_buffer_after;
  v_key bigint;
  b bookings;
  old bookings;
  v_wrote boolean := false;
  v_stored jsonb;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  FOR v_key IN
    SELECT DISTINCT k FROM unnest(ARRAY[hashtextextended(p_tenant || '/' || p_from_resource, 0),
                                         hashtextextended(p_tenant || '/' || p_resource, 0)]) AS k
    ORDER BY k
  LOOP
    PERFORM pg_advisory_xact_lock(v_key);
  END LOOP;
  v_now := clock_timestamp();

  SELECT * INTO old FROM bookings WHERE tenant_id = p_tenant AND id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    v_outcome := rejection('BOOKING_NOT_FOUND', format('no booking with id "%s"', p_id));
  ELSIF old.resource_id <> p_from_resource THEN
    RAISE EXCEPTION 'the booking moved while the request was checked' USING ERRCODE = 'HF002';
  ELSE
    SELECT r.capacity INTO v_capacity FROM resources r
    WHERE r.tenant_id = p_tenant AND r.id = p_resource AND r.revision = p_resource_revision
      AND EXISTS (SELECT 1 FROM services s
                  WHERE s.tenant_id = p_tenant AND s.id = old.service_id AND s.revision = p_service_revision);
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the service or resource changed while the request was checked' USING ERRCODE = 'HF001';
    END IF;

    IF old.status = 'held' AND old.expire_time <= v_now THEN
      UPDATE bookings SET status = 'expired', update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO old;
      PERFORM emit_booking_event('booking.expired', old);
      v_wrote := true;
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(old.expire_time)));
    ELSIF old.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(old.expire_time)));
    ELSIF old.status NOT IN ('held', 'confirmed') THEN
      v_outcome := rejection('INVALID_STATE', format('cannot reschedule a booking that is %s', old.status),
        jsonb_build_object('metadata', jsonb_build_object('status', old.status)));
    ELSIF p_resource = old.resource_id AND p_start = old.start_time AND p_end = old.end_time THEN
      -- Where it is already: the booking unchanged, and no event.
      v_outcome := jsonb_build_object('response', jsonb_build_object('booking', booking_json(old)));
    ELSIF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NOT NULL THEN
      v_outcome := notice_rejection(p_start, v_now, p_min_notice, p_max_advance);
    ELSE
      IF NOT room_for_block(p_tenant, p_resource, v_from, v_to, v_now, p_id, v_capacity) THEN
        v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
          jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resource, v_from, v_to, v_now, p_id)));
      ELSE
        UPDATE bookings
        SET resource_id = p_resource, start_time = p_start, end_time = p_end,
            block_start = v_from, block_end = v_to, exclusive = (v_capacity = 1), update_time = v_now
        WHERE tenant_id = p_tenant AND id = p_id
        RETURNING * INTO b;
        v_wrote := true;
        v_outcome := jsonb_build_object('response', jsonb_build_object('booking',
          emit_booking_event('booking.rescheduled', b, jsonb_build_object(
            'previousStartTime', ts_json(old.start_time),
            'previousEndTime', ts_json(old.end_time),
            'previousResourceId', old.resource_id))));
      END IF;
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_wrote);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$$;

-- The sweeper: marks up to p_limit lapsed holds expired, with their events.
-- SKIP LOCKED lets every instance sweep at once without waiting on each
-- other or on a write that is expiring the same hold.
CREATE FUNCTION expire_lapsed_holds(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  b bookings;
  n integer := 0;
BEGIN
  FOR b IN
    WITH lapsed AS (
      SELECT tenant_id, id FROM bookings
      WHERE status = 'held' AND expire_time <= now()
      ORDER BY expire_time LIMIT p_limit
      FOR UPDATE SKIP LOCKED
    )
    UPDATE bookings x SET status = 'expired', update_time = now()
    FROM lapsed l WHERE x.tenant_id = l.tenant_id AND x.id = l.id AND x.status = 'held'
    RETURNING x.*
  LOOP
    PERFORM emit_booking_event('booking.expired', b);
    n := n + 1;
  END LOOP;
  RETURN n;
END
$$;

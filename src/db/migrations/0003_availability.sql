-- Schedule exceptions of a resource, and moving a booking to a new time.

CREATE TABLE overrides (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('ovr'),
  resource_id text NOT NULL,
  kind text NOT NULL CHECK (kind IN ('block', 'open')),
  title text NOT NULL DEFAULT '',
  all_day boolean NOT NULL,
  start_date date NOT NULL,
  end_date date,
  -- Minutes since local midnight when not all day; the end may be 1440 (24:00).
  start_minute integer CHECK (start_minute BETWEEN 0 AND 1439),
  end_minute integer CHECK (end_minute BETWEEN 1 AND 1440),
  -- {frequency, interval, weekdays, monthDay, weekOfMonth, weekday, until} or NULL.
  recurrence jsonb,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, id),
  FOREIGN KEY (tenant_id, resource_id) REFERENCES resources (tenant_id, id),
  CHECK (all_day = (start_minute IS NULL) AND all_day = (end_minute IS NULL)),
  CHECK (end_date IS NULL OR end_date >= start_date)
);
CREATE INDEX overrides_by_resource ON overrides (tenant_id, resource_id, id);

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
  p_idem_method text, p_idem_key text, p_idem_hash bytea
) RETURNS jsonb
LANGUAGE plpgsql AS $$
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
    v_outcome := idempotent_replay(p_tenant, p_idem_method, p_idem_key, p_idem_hash);
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
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_json(old.expire_time)));
    ELSIF old.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_json(old.expire_time)));
    ELSIF old.status NOT IN ('held', 'confirmed') THEN
      v_outcome := rejection('INVALID_STATE', format('cannot reschedule a booking that is %s', old.status),
        jsonb_build_object('metadata', jsonb_build_object('status', old.status)));
    ELSIF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NOT NULL THEN
      v_outcome := notice_rejection(p_start, v_now, p_min_notice, p_max_advance);
    ELSE
      PERFORM expire_overlapping_holds(p_tenant, p_resource, v_from, v_to, v_now);
      IF peak_occupancy(p_tenant, p_resource, v_from, v_to, v_now, p_id, v_capacity) >= v_capacity THEN
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
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_wrote);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$$;

-- Keys the instances on one database share, e.g. for signing slot ids.
-- Created at random on first use; the first instance to insert wins.
CREATE TABLE server_secrets (
  name text PRIMARY KEY,
  secret bytea NOT NULL,
  create_time timestamptz NOT NULL DEFAULT now()
);

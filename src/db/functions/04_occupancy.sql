-- What occupies a resource, read under its lock: active blocks, the peak
-- of overlapping ones, the conflicts a refusal names, and the clock rules of
-- a new time.

-- A stable 64-bit advisory lock key for a tenant's resource. (Hot paths
-- inline the same expression.)
CREATE FUNCTION resource_lock_key(p_tenant text, p_resource text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT hashtextextended(p_tenant || '/' || p_resource, 0)
$$;

-- Marks the lapsed holds whose blocks overlap [p_from, p_to) expired, with
-- their events. The exclusion constraint cannot see the clock, so writes
-- call this before inserting.
CREATE FUNCTION expire_overlapping_holds(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  b bookings;
BEGIN
  FOR b IN
    UPDATE bookings SET status = 'expired', update_time = p_now
    WHERE tenant_id = p_tenant AND resource_id = p_resource AND status = 'held' AND expire_time <= p_now
      AND block_start < p_to AND block_start > p_from - interval '72 hours' AND block_end > p_from
    RETURNING *
  LOOP
    PERFORM emit_booking_event('booking.expired', b);
  END LOOP;
END
$$;

-- The active blocks of a resource that overlap [p_from, p_to), clipped to it.
CREATE FUNCTION active_blocks(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz, p_except text
) RETURNS TABLE (block_start timestamptz, block_end timestamptz, start_time timestamptz, end_time timestamptz, status text)
LANGUAGE sql STABLE AS $$
  SELECT greatest(b.block_start, p_from), least(b.block_end, p_to), b.start_time, b.end_time, b.status
  FROM bookings b
  WHERE b.tenant_id = p_tenant AND b.resource_id = p_resource AND b.status IN ('held', 'confirmed')
    AND (b.status = 'confirmed' OR b.expire_time > p_now)
    AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from
    AND b.id IS DISTINCT FROM p_except
$$;

-- How many blocks overlap at the busiest instant of [p_from, p_to). The
-- busiest instant is always the start of one of the overlapping blocks. For
-- a one-at-a-time resource, any overlap is enough to know.
CREATE FUNCTION peak_occupancy(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz, p_except text,
  p_capacity integer
) RETURNS integer
LANGUAGE plpgsql STABLE AS $$
DECLARE
  v_peak integer;
BEGIN
  IF p_capacity = 1 THEN
    PERFORM 1 FROM bookings b
    WHERE b.tenant_id = p_tenant AND b.resource_id = p_resource AND b.status IN ('held', 'confirmed')
      AND (b.status = 'confirmed' OR b.expire_time > p_now)
      AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from
      AND b.id IS DISTINCT FROM p_except
    LIMIT 1;
    RETURN CASE WHEN FOUND THEN 1 ELSE 0 END;
  END IF;
  WITH a AS (SELECT * FROM active_blocks(p_tenant, p_resource, p_from, p_to, p_now, p_except))
  SELECT coalesce(max((SELECT count(*) FROM a a2 WHERE a2.block_start <= a1.block_start AND a2.block_end > a1.block_start)), 0)
    INTO v_peak
  FROM a a1;
  RETURN v_peak;
END
$$;

-- Whether a write may add a block on [p_from, p_to) to a resource of
-- p_capacity, not counting the booking p_except, read under the resource's
-- lock. The lapsed holds overlapping it are marked expired first, with their
-- events (expire_overlapping_holds). One read of the overlapping blocks
-- decides when none has lapsed and fewer than p_capacity are active (then
-- no instant can be full); otherwise the lapsed are marked and the peak is
-- counted.
--
-- A hold this read saw lapsed may meanwhile have been confirmed or extended:
-- change_booking holds only the booking's row, and decides by the clock when
-- it took that row, which can be before the hold's expire_time while it
-- commits after it. Marking the lapsed waits for such a row, and skips it
-- once it is no longer held, so the active blocks are counted again after
-- the marking, from a snapshot that has what it waited for. Counted only
-- from the first read, a hold confirmed that way was left out, and a
-- resource of capacity 2 took a third booking.
CREATE FUNCTION room_for_block(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz, p_except text,
  p_capacity integer
) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
  v_lapsed boolean;
  v_active bigint;
BEGIN
  SELECT coalesce(bool_or(b.status = 'held' AND b.expire_time <= p_now), false),
         count(*) FILTER (WHERE (b.status = 'confirmed' OR b.expire_time > p_now) AND b.id IS DISTINCT FROM p_except)
    INTO v_lapsed, v_active
  FROM bookings b
  WHERE b.tenant_id = p_tenant AND b.resource_id = p_resource AND b.status IN ('held', 'confirmed')
    AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from;
  IF v_lapsed THEN
    PERFORM expire_overlapping_holds(p_tenant, p_resource, p_from, p_to, p_now);
    SELECT count(*) INTO v_active
    FROM bookings b
    WHERE b.tenant_id = p_tenant AND b.resource_id = p_resource AND b.status IN ('held', 'confirmed')
      AND (b.status = 'confirmed' OR b.expire_time > p_now) AND b.id IS DISTINCT FROM p_except
      AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from;
  END IF;
  RETURN v_active < p_capacity
    OR (p_capacity > 1 AND peak_occupancy(p_tenant, p_resource, p_from, p_to, p_now, p_except, p_capacity) < p_capacity);
END
$$;

-- What is in the way, for a SLOT_UNAVAILABLE answer: ranges and statuses,
-- with the resource and its zone (for the ranges' local times), never
-- another caller's attendee or metadata.
CREATE FUNCTION conflicts_json(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz, p_except text
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'startTime', ts_json(c.start_time), 'endTime', ts_json(c.end_time), 'status', c.status,
           'resourceId', p_resource, 'timeZone', r.time_zone)
           ORDER BY c.start_time), '[]')
  FROM (SELECT * FROM active_blocks(p_tenant, p_resource, p_from, p_to, p_now, p_except)
        ORDER BY start_time LIMIT 20) c
  LEFT JOIN resources r ON r.tenant_id = p_tenant AND r.id = p_resource
$$;

-- The clock rules of a new time, in one place: not before now + min notice
-- (nor in the past), not after now + max advance. NULL when it passes. The
-- instants in the metadata are written as every refusal writes one (ts_text).
CREATE FUNCTION notice_rejection(
  p_start timestamptz, p_now timestamptz, p_min_notice interval, p_max_advance interval
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_start < p_now + p_min_notice THEN rejection('TOO_SOON',
      CASE WHEN p_min_notice = interval '0' THEN 'the requested time has already begun'
           ELSE format('bookings must start at least %s min from now', extract(epoch FROM p_min_notice)::bigint / 60) END,
      jsonb_build_object('metadata', jsonb_build_object('earliest_start', ts_text(p_now + p_min_notice))))
    WHEN p_max_advance IS NOT NULL AND p_start > p_now + p_max_advance THEN rejection('TOO_FAR_AHEAD',
      format('bookings can start at most %s min from now', extract(epoch FROM p_max_advance)::bigint / 60),
      jsonb_build_object('metadata', jsonb_build_object('latest_start', ts_text(p_now + p_max_advance))))
  END
$$;

-- Bookings, the transactional outbox, idempotency keys, and the functions
-- that write them. Every booking write is one function call: it locks,
-- checks against the database clock, writes the booking, its event and the
-- idempotent outcome, and commits, so the resource lock is held for one
-- round trip at most.

CREATE EXTENSION IF NOT EXISTS btree_gist;

CREATE TABLE bookings (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('bkg'),
  service_id text NOT NULL,
  resource_id text NOT NULL,
  start_time timestamptz NOT NULL,
  end_time timestamptz NOT NULL,
  -- The time the booking keeps the resource from others: its own range
  -- widened by the policy's buffers. Capacity counts these ranges.
  block_start timestamptz NOT NULL,
  block_end timestamptz NOT NULL,
  status text NOT NULL CHECK (status IN ('held', 'confirmed', 'cancelled', 'expired', 'completed', 'no_show')),
  expire_time timestamptz,
  attendee jsonb NOT NULL DEFAULT '{}',
  metadata jsonb NOT NULL DEFAULT '{}',
  policy_version integer NOT NULL,
  cancel_reason text NOT NULL DEFAULT '',
  -- The resource took one booking at a time when this was written: the
  -- exclusion constraint below applies to it.
  exclusive boolean NOT NULL,
  create_time timestamptz NOT NULL,
  update_time timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, id),
  -- No foreign keys to services and resources: those rows are never
  -- deleted (only deactivated), and the write functions read both under
  -- the lock before writing. A foreign key check locks the parent row
  -- (FOR KEY SHARE), so every concurrent hold of a service would share a
  -- multixact on its one row; measured, that cost a fifth of the hold rate.
  CHECK (end_time > start_time),
  CHECK (block_start <= start_time AND block_end >= end_time),
  -- Durations are at most a day and each buffer at most a day, so a block
  -- is at most 72 hours; overlap queries rely on this bound.
  CHECK (block_end - block_start <= interval '72 hours'),
  CHECK (status <> 'held' OR expire_time IS NOT NULL),
  -- The backstop: even a bug in the locked path cannot double-book a
  -- resource that takes one booking at a time. Lapsed holds must be marked
  -- expired before an overlapping insert, which the write functions do.
  -- The resource is keyed by the same 64-bit hash as its advisory lock:
  -- a GiST index compares that three times faster than two text columns.
  -- Two resources whose hashes collided (odds ~1e-19 per pair) would only
  -- refuse each other's overlapping bookings: it can fail closed, never open.
  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (
    hashtextextended(tenant_id || '/' || resource_id, 0) WITH =, tstzrange(block_start, block_end) WITH &&
  ) WHERE (exclusive AND status IN ('held', 'confirmed'))
);

-- Occupancy lookups: blocks of one resource near a time.
CREATE INDEX bookings_occupancy ON bookings (tenant_id, resource_id, block_start)
  INCLUDE (block_end, status, expire_time) WHERE status IN ('held', 'confirmed');
-- Listing by start time.
CREATE INDEX bookings_by_start ON bookings (tenant_id, start_time, id);
-- The sweeper's queue of holds to expire.
CREATE INDEX bookings_holds_by_expiry ON bookings (expire_time) WHERE status = 'held';

-- Every state change, written in the transaction that made it. `xid` is the
-- writing transaction's id: readers only take events of transactions older
-- than every running one, so a transaction that commits late is never
-- skipped (see src/events/).
CREATE TABLE outbox (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id text NOT NULL,
  event_id text NOT NULL DEFAULT new_id('evt'),
  type text NOT NULL,
  booking_id text,
  resource_id text,
  service_id text,
  occur_time timestamptz NOT NULL DEFAULT clock_timestamp(),
  -- The event as protobuf JSON (holdfast.v1.Event without id, type, time, cursor).
  payload jsonb NOT NULL
);
CREATE INDEX outbox_order ON outbox (xid, seq);
CREATE INDEX outbox_by_tenant ON outbox (tenant_id, xid, seq);

-- One row per Idempotency-Key, per tenant and method. `outcome` is the
-- response (or business rejection) as stored in the transaction that did
-- the work, so a crash can never separate the two.
CREATE TABLE idempotency_keys (
  tenant_id text NOT NULL,
  method text NOT NULL,
  key text NOT NULL,
  request_hash bytea NOT NULL,
  outcome jsonb,
  create_time timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, method, key)
);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (create_time);

-- A stable 64-bit advisory lock key for a tenant's resource. (Hot paths
-- inline the same expression.)
CREATE FUNCTION resource_lock_key(p_tenant text, p_resource text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
  SELECT hashtextextended(p_tenant || '/' || p_resource, 0)
$$;

-- A booking as protobuf JSON (holdfast.v1.Booking). The one mapping from
-- rows: used for responses, stored idempotent outcomes and event payloads.
-- A hold past its expire_time reads as expired whether or not the sweeper
-- has marked it yet.
CREATE FUNCTION booking_json(b bookings) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_strip_nulls(jsonb_build_object(
      'id', b.id,
      'serviceId', b.service_id,
      'resourceId', b.resource_id,
      'startTime', ts_json(b.start_time),
      'endTime', ts_json(b.end_time),
      'status', 'BOOKING_STATUS_' || upper(
        CASE WHEN b.status = 'held' AND b.expire_time <= now() THEN 'expired' ELSE b.status END),
      'expireTime', ts_json(b.expire_time),
      'policyVersion', b.policy_version,
      'cancelReason', nullif(b.cancel_reason, ''),
      'createTime', ts_json(b.create_time),
      'updateTime', ts_json(b.update_time)))
    || jsonb_build_object('attendee', b.attendee, 'metadata', b.metadata)
$$;

-- Writes a booking's event to the outbox and returns the booking's JSON,
-- so the caller can answer with the same document without building it twice.
CREATE FUNCTION emit_booking_event(p_type text, b bookings, p_extra jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_json jsonb := booking_json(b);
BEGIN
  INSERT INTO outbox (tenant_id, type, booking_id, resource_id, service_id, payload)
  VALUES (b.tenant_id, p_type, b.id, b.resource_id, b.service_id, jsonb_build_object('booking', v_json) || p_extra);
  RETURN v_json;
END
$$;

CREATE FUNCTION rejection(p_reason text, p_message text, p_details jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
  SELECT jsonb_build_object('error', jsonb_build_object('reason', p_reason, 'message', p_message) || p_details)
$$;

-- What a key already answered: its stored outcome marked as replayed, or
-- an IDEMPOTENCY_KEY_REUSED rejection when it came with a different
-- request; NULL when the key is new (or older than the 24 hours keys are
-- kept).
CREATE FUNCTION idempotent_replay(p_tenant text, p_method text, p_key text, p_hash bytea) RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
DECLARE
  k idempotency_keys;
BEGIN
  SELECT * INTO k FROM idempotency_keys
  WHERE tenant_id = p_tenant AND method = p_method AND key = p_key
    AND create_time >= now() - interval '24 hours' AND outcome IS NOT NULL;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF k.request_hash <> p_hash THEN
    RETURN rejection('IDEMPOTENCY_KEY_REUSED',
      'this Idempotency-Key was already used with a different request');
  END IF;
  RETURN k.outcome || '{"replayed": true}';
END
$$;

-- The booking functions' way, one write per key: they look the key up
-- first (idempotent_replay), do their work, then store the outcome here.
-- NULL: stored. If a request with the same key committed meanwhile, its
-- outcome wins: this returns it (replayed, or IDEMPOTENCY_KEY_REUSED) when
-- this call wrote nothing, and raises HF003 when it did, so the whole
-- transaction rolls back and the caller runs it again, which then replays.
-- Concurrent duplicates therefore never both take effect.
CREATE FUNCTION keep_idempotent_outcome(
  p_tenant text, p_method text, p_key text, p_hash bytea, p_outcome jsonb, p_wrote boolean
) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO idempotency_keys AS i (tenant_id, method, key, request_hash, outcome)
  VALUES (p_tenant, p_method, p_key, p_hash, p_outcome)
  ON CONFLICT (tenant_id, method, key) DO UPDATE
    SET request_hash = excluded.request_hash, outcome = excluded.outcome, create_time = now()
    WHERE i.create_time < now() - interval '24 hours';
  IF FOUND THEN
    RETURN NULL;
  END IF;
  IF p_wrote THEN
    RAISE EXCEPTION 'a request with the same Idempotency-Key committed first' USING ERRCODE = 'HF003';
  END IF;
  RETURN idempotent_replay(p_tenant, p_method, p_key, p_hash);
END
$$;

-- The other mutations' way, for work spread over several statements:
-- claim the key at the start of the transaction, finish it at the end.
-- NULL: the caller owns the key and does the work; otherwise what the key
-- already answered. A duplicate sent while the first is still running
-- waits on the key's row until the first commits, then replays it.
CREATE FUNCTION claim_idempotency_key(p_tenant text, p_method text, p_key text, p_hash bytea) RETURNS jsonb
LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO idempotency_keys AS i (tenant_id, method, key, request_hash)
  VALUES (p_tenant, p_method, p_key, p_hash)
  ON CONFLICT (tenant_id, method, key) DO UPDATE
    SET request_hash = excluded.request_hash, outcome = NULL, create_time = now()
    WHERE i.create_time < now() - interval '24 hours';
  IF FOUND THEN
    RETURN NULL;
  END IF;
  RETURN idempotent_replay(p_tenant, p_method, p_key, p_hash);
END
$$;

CREATE FUNCTION finish_idempotency_key(p_tenant text, p_method text, p_key text, p_outcome jsonb) RETURNS void
LANGUAGE sql AS $$
  UPDATE idempotency_keys SET outcome = p_outcome
  WHERE tenant_id = p_tenant AND method = p_method AND key = p_key
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

-- What is in the way, for a SLOT_UNAVAILABLE answer: ranges and statuses
-- only, never another caller's attendee or metadata.
CREATE FUNCTION conflicts_json(
  p_tenant text, p_resource text, p_from timestamptz, p_to timestamptz, p_now timestamptz, p_except text
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'startTime', ts_json(c.start_time), 'endTime', ts_json(c.end_time), 'status', c.status)
           ORDER BY c.start_time), '[]')
  FROM (SELECT * FROM active_blocks(p_tenant, p_resource, p_from, p_to, p_now, p_except) LIMIT 20) c
$$;

-- The clock rules of a new time, in one place: not before now + min notice
-- (nor in the past), not after now + max advance. NULL when it passes.
CREATE FUNCTION notice_rejection(
  p_start timestamptz, p_now timestamptz, p_min_notice interval, p_max_advance interval
) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN p_start < p_now + p_min_notice THEN rejection('TOO_SOON',
      CASE WHEN p_min_notice = interval '0' THEN 'the requested time has already begun'
           ELSE format('bookings must start at least %s min from now', extract(epoch FROM p_min_notice)::bigint / 60) END,
      jsonb_build_object('metadata', jsonb_build_object('earliest_start', ts_json(p_now + p_min_notice))))
    WHEN p_max_advance IS NOT NULL AND p_start > p_now + p_max_advance THEN rejection('TOO_FAR_AHEAD',
      format('bookings can start at most %s min from now', extract(epoch FROM p_max_advance)::bigint / 60),
      jsonb_build_object('metadata', jsonb_build_object('latest_start', ts_json(p_now + p_max_advance))))
  END
$$;

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
  p_idem_method text, p_idem_key text, p_idem_hash bytea
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_capacity integer;
  v_resource text;
  v_key bigint;
  v_from timestamptz := p_start - p_buffer_before;
  v_to timestamptz := p_end + p_buffer_after;
  v_stored jsonb;
  b bookings;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  -- A time that committed bookings already fill is refused before queueing
  -- for the lock, so when many callers race for one slot the late ones
  -- answer at once rather than one after another. Only a refusal is decided
  -- without the lock: it is true of the committed state this statement
  -- reads. Everything else is decided under the lock.
  IF cardinality(p_resources) = 1 THEN
    v_now := clock_timestamp();
    SELECT r.capacity INTO v_capacity FROM resources r WHERE r.tenant_id = p_tenant AND r.id = p_resources[1];
    IF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NULL
       AND peak_occupancy(p_tenant, p_resources[1], v_from, v_to, v_now, NULL, v_capacity) >= v_capacity THEN
      v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
        jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resources[1], v_from, v_to, v_now, NULL)));
    END IF;
  END IF;

  IF v_outcome IS NULL THEN
    IF cardinality(p_resources) = 1 THEN
      PERFORM pg_advisory_xact_lock(hashtextextended(p_tenant || '/' || p_resources[1], 0));
    ELSE
      FOR v_key IN
        SELECT DISTINCT hashtextextended(p_tenant || '/' || r, 0) AS k FROM unnest(p_resources) AS r ORDER BY k
      LOOP
        PERFORM pg_advisory_xact_lock(v_key);
      END LOOP;
    END IF;
    v_now := clock_timestamp();

    PERFORM 1 FROM services s WHERE s.tenant_id = p_tenant AND s.id = p_service AND s.revision = p_service_revision;
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the service changed while the request was checked' USING ERRCODE = 'HF001';
    END IF;

    v_outcome := notice_rejection(p_start, v_now, p_min_notice, p_max_advance);
    IF v_outcome IS NULL THEN
      FOR i IN 1 .. cardinality(p_resources) LOOP
        v_resource := p_resources[i];
        SELECT r.capacity INTO v_capacity FROM resources r
        WHERE r.tenant_id = p_tenant AND r.id = v_resource AND r.revision = p_resource_revisions[i];
        IF NOT FOUND THEN
          RAISE EXCEPTION 'a resource changed while the request was checked' USING ERRCODE = 'HF001';
        END IF;
        PERFORM expire_overlapping_holds(p_tenant, v_resource, v_from, v_to, v_now);
        IF peak_occupancy(p_tenant, v_resource, v_from, v_to, v_now, NULL, v_capacity) < v_capacity THEN
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
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
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
-- for this one and sees its result.
CREATE FUNCTION change_booking(
  p_tenant text, p_id text, p_action text, p_ttl interval, p_reason text,
  p_idem_method text, p_idem_key text, p_idem_hash bytea
) RETURNS jsonb
LANGUAGE plpgsql AS $$
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
    v_outcome := idempotent_replay(p_tenant, p_idem_method, p_idem_key, p_idem_hash);
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
      UPDATE bookings
      SET expire_time = greatest(b.expire_time, v_now + least(coalesce(p_ttl, v_hold), v_max)), update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.hold_extended', b);
    ELSIF p_action = 'cancel' AND b.status IN ('held', 'confirmed') THEN
      UPDATE bookings SET status = 'cancelled', cancel_reason = coalesce(p_reason, ''), update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.cancelled', b);
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' AND b.start_time > v_now THEN
      v_outcome := rejection('NOT_STARTED', format('the booking starts at %s; it can be marked %s once it has started',
        ts_json(b.start_time), CASE p_action WHEN 'complete' THEN 'completed' ELSE 'a no-show' END));
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' THEN
      UPDATE bookings SET status = CASE p_action WHEN 'complete' THEN 'completed' ELSE 'no_show' END, update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event(CASE p_action WHEN 'complete' THEN 'booking.completed' ELSE 'booking.no_show' END, b);
    ELSIF (p_action = 'confirm' AND b.status = 'confirmed')
       OR (p_action = 'cancel' AND b.status = 'cancelled')
       OR (p_action = 'complete' AND b.status = 'completed')
       OR (p_action = 'no_show' AND b.status = 'no_show') THEN
      NULL; -- already there: the booking unchanged
    ELSIF b.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_json(b.expire_time)));
    ELSE
      v_outcome := rejection('INVALID_STATE', format('cannot %s a booking that is %s', replace(p_action, '_', ' '), v_was),
        jsonb_build_object('metadata', jsonb_build_object('status', v_was)));
    END IF;
    IF v_outcome IS NULL THEN
      v_outcome := jsonb_build_object('response', jsonb_build_object('booking', coalesce(v_json, booking_json(b))));
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_json IS NOT NULL);
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

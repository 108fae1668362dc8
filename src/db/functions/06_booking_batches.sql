-- Concurrent holds and bookings of one tenant, written as one batch: one
-- transaction, one call and one commit (src/booking/batches.ts gathers
-- them). Each request is create_booking() itself, called in order, so there
-- is one implementation of the rules and every request gets exactly the
-- checks and writes it would get alone, seeing the requests before it as
-- committed: the second of two for one slot is refused with the first's
-- conflict, a key used earlier in the batch replays that request's outcome.
--
-- Each request names one resource. The batch takes all their locks first,
-- in the order of their lock keys, as every write that locks several
-- resources does, so batches over overlapping sets (in this instance or
-- another) cannot deadlock; create_booking then finds its resource's lock
-- already held (advisory locks are re-entrant within a session).

-- The requests come as parallel arrays, item i of each being request i's
-- argument to create_booking (whose single resource is p_resources[i]); the
-- attendees and metadata as one JSON array each, and the answer is one JSON
-- array of their outcomes in the same order. (JSON rather than jsonb[]: an
-- array of documents travels as text with every quote escaped, which both
-- ends then parse character by character.) p_traceparents (NULL when no
-- caller is traced) holds each request's caller's traceparent, set as
-- holdfast.traceparent before the request runs, so that its events record
-- their own caller's trace (outbox.traceparent, 0010_trace_context.sql).
-- p_idem_api_keys holds each request's p_idem_api_key, the API key its
-- Idempotency-Key is scoped to. A refusal is an outcome, so it never
-- disturbs the others. What
-- create_booking raises (HF001 stale catalog, HF003 a duplicate key
-- committed elsewhere, a constraint) rolls the whole batch back: the caller
-- then runs each request alone, where it raises or answers exactly as it
-- always did. These are rare, and running a per-request subtransaction
-- (BEGIN ... EXCEPTION) on every batch to save them would cost every batch a
-- subtransaction and an extra XID per write.
CREATE FUNCTION create_bookings(
  p_tenant text, p_resources text[],
  p_services text[], p_service_revisions integer[], p_resource_revisions integer[],
  p_policy_versions integer[], p_starts timestamptz[], p_ends timestamptz[],
  p_buffers_before interval[], p_buffers_after interval[],
  p_min_notices interval[], p_max_advances interval[],
  p_hold_ttls interval[],
  p_attendees jsonb, p_metadata jsonb,
  p_idem_methods text[], p_idem_keys text[], p_idem_hashes bytea[],
  p_traceparents text[], p_idem_api_keys text[] DEFAULT NULL
) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
  v_outcomes jsonb[] := '{}';
  v_lock text := 'quota/' || p_tenant || '/bookings';
  v_key bigint;
BEGIN
  FOR v_key IN
    SELECT DISTINCT hashtextextended(p_tenant || '/' || r, 0) AS k FROM unnest(p_resources) AS r ORDER BY k
  LOOP
    PERFORM pg_advisory_xact_lock(v_key);
  END LOOP;
  -- quota_rejection's proof that a quota holds lets each open transaction
  -- add one booking under its quota slot. A batch adds several, so for a
  -- tenant with a booking quota it takes every slot, in order, after the
  -- resources (as a write near its limit does): no other write of the tenant
  -- is then between its count and its commit, and each request of the
  -- batch counts the ones before it.
  IF jsonb_strip_nulls(quota_limits(p_tenant)) ?| ARRAY['bookings_per_month', 'active_holds'] THEN
    FOR i IN 0 .. quota_slots() - 1 LOOP
      PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || i, 0));
    END LOOP;
  END IF;
  FOR i IN 1 .. cardinality(p_services) LOOP
    IF p_traceparents IS NOT NULL THEN
      PERFORM set_config('holdfast.traceparent', coalesce(p_traceparents[i], ''), true);
    END IF;
    v_outcomes := array_append(v_outcomes, create_booking(
      p_tenant, p_services[i], ARRAY[p_resources[i]], p_service_revisions[i], ARRAY[p_resource_revisions[i]],
      p_policy_versions[i], p_starts[i], p_ends[i], p_buffers_before[i], p_buffers_after[i],
      p_min_notices[i], p_max_advances[i], p_hold_ttls[i], p_attendees->(i - 1), p_metadata->(i - 1),
      p_idem_methods[i], p_idem_keys[i], p_idem_hashes[i], p_idem_api_keys[i]));
  END LOOP;
  RETURN to_jsonb(v_outcomes);
END
$$;

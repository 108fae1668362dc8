-- How rows and refusals read as protobuf JSON, in one place, so responses,
-- stored idempotent outcomes and event payloads are the same documents.

-- Timestamps as protobuf JSON (RFC 3339, UTC, microseconds). STABLE, as
-- to_char is: a SQL function is only inlined into its caller when it is
-- declared no less volatile than its body, and booking_json calls this five
-- times per booking (called, not inlined, each call is a query of its own).
CREATE FUNCTION ts_json(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- An instant as every refusal gives it, in its message and in its ErrorInfo
-- metadata (ts_text in SQL, instantText in src/zod-messages.ts): RFC 3339
-- in UTC as protobuf JSON writes a Timestamp canonically, with no fraction
-- at a whole second and else 3 or 6 digits ("2030-03-04T09:00:00Z",
-- "2030-03-04T09:00:00.250Z"), so a refusal reads the same whichever path
-- raised it, and its metadata as the API's Timestamps do. ts_json keeps its
-- fixed six digits: it writes the stored documents.
CREATE FUNCTION ts_text(t timestamptz) RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', CASE
    WHEN extract(microseconds FROM t AT TIME ZONE 'UTC')::bigint % 1000000 = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
    WHEN extract(microseconds FROM t AT TIME ZONE 'UTC')::bigint % 1000 = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
    ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
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

-- STABLE, as jsonb_build_object is, so that it is inlined (see ts_json).
CREATE FUNCTION rejection(p_reason text, p_message text, p_details jsonb DEFAULT '{}') RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('error', jsonb_build_object('reason', p_reason, 'message', p_message) || p_details)
$$;

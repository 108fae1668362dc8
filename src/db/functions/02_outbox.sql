-- Writing events to the outbox, in the transaction of the change they report.

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

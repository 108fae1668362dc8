-- Functions now live in src/db/functions/ and are re-created whenever their
-- text changes. Databases migrated before then have them from migrations
-- 0001-0003, at whatever text those files had when they were applied: drop
-- them (by name, whatever their arguments were then), so the function files
-- create every one afresh and own it from now on. On a new database there
-- is nothing to drop.
DO $$
DECLARE
  f regprocedure;
BEGIN
  FOR f IN
    SELECT p.oid::regprocedure FROM pg_proc p
    WHERE p.pronamespace = current_schema()::regnamespace
      AND p.proname = ANY (ARRAY[
        'ts_json', 'resource_lock_key', 'booking_json', 'emit_booking_event', 'rejection',
        'idempotent_replay', 'keep_idempotent_outcome', 'claim_idempotency_key',
        'finish_idempotency_key', 'expire_overlapping_holds', 'active_blocks', 'peak_occupancy',
        'conflicts_json', 'notice_rejection', 'create_booking', 'change_booking',
        'expire_lapsed_holds', 'reschedule_booking'])
  LOOP
    EXECUTE format('DROP FUNCTION %s', f);
  END LOOP;
END
$$;

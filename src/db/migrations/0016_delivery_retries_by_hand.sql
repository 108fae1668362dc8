-- Retries asked for by hand (RetryDelivery) are attempts apart from the
-- automatic schedule: a delivery gets its first attempt and every retry of
-- HOLDFAST_WEBHOOK_RETRY_SCHEDULE however often it is retried by hand.
-- attempt_count still counts every attempt (it numbers delivery_attempts).
ALTER TABLE deliveries
  -- RetryDelivery asked for the next attempt; the lease that takes it clears this.
  ADD COLUMN retry_by_hand boolean NOT NULL DEFAULT false,
  -- Of attempt_count, the attempts asked for by hand.
  ADD COLUMN attempts_by_hand integer NOT NULL DEFAULT 0,
  -- Every automatic attempt failed: the delivery was given up, and its event
  -- counted once toward disabling the endpoint (never again, however often
  -- it is retried by hand and fails).
  ADD COLUMN given_up boolean NOT NULL DEFAULT false;

-- Which failed deliveries were given up, rather than failed when their
-- endpoint was disabled, was not recorded: count none of them again.
UPDATE deliveries SET given_up = true WHERE status = 'failed';

-- Retention deletes ended deliveries (with their attempts) as old as the
-- events it deletes, oldest first; a pending one waits for its attempts.
CREATE INDEX deliveries_ended ON deliveries (create_time) WHERE status <> 'pending';

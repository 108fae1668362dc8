-- Trace context crosses the outbox: each event keeps the W3C traceparent of
-- the call whose transaction wrote it, and each delivery the one of its
-- event, so the webhook POST that a booking causes, seconds or hours later,
-- joins that booking's trace. NULL when the write was not traced (tracing
-- off, or the sweeper).
--
-- The default reads a transaction-local setting that a traced booking write
-- sets in its own statement (src/db/trace-context.ts): the functions that
-- write events need no parameter for it.
ALTER TABLE outbox ADD COLUMN traceparent text
  DEFAULT nullif(current_setting('holdfast.traceparent', true), '');

ALTER TABLE deliveries ADD COLUMN traceparent text;

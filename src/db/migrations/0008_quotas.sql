-- Quotas per tenant, set by the operator. NULL is unlimited (the default).
-- A quota lowered below what is in use refuses new work and deletes nothing.
ALTER TABLE tenants
  ADD COLUMN quota_bookings_per_month integer CHECK (quota_bookings_per_month BETWEEN 1 AND 1000000000),
  ADD COLUMN quota_active_holds integer CHECK (quota_active_holds BETWEEN 1 AND 1000000000),
  ADD COLUMN quota_resources integer CHECK (quota_resources BETWEEN 1 AND 1000000000),
  ADD COLUMN quota_services integer CHECK (quota_services BETWEEN 1 AND 1000000000),
  ADD COLUMN quota_webhooks integer CHECK (quota_webhooks BETWEEN 1 AND 1000000000),
  ADD COLUMN quota_api_keys integer CHECK (quota_api_keys BETWEEN 1 AND 1000000000);

-- What the booking quotas count, read only for tenants that have one: the
-- holds not yet lapsed, and the bookings made since the month began.
CREATE INDEX bookings_active_holds ON bookings (tenant_id, expire_time) WHERE status = 'held';
CREATE INDEX bookings_by_create_time ON bookings (tenant_id, create_time);

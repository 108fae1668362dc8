-- iCalendar feeds: a secret URL per feed, for calendar apps that cannot
-- send a bearer key. As with API keys, only the secret's SHA-256 is stored.
CREATE TABLE calendar_feeds (
  id text PRIMARY KEY DEFAULT new_id('cal'),
  tenant_id text NOT NULL REFERENCES tenants (id),
  secret_hash bytea NOT NULL UNIQUE,
  prefix text NOT NULL,
  -- Exactly one: whose bookings the feed shows. No foreign keys, as for
  -- bookings: resources and services are never deleted, only deactivated.
  resource_id text,
  service_id text,
  free_busy boolean NOT NULL,
  include_holds boolean NOT NULL,
  description text NOT NULL DEFAULT '',
  create_time timestamptz NOT NULL DEFAULT now(),
  revoke_time timestamptz,
  CHECK ((resource_id IS NULL) <> (service_id IS NULL))
);
CREATE INDEX calendar_feeds_by_tenant ON calendar_feeds (tenant_id, id);

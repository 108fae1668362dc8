-- The schema a freshly migrated Holdfast database has: written by
-- `npm run schema` from the catalogs, checked by CI. Do not edit: change
-- src/db/migrations/ or src/db/functions/ and run `npm run schema`.

-- Extensions
CREATE EXTENSION IF NOT EXISTS btree_gist;

-- Functions created by migrations (tables depend on them)

CREATE OR REPLACE FUNCTION public.new_id(prefix text)
 RETURNS text
 LANGUAGE sql
AS $function$
  SELECT prefix || '_'
    || lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')
    || substr(md5(random()::text || clock_timestamp()::text), 1, 16)
$function$;

CREATE TABLE api_keys (
  id text NOT NULL DEFAULT new_id('key'::text),
  tenant_id text NOT NULL,
  secret_hash bytea NOT NULL,
  prefix text NOT NULL,
  scopes text[] NOT NULL,
  description text NOT NULL DEFAULT ''::text,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  revoke_time timestamp with time zone,
  rate_per_second integer,
  rate_burst integer,
  CONSTRAINT api_keys_pkey PRIMARY KEY (id),
  CONSTRAINT api_keys_rate_burst_check CHECK (((rate_burst >= 1) AND (rate_burst <= 1000000))),
  CONSTRAINT api_keys_rate_limit_whole CHECK (((rate_per_second IS NULL) = (rate_burst IS NULL))),
  CONSTRAINT api_keys_rate_per_second_check CHECK (((rate_per_second >= 1) AND (rate_per_second <= 1000000))),
  CONSTRAINT api_keys_secret_hash_key UNIQUE (secret_hash),
  CONSTRAINT api_keys_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id)
);
CREATE INDEX api_keys_by_tenant ON public.api_keys USING btree (tenant_id, id);

CREATE TABLE bookings (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('bkg'::text),
  service_id text NOT NULL,
  resource_id text NOT NULL,
  start_time timestamp with time zone NOT NULL,
  end_time timestamp with time zone NOT NULL,
  block_start timestamp with time zone NOT NULL,
  block_end timestamp with time zone NOT NULL,
  status text NOT NULL,
  expire_time timestamp with time zone,
  attendee jsonb NOT NULL DEFAULT '{}'::jsonb,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  policy_version integer NOT NULL,
  cancel_reason text NOT NULL DEFAULT ''::text,
  exclusive boolean NOT NULL,
  create_time timestamp with time zone NOT NULL,
  update_time timestamp with time zone NOT NULL,
  CONSTRAINT bookings_check CHECK ((end_time > start_time)),
  CONSTRAINT bookings_check1 CHECK (((block_start <= start_time) AND (block_end >= end_time))),
  CONSTRAINT bookings_check2 CHECK (((block_end - block_start) <= '72:00:00'::interval)),
  CONSTRAINT bookings_check3 CHECK (((status <> 'held'::text) OR (expire_time IS NOT NULL))),
  CONSTRAINT bookings_no_overlap EXCLUDE USING gist (hashtextextended(((tenant_id || '/'::text) || resource_id), (0)::bigint) WITH =, tstzrange(block_start, block_end) WITH &&) WHERE ((exclusive AND (status = ANY (ARRAY['held'::text, 'confirmed'::text])))),
  CONSTRAINT bookings_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT bookings_status_check CHECK ((status = ANY (ARRAY['held'::text, 'confirmed'::text, 'cancelled'::text, 'expired'::text, 'completed'::text, 'no_show'::text])))
);
CREATE INDEX bookings_active_holds ON public.bookings USING btree (tenant_id, expire_time) WHERE (status = 'held'::text);
CREATE INDEX bookings_by_create_time ON public.bookings USING btree (tenant_id, create_time);
CREATE INDEX bookings_by_start ON public.bookings USING btree (tenant_id, start_time, id);
CREATE INDEX bookings_holds_by_expiry ON public.bookings USING btree (expire_time) WHERE (status = 'held'::text);
CREATE INDEX bookings_occupancy ON public.bookings USING btree (tenant_id, resource_id, block_start) INCLUDE (block_end, status, expire_time) WHERE (status = ANY (ARRAY['held'::text, 'confirmed'::text]));

CREATE TABLE calendar_feeds (
  id text NOT NULL DEFAULT new_id('cal'::text),
  tenant_id text NOT NULL,
  secret_hash bytea NOT NULL,
  prefix text NOT NULL,
  resource_id text,
  service_id text,
  free_busy boolean NOT NULL,
  include_holds boolean NOT NULL,
  description text NOT NULL DEFAULT ''::text,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  revoke_time timestamp with time zone,
  creator_key_id text,
  CONSTRAINT calendar_feeds_check CHECK (((resource_id IS NULL) <> (service_id IS NULL))),
  CONSTRAINT calendar_feeds_pkey PRIMARY KEY (id),
  CONSTRAINT calendar_feeds_secret_hash_key UNIQUE (secret_hash),
  CONSTRAINT calendar_feeds_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id)
);
CREATE INDEX calendar_feeds_by_creator ON public.calendar_feeds USING btree (tenant_id, creator_key_id, id);
CREATE INDEX calendar_feeds_by_tenant ON public.calendar_feeds USING btree (tenant_id, id);

CREATE TABLE deliveries (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('dlv'::text),
  webhook_id text NOT NULL,
  event_id text NOT NULL,
  event_type text NOT NULL,
  body text NOT NULL,
  status text NOT NULL DEFAULT 'pending'::text,
  attempt_count integer NOT NULL DEFAULT 0,
  next_attempt_time timestamp with time zone,
  lease_until timestamp with time zone,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  traceparent text,
  retry_by_hand boolean NOT NULL DEFAULT false,
  attempts_by_hand integer NOT NULL DEFAULT 0,
  given_up boolean NOT NULL DEFAULT false,
  CONSTRAINT deliveries_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT deliveries_status_check CHECK ((status = ANY (ARRAY['pending'::text, 'succeeded'::text, 'failed'::text]))),
  CONSTRAINT deliveries_tenant_id_webhook_id_event_id_key UNIQUE (tenant_id, webhook_id, event_id),
  CONSTRAINT deliveries_tenant_id_webhook_id_fkey FOREIGN KEY (tenant_id, webhook_id) REFERENCES webhooks(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX deliveries_by_webhook ON public.deliveries USING btree (tenant_id, webhook_id, id DESC);
CREATE INDEX deliveries_due ON public.deliveries USING btree (next_attempt_time) WHERE (status = 'pending'::text);
CREATE INDEX deliveries_ended ON public.deliveries USING btree (create_time) WHERE (status <> 'pending'::text);

CREATE TABLE delivery_attempts (
  tenant_id text NOT NULL,
  delivery_id text NOT NULL,
  attempt integer NOT NULL,
  attempt_time timestamp with time zone NOT NULL,
  status_code integer NOT NULL,
  latency_ms integer NOT NULL,
  error text NOT NULL DEFAULT ''::text,
  CONSTRAINT delivery_attempts_pkey PRIMARY KEY (tenant_id, delivery_id, attempt),
  CONSTRAINT delivery_attempts_tenant_id_delivery_id_fkey FOREIGN KEY (tenant_id, delivery_id) REFERENCES deliveries(tenant_id, id) ON DELETE CASCADE
);

CREATE TABLE idempotency_keys (
  tenant_id text NOT NULL,
  method text NOT NULL,
  key text NOT NULL,
  request_hash bytea NOT NULL,
  outcome jsonb,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  api_key_id text NOT NULL,
  CONSTRAINT idempotency_keys_pkey PRIMARY KEY (tenant_id, api_key_id, method, key)
);
CREATE INDEX idempotency_keys_by_age ON public.idempotency_keys USING btree (create_time);

CREATE TABLE outbox (
  seq bigint NOT NULL GENERATED ALWAYS AS IDENTITY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  tenant_id text NOT NULL,
  event_id text NOT NULL DEFAULT new_id('evt'::text),
  type text NOT NULL,
  booking_id text,
  resource_id text,
  service_id text,
  occur_time timestamp with time zone NOT NULL DEFAULT clock_timestamp(),
  payload jsonb NOT NULL,
  traceparent text DEFAULT NULLIF(current_setting('holdfast.traceparent'::text, true), ''::text),
  CONSTRAINT outbox_pkey PRIMARY KEY (seq)
);
CREATE INDEX outbox_by_tenant ON public.outbox USING btree (tenant_id, xid, seq);
CREATE INDEX outbox_by_time ON public.outbox USING btree (occur_time);
CREATE INDEX outbox_order ON public.outbox USING btree (xid, seq);

CREATE TABLE outbox_pruned_tenants (
  tenant_id text NOT NULL,
  xid xid8 NOT NULL,
  seq bigint NOT NULL,
  CONSTRAINT outbox_pruned_tenants_pkey PRIMARY KEY (tenant_id)
);

CREATE TABLE overrides (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('ovr'::text),
  resource_id text NOT NULL,
  kind text NOT NULL,
  title text NOT NULL DEFAULT ''::text,
  all_day boolean NOT NULL,
  start_date date NOT NULL,
  end_date date,
  start_minute integer,
  end_minute integer,
  recurrence jsonb,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT overrides_check CHECK (((all_day = (start_minute IS NULL)) AND (all_day = (end_minute IS NULL)))),
  CONSTRAINT overrides_check1 CHECK (((end_date IS NULL) OR (end_date >= start_date))),
  CONSTRAINT overrides_end_minute_check CHECK (((end_minute >= 1) AND (end_minute <= 1440))),
  CONSTRAINT overrides_kind_check CHECK ((kind = ANY (ARRAY['block'::text, 'open'::text]))),
  CONSTRAINT overrides_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT overrides_start_minute_check CHECK (((start_minute >= 0) AND (start_minute <= 1439))),
  CONSTRAINT overrides_tenant_id_resource_id_fkey FOREIGN KEY (tenant_id, resource_id) REFERENCES resources(tenant_id, id)
);
CREATE INDEX overrides_by_resource ON public.overrides USING btree (tenant_id, resource_id, id);

CREATE TABLE policy_versions (
  tenant_id text NOT NULL,
  service_id text NOT NULL,
  version integer NOT NULL,
  policy jsonb NOT NULL,
  time_zone text NOT NULL,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT policy_versions_pkey PRIMARY KEY (tenant_id, service_id, version),
  CONSTRAINT policy_versions_tenant_id_service_id_fkey FOREIGN KEY (tenant_id, service_id) REFERENCES services(tenant_id, id),
  CONSTRAINT policy_versions_version_check CHECK ((version >= 1))
);

CREATE UNLOGGED TABLE quota_tallies (
  tenant_id text NOT NULL,
  slot integer NOT NULL,
  month timestamp with time zone NOT NULL,
  bookings bigint NOT NULL,
  holds bigint NOT NULL,
  CONSTRAINT quota_tallies_pkey PRIMARY KEY (tenant_id, slot)
);

CREATE UNLOGGED TABLE rate_buckets (
  bucket text NOT NULL,
  tat timestamp with time zone NOT NULL,
  CONSTRAINT rate_buckets_pkey PRIMARY KEY (bucket)
);

CREATE UNLOGGED TABLE rate_leases (
  bucket text NOT NULL,
  instance text NOT NULL,
  tokens integer NOT NULL,
  expire_time timestamp with time zone NOT NULL,
  CONSTRAINT rate_leases_pkey PRIMARY KEY (bucket, instance),
  CONSTRAINT rate_leases_tokens_check CHECK ((tokens >= 0))
);

CREATE TABLE resources (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('rsc'::text),
  name text NOT NULL,
  kind text NOT NULL,
  time_zone text NOT NULL,
  capacity integer NOT NULL DEFAULT 1,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  weekly_schedule jsonb,
  active boolean NOT NULL DEFAULT true,
  revision integer NOT NULL DEFAULT 1,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  update_time timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT resources_capacity_check CHECK (((capacity >= 1) AND (capacity <= 10000))),
  CONSTRAINT resources_kind_check CHECK ((kind = ANY (ARRAY['person'::text, 'room'::text, 'equipment'::text, 'location'::text, 'other'::text]))),
  CONSTRAINT resources_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT resources_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id)
);

CREATE TABLE schema_functions (
  file text NOT NULL,
  checksum text NOT NULL,
  functions text[] NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT schema_functions_pkey PRIMARY KEY (file)
);

CREATE TABLE schema_migrations (
  version integer NOT NULL,
  name text NOT NULL,
  applied_at timestamp with time zone NOT NULL DEFAULT now(),
  checksum text,
  CONSTRAINT schema_migrations_pkey PRIMARY KEY (version)
);

CREATE TABLE server_secrets (
  name text NOT NULL,
  secret bytea NOT NULL,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT server_secrets_pkey PRIMARY KEY (name)
);

CREATE TABLE service_resources (
  tenant_id text NOT NULL,
  service_id text NOT NULL,
  resource_id text NOT NULL,
  "position" integer NOT NULL,
  CONSTRAINT service_resources_pkey PRIMARY KEY (tenant_id, service_id, resource_id),
  CONSTRAINT service_resources_tenant_id_resource_id_fkey FOREIGN KEY (tenant_id, resource_id) REFERENCES resources(tenant_id, id),
  CONSTRAINT service_resources_tenant_id_service_id_fkey FOREIGN KEY (tenant_id, service_id) REFERENCES services(tenant_id, id)
);
CREATE INDEX service_resources_by_resource ON public.service_resources USING btree (tenant_id, resource_id);

CREATE TABLE services (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('svc'::text),
  name text NOT NULL,
  metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
  active boolean NOT NULL DEFAULT true,
  policy_version integer NOT NULL DEFAULT 1,
  revision integer NOT NULL DEFAULT 1,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  update_time timestamp with time zone NOT NULL DEFAULT now(),
  CONSTRAINT services_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT services_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id)
);

CREATE TABLE tenants (
  id text NOT NULL DEFAULT new_id('ten'::text),
  name text NOT NULL,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  rate_per_second integer,
  rate_burst integer,
  quota_bookings_per_month integer,
  quota_active_holds integer,
  quota_resources integer,
  quota_services integer,
  quota_webhooks integer,
  quota_api_keys integer,
  CONSTRAINT tenants_name_key UNIQUE (name),
  CONSTRAINT tenants_pkey PRIMARY KEY (id),
  CONSTRAINT tenants_quota_active_holds_check CHECK (((quota_active_holds >= 1) AND (quota_active_holds <= 1000000000))),
  CONSTRAINT tenants_quota_api_keys_check CHECK (((quota_api_keys >= 1) AND (quota_api_keys <= 1000000000))),
  CONSTRAINT tenants_quota_bookings_per_month_check CHECK (((quota_bookings_per_month >= 1) AND (quota_bookings_per_month <= 1000000000))),
  CONSTRAINT tenants_quota_resources_check CHECK (((quota_resources >= 1) AND (quota_resources <= 1000000000))),
  CONSTRAINT tenants_quota_services_check CHECK (((quota_services >= 1) AND (quota_services <= 1000000000))),
  CONSTRAINT tenants_quota_webhooks_check CHECK (((quota_webhooks >= 1) AND (quota_webhooks <= 1000000000))),
  CONSTRAINT tenants_rate_burst_check CHECK (((rate_burst >= 1) AND (rate_burst <= 1000000))),
  CONSTRAINT tenants_rate_limit_whole CHECK (((rate_per_second IS NULL) = (rate_burst IS NULL))),
  CONSTRAINT tenants_rate_per_second_check CHECK (((rate_per_second >= 1) AND (rate_per_second <= 1000000)))
);

CREATE TABLE webhook_dispatch (
  only_row boolean NOT NULL DEFAULT true,
  xid xid8 NOT NULL,
  seq bigint NOT NULL,
  CONSTRAINT webhook_dispatch_only_row_check CHECK (only_row),
  CONSTRAINT webhook_dispatch_pkey PRIMARY KEY (only_row)
);

CREATE TABLE webhooks (
  tenant_id text NOT NULL,
  id text NOT NULL DEFAULT new_id('whk'::text),
  url text NOT NULL,
  event_types text[] NOT NULL,
  description text NOT NULL DEFAULT ''::text,
  state text NOT NULL DEFAULT 'active'::text,
  disabled_reason text NOT NULL DEFAULT ''::text,
  consecutive_failures integer NOT NULL DEFAULT 0,
  secret bytea NOT NULL,
  create_time timestamp with time zone NOT NULL DEFAULT now(),
  update_time timestamp with time zone NOT NULL DEFAULT now(),
  previous_secrets bytea[] NOT NULL DEFAULT '{}'::bytea[],
  previous_secrets_expire timestamp with time zone[] NOT NULL DEFAULT '{}'::timestamp with time zone[],
  CONSTRAINT previous_secrets_paired CHECK ((cardinality(previous_secrets) = cardinality(previous_secrets_expire))),
  CONSTRAINT webhooks_pkey PRIMARY KEY (tenant_id, id),
  CONSTRAINT webhooks_state_check CHECK ((state = ANY (ARRAY['active'::text, 'paused'::text, 'disabled'::text]))),
  CONSTRAINT webhooks_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants(id)
);

-- Functions from src/db/functions/01_json.sql

CREATE OR REPLACE FUNCTION public.booking_json(b bookings)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.rejection(p_reason text, p_message text, p_details jsonb DEFAULT '{}'::jsonb)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT jsonb_build_object('error', jsonb_build_object('reason', p_reason, 'message', p_message) || p_details)
$function$;

CREATE OR REPLACE FUNCTION public.ts_json(t timestamp with time zone)
 RETURNS text
 LANGUAGE sql
 STABLE
AS $function$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$function$;

CREATE OR REPLACE FUNCTION public.ts_text(t timestamp with time zone)
 RETURNS text
 LANGUAGE sql
 STABLE
AS $function$
  SELECT to_char(t AT TIME ZONE 'UTC', CASE
    WHEN extract(microseconds FROM t AT TIME ZONE 'UTC')::bigint % 1000000 = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS"Z"'
    WHEN extract(microseconds FROM t AT TIME ZONE 'UTC')::bigint % 1000 = 0 THEN 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'
    ELSE 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"' END)
$function$;

-- Functions from src/db/functions/02_outbox.sql

CREATE OR REPLACE FUNCTION public.emit_booking_event(p_type text, b bookings, p_extra jsonb DEFAULT '{}'::jsonb)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE
  v_json jsonb := booking_json(b);
BEGIN
  INSERT INTO outbox (tenant_id, type, booking_id, resource_id, service_id, payload)
  VALUES (b.tenant_id, p_type, b.id, b.resource_id, b.service_id, jsonb_build_object('booking', v_json) || p_extra);
  RETURN v_json;
END
$function$;

-- Functions from src/db/functions/03_idempotency.sql

CREATE OR REPLACE FUNCTION public.claim_idempotency_key(p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE
  v_stored jsonb;
  v_lock_timeout text := current_setting('lock_timeout');
  v_wait text := nullif(current_setting('holdfast.claim_wait_ms', true), '');
  v_claimed boolean;
BEGIN
  v_stored := idempotent_replay(p_tenant, p_api_key, p_method, p_key, p_hash);
  IF v_stored IS NOT NULL THEN
    RETURN v_stored;
  END IF;
  IF v_wait IS NOT NULL THEN
    PERFORM set_config('lock_timeout', v_wait || 'ms', true);
  END IF;
  INSERT INTO idempotency_keys AS i (tenant_id, api_key_id, method, key, request_hash)
  VALUES (p_tenant, p_api_key, p_method, p_key, p_hash)
  ON CONFLICT (tenant_id, api_key_id, method, key) DO UPDATE
    SET request_hash = excluded.request_hash, outcome = NULL, create_time = now()
    WHERE i.create_time < now() - interval '24 hours';
  v_claimed := FOUND;
  -- The rest of the transaction, the caller's work, keeps the session's limit.
  PERFORM set_config('lock_timeout', v_lock_timeout, true);
  IF v_claimed THEN
    RETURN NULL;
  END IF;
  RETURN idempotent_replay(p_tenant, p_api_key, p_method, p_key, p_hash);
END
$function$;

CREATE OR REPLACE FUNCTION public.finish_idempotency_key(p_tenant text, p_api_key text, p_method text, p_key text, p_outcome jsonb)
 RETURNS void
 LANGUAGE sql
AS $function$
  UPDATE idempotency_keys SET outcome = p_outcome
  WHERE tenant_id = p_tenant AND api_key_id = p_api_key AND method = p_method AND key = p_key
$function$;

CREATE OR REPLACE FUNCTION public.idempotent_replay(p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea)
 RETURNS jsonb
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
  k idempotency_keys;
BEGIN
  SELECT * INTO k FROM idempotency_keys
  WHERE tenant_id = p_tenant AND api_key_id IN (p_api_key, '') AND method = p_method AND key = p_key
    AND create_time >= now() - interval '24 hours' AND outcome IS NOT NULL
  -- The API key's own row before one stored without an API key.
  ORDER BY api_key_id = ''
  LIMIT 1;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  IF k.request_hash <> p_hash THEN
    RETURN rejection('IDEMPOTENCY_KEY_REUSED',
      'this Idempotency-Key was already used with a different request');
  END IF;
  RETURN k.outcome || '{"replayed": true}';
END
$function$;

CREATE OR REPLACE FUNCTION public.keep_idempotent_outcome(p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea, p_outcome jsonb, p_wrote boolean)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE
  v_stored jsonb;
BEGIN
  -- A caller that wrote nothing may not have looked the key up first.
  IF NOT p_wrote THEN
    v_stored := idempotent_replay(p_tenant, p_api_key, p_method, p_key, p_hash);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  INSERT INTO idempotency_keys AS i (tenant_id, api_key_id, method, key, request_hash, outcome)
  VALUES (p_tenant, p_api_key, p_method, p_key, p_hash, p_outcome)
  ON CONFLICT (tenant_id, api_key_id, method, key) DO UPDATE
    SET request_hash = excluded.request_hash, outcome = excluded.outcome, create_time = now()
    WHERE i.create_time < now() - interval '24 hours';
  IF FOUND THEN
    RETURN NULL;
  END IF;
  IF p_wrote THEN
    RAISE EXCEPTION 'a request with the same Idempotency-Key committed first' USING ERRCODE = 'HF003';
  END IF;
  RETURN idempotent_replay(p_tenant, p_api_key, p_method, p_key, p_hash);
END
$function$;

-- Functions from src/db/functions/04_occupancy.sql

CREATE OR REPLACE FUNCTION public.active_blocks(p_tenant text, p_resource text, p_from timestamp with time zone, p_to timestamp with time zone, p_now timestamp with time zone, p_except text)
 RETURNS TABLE(block_start timestamp with time zone, block_end timestamp with time zone, start_time timestamp with time zone, end_time timestamp with time zone, status text)
 LANGUAGE sql
 STABLE
AS $function$
  SELECT greatest(b.block_start, p_from), least(b.block_end, p_to), b.start_time, b.end_time, b.status
  FROM bookings b
  WHERE b.tenant_id = p_tenant AND b.resource_id = p_resource AND b.status IN ('held', 'confirmed')
    AND (b.status = 'confirmed' OR b.expire_time > p_now)
    AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from
    AND b.id IS DISTINCT FROM p_except
$function$;

CREATE OR REPLACE FUNCTION public.conflicts_json(p_tenant text, p_resource text, p_from timestamp with time zone, p_to timestamp with time zone, p_now timestamp with time zone, p_except text)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'startTime', ts_json(c.start_time), 'endTime', ts_json(c.end_time), 'status', c.status,
           'resourceId', p_resource, 'timeZone', r.time_zone)
           ORDER BY c.start_time), '[]')
  FROM (SELECT * FROM active_blocks(p_tenant, p_resource, p_from, p_to, p_now, p_except)
        ORDER BY start_time LIMIT 20) c
  LEFT JOIN resources r ON r.tenant_id = p_tenant AND r.id = p_resource
$function$;

CREATE OR REPLACE FUNCTION public.expire_overlapping_holds(p_tenant text, p_resource text, p_from timestamp with time zone, p_to timestamp with time zone, p_now timestamp with time zone)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.notice_rejection(p_start timestamp with time zone, p_now timestamp with time zone, p_min_notice interval, p_max_advance interval)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT CASE
    WHEN p_start < p_now + p_min_notice THEN rejection('TOO_SOON',
      CASE WHEN p_min_notice = interval '0' THEN 'the requested time has already begun'
           ELSE format('bookings must start at least %s min from now', extract(epoch FROM p_min_notice)::bigint / 60) END,
      jsonb_build_object('metadata', jsonb_build_object('earliest_start', ts_text(p_now + p_min_notice))))
    WHEN p_max_advance IS NOT NULL AND p_start > p_now + p_max_advance THEN rejection('TOO_FAR_AHEAD',
      format('bookings can start at most %s min from now', extract(epoch FROM p_max_advance)::bigint / 60),
      jsonb_build_object('metadata', jsonb_build_object('latest_start', ts_text(p_now + p_max_advance))))
  END
$function$;

CREATE OR REPLACE FUNCTION public.peak_occupancy(p_tenant text, p_resource text, p_from timestamp with time zone, p_to timestamp with time zone, p_now timestamp with time zone, p_except text, p_capacity integer)
 RETURNS integer
 LANGUAGE plpgsql
 STABLE
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.resource_lock_key(p_tenant text, p_resource text)
 RETURNS bigint
 LANGUAGE sql
 IMMUTABLE
AS $function$
  SELECT hashtextextended(p_tenant || '/' || p_resource, 0)
$function$;

CREATE OR REPLACE FUNCTION public.room_for_block(p_tenant text, p_resource text, p_from timestamp with time zone, p_to timestamp with time zone, p_now timestamp with time zone, p_except text, p_capacity integer)
 RETURNS boolean
 LANGUAGE plpgsql
AS $function$
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
$function$;

-- Functions from src/db/functions/05_booking_writes.sql

CREATE OR REPLACE FUNCTION public.change_booking(p_tenant text, p_id text, p_action text, p_ttl interval, p_reason text, p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
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
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
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
      -- The expiry never moves earlier; an extension that would not move it
      -- later changes nothing and records no event.
      IF v_now + least(coalesce(p_ttl, v_hold), v_max) > b.expire_time THEN
        UPDATE bookings SET expire_time = v_now + least(coalesce(p_ttl, v_hold), v_max), update_time = v_now
        WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
        v_json := emit_booking_event('booking.hold_extended', b);
      END IF;
    ELSIF p_action = 'cancel' AND b.status IN ('held', 'confirmed') THEN
      UPDATE bookings SET status = 'cancelled', cancel_reason = coalesce(p_reason, ''), update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event('booking.cancelled', b);
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' AND b.start_time > v_now THEN
      v_outcome := rejection('NOT_STARTED', format('the booking starts at %s; it can be marked %s once it has started',
        ts_text(b.start_time), CASE p_action WHEN 'complete' THEN 'completed' ELSE 'a no-show' END));
    ELSIF p_action IN ('complete', 'no_show') AND b.status = 'confirmed' THEN
      UPDATE bookings SET status = CASE p_action WHEN 'complete' THEN 'completed' ELSE 'no_show' END, update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO b;
      v_json := emit_booking_event(CASE p_action WHEN 'complete' THEN 'booking.completed' ELSE 'booking.no_show' END, b);
    ELSIF (p_action = 'confirm' AND b.status = 'confirmed')
       OR (p_action = 'cancel' AND b.status IN ('cancelled', 'expired'))
       OR (p_action = 'complete' AND b.status = 'completed')
       OR (p_action = 'no_show' AND b.status = 'no_show') THEN
      NULL; -- already there (a lapsed hold has released its time too): the booking unchanged
    ELSIF b.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(b.expire_time)));
    ELSE
      v_outcome := rejection('INVALID_STATE', format('cannot %s a booking that is %s', replace(p_action, '_', ' '), v_was),
        jsonb_build_object('metadata', jsonb_build_object('status', v_was)));
    END IF;
    IF v_outcome IS NULL THEN
      v_outcome := jsonb_build_object('response', jsonb_build_object('booking', coalesce(v_json, booking_json(b))));
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_json IS NOT NULL);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$function$;

CREATE OR REPLACE FUNCTION public.create_booking(p_tenant text, p_service text, p_resources text[], p_service_revision integer, p_resource_revisions integer[], p_policy_version integer, p_start timestamp with time zone, p_end timestamp with time zone, p_buffer_before interval, p_buffer_after interval, p_min_notice interval, p_max_advance interval, p_hold_ttl interval, p_attendee jsonb, p_metadata jsonb, p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_capacity integer;
  v_resource text;
  v_key bigint;
  v_from timestamptz := p_start - p_buffer_before;
  v_to timestamptz := p_end + p_buffer_after;
  v_stored jsonb;
  v_current boolean;
  v_quotas boolean;
  b bookings;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  -- The resource locks. One resource: when its lock is free it is taken at
  -- once. When another write holds it, a time that committed bookings
  -- already fill is refused before queueing for the lock, so when many
  -- callers race for one slot the late ones answer at once rather than one
  -- after another. Only a refusal is decided without the lock: it is true
  -- of the committed state this statement reads. Everything else is decided
  -- under the lock.
  IF cardinality(p_resources) = 1 THEN
    v_key := hashtextextended(p_tenant || '/' || p_resources[1], 0);
    IF NOT pg_try_advisory_xact_lock(v_key) THEN
      v_now := clock_timestamp();
      SELECT r.capacity INTO v_capacity FROM resources r WHERE r.tenant_id = p_tenant AND r.id = p_resources[1];
      IF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NULL
         AND peak_occupancy(p_tenant, p_resources[1], v_from, v_to, v_now, NULL, v_capacity) >= v_capacity THEN
        v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
          jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resources[1], v_from, v_to, v_now, NULL)));
      ELSE
        PERFORM pg_advisory_xact_lock(v_key);
      END IF;
    END IF;
  ELSE
    FOR v_key IN
      SELECT DISTINCT hashtextextended(p_tenant || '/' || r, 0) AS k FROM unnest(p_resources) AS r ORDER BY k
    LOOP
      PERFORM pg_advisory_xact_lock(v_key);
    END LOOP;
  END IF;

  IF v_outcome IS NULL THEN
    v_now := clock_timestamp();

    -- The service as checked, whether the tenant has a quota this write
    -- counts against, and the first candidate as checked (its capacity,
    -- NULL if it changed), in one read.
    SELECT s.revision = p_service_revision,
           t.quota_bookings_per_month IS NOT NULL OR (p_hold_ttl IS NOT NULL AND t.quota_active_holds IS NOT NULL),
           (SELECT r.capacity FROM resources r
            WHERE r.tenant_id = p_tenant AND r.id = p_resources[1] AND r.revision = p_resource_revisions[1])
      INTO v_current, v_quotas, v_capacity
    FROM services s, tenants t WHERE s.tenant_id = p_tenant AND s.id = p_service AND t.id = p_tenant;
    IF v_current IS NOT TRUE THEN
      RAISE EXCEPTION 'the service changed while the request was checked' USING ERRCODE = 'HF001';
    END IF;

    -- The tenant's booking quotas (11_quotas.sql), locked after the resources.
    IF v_quotas THEN
      v_outcome := quota_rejection(p_tenant, 'bookings', CASE WHEN p_hold_ttl IS NULL
        THEN ARRAY['bookings_per_month'] ELSE ARRAY['active_holds', 'bookings_per_month'] END, v_now);
    END IF;
    v_outcome := coalesce(v_outcome, notice_rejection(p_start, v_now, p_min_notice, p_max_advance));
    IF v_outcome IS NULL THEN
      FOR i IN 1 .. cardinality(p_resources) LOOP
        v_resource := p_resources[i];
        IF i > 1 THEN
          SELECT r.capacity INTO v_capacity FROM resources r
          WHERE r.tenant_id = p_tenant AND r.id = v_resource AND r.revision = p_resource_revisions[i];
        END IF;
        IF v_capacity IS NULL THEN
          RAISE EXCEPTION 'a resource changed while the request was checked' USING ERRCODE = 'HF001';
        END IF;
        IF room_for_block(p_tenant, v_resource, v_from, v_to, v_now, NULL, v_capacity) THEN
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
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      b.id IS NOT NULL);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$function$;

CREATE OR REPLACE FUNCTION public.expire_lapsed_holds(p_limit integer)
 RETURNS integer
 LANGUAGE plpgsql
AS $function$
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
$function$;

CREATE OR REPLACE FUNCTION public.reschedule_booking(p_tenant text, p_id text, p_from_resource text, p_resource text, p_service_revision integer, p_resource_revision integer, p_start timestamp with time zone, p_end timestamp with time zone, p_buffer_before interval, p_buffer_after interval, p_min_notice interval, p_max_advance interval, p_idem_method text, p_idem_key text, p_idem_hash bytea, p_idem_api_key text DEFAULT NULL::text)
 RETURNS jsonb
 LANGUAGE plpgsql
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
  v_outcome jsonb;
  v_now timestamptz;
  v_capacity integer;
  v_from timestamptz := p_start - p_buffer_before;
  v_to timestamptz := p_end + p_buffer_after;
  v_key bigint;
  b bookings;
  old bookings;
  v_wrote boolean := false;
  v_stored jsonb;
BEGIN
  IF p_idem_key IS NOT NULL THEN
    v_outcome := idempotent_replay(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash);
    IF v_outcome IS NOT NULL THEN
      RETURN v_outcome;
    END IF;
  END IF;

  FOR v_key IN
    SELECT DISTINCT k FROM unnest(ARRAY[hashtextextended(p_tenant || '/' || p_from_resource, 0),
                                         hashtextextended(p_tenant || '/' || p_resource, 0)]) AS k
    ORDER BY k
  LOOP
    PERFORM pg_advisory_xact_lock(v_key);
  END LOOP;
  v_now := clock_timestamp();

  SELECT * INTO old FROM bookings WHERE tenant_id = p_tenant AND id = p_id FOR UPDATE;
  IF NOT FOUND THEN
    v_outcome := rejection('BOOKING_NOT_FOUND', format('no booking with id "%s"', p_id));
  ELSIF old.resource_id <> p_from_resource THEN
    RAISE EXCEPTION 'the booking moved while the request was checked' USING ERRCODE = 'HF002';
  ELSE
    SELECT r.capacity INTO v_capacity FROM resources r
    WHERE r.tenant_id = p_tenant AND r.id = p_resource AND r.revision = p_resource_revision
      AND EXISTS (SELECT 1 FROM services s
                  WHERE s.tenant_id = p_tenant AND s.id = old.service_id AND s.revision = p_service_revision);
    IF NOT FOUND THEN
      RAISE EXCEPTION 'the service or resource changed while the request was checked' USING ERRCODE = 'HF001';
    END IF;

    IF old.status = 'held' AND old.expire_time <= v_now THEN
      UPDATE bookings SET status = 'expired', update_time = v_now
      WHERE tenant_id = p_tenant AND id = p_id RETURNING * INTO old;
      PERFORM emit_booking_event('booking.expired', old);
      v_wrote := true;
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(old.expire_time)));
    ELSIF old.status = 'expired' THEN
      v_outcome := rejection('HOLD_EXPIRED', format('the hold lapsed at %s; hold the time again', ts_text(old.expire_time)));
    ELSIF old.status NOT IN ('held', 'confirmed') THEN
      v_outcome := rejection('INVALID_STATE', format('cannot reschedule a booking that is %s', old.status),
        jsonb_build_object('metadata', jsonb_build_object('status', old.status)));
    ELSIF p_resource = old.resource_id AND p_start = old.start_time AND p_end = old.end_time THEN
      -- Where it is already: the booking unchanged, and no event.
      v_outcome := jsonb_build_object('response', jsonb_build_object('booking', booking_json(old)));
    ELSIF notice_rejection(p_start, v_now, p_min_notice, p_max_advance) IS NOT NULL THEN
      v_outcome := notice_rejection(p_start, v_now, p_min_notice, p_max_advance);
    ELSE
      IF NOT room_for_block(p_tenant, p_resource, v_from, v_to, v_now, p_id, v_capacity) THEN
        v_outcome := rejection('SLOT_UNAVAILABLE', 'the requested time is no longer available',
          jsonb_build_object('conflicts', conflicts_json(p_tenant, p_resource, v_from, v_to, v_now, p_id)));
      ELSE
        UPDATE bookings
        SET resource_id = p_resource, start_time = p_start, end_time = p_end,
            block_start = v_from, block_end = v_to, exclusive = (v_capacity = 1), update_time = v_now
        WHERE tenant_id = p_tenant AND id = p_id
        RETURNING * INTO b;
        v_wrote := true;
        v_outcome := jsonb_build_object('response', jsonb_build_object('booking',
          emit_booking_event('booking.rescheduled', b, jsonb_build_object(
            'previousStartTime', ts_json(old.start_time),
            'previousEndTime', ts_json(old.end_time),
            'previousResourceId', old.resource_id))));
      END IF;
    END IF;
  END IF;

  IF p_idem_key IS NOT NULL THEN
    v_stored := keep_idempotent_outcome(p_tenant, p_idem_api_key, p_idem_method, p_idem_key, p_idem_hash, v_outcome,
      v_wrote);
    IF v_stored IS NOT NULL THEN
      RETURN v_stored;
    END IF;
  END IF;
  RETURN v_outcome;
END
$function$;

-- Functions from src/db/functions/06_booking_batches.sql

CREATE OR REPLACE FUNCTION public.create_bookings(p_tenant text, p_resources text[], p_services text[], p_service_revisions integer[], p_resource_revisions integer[], p_policy_versions integer[], p_starts timestamp with time zone[], p_ends timestamp with time zone[], p_buffers_before interval[], p_buffers_after interval[], p_min_notices interval[], p_max_advances interval[], p_hold_ttls interval[], p_attendees jsonb, p_metadata jsonb, p_idem_methods text[], p_idem_keys text[], p_idem_hashes bytea[], p_traceparents text[], p_idem_api_keys text[] DEFAULT NULL::text[])
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
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
$function$;

-- Functions from src/db/functions/07_slot_occupancy.sql

CREATE OR REPLACE FUNCTION public.slot_occupancy(p_tenant text, p_service text, p_resources text[], p_from timestamp with time zone, p_to timestamp with time zone, p_except text DEFAULT NULL::text, OUT now_ms double precision, OUT service_revision integer, OUT revisions jsonb, OUT busy json)
 RETURNS record
 LANGUAGE plpgsql
 STABLE
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
BEGIN
  SELECT date_part('epoch', now()) * 1000,
         (SELECT s.revision FROM services s WHERE s.tenant_id = p_tenant AND s.id = p_service),
         (SELECT coalesce(jsonb_object_agg(r.id, r.revision), '{}') FROM resources r
          WHERE r.tenant_id = p_tenant AND r.id = ANY (p_resources)),
         (SELECT json_agg((
            SELECT json_build_array(array_agg((date_part('epoch', b.block_start - p_from) * 1000)::bigint),
                                    array_agg((date_part('epoch', b.block_end - p_from) * 1000)::bigint),
                                    array_agg((date_part('epoch', b.start_time - p_from) * 1000)::bigint))
            FROM bookings b
            WHERE b.tenant_id = p_tenant AND b.resource_id = requested.id AND b.status IN ('held', 'confirmed')
              AND (b.status = 'confirmed' OR b.expire_time > now())
              AND b.id IS DISTINCT FROM p_except
              AND b.block_start < p_to AND b.block_start > p_from - interval '72 hours' AND b.block_end > p_from
          ) ORDER BY requested.n)
          FROM unnest(p_resources) WITH ORDINALITY requested(id, n))
  INTO now_ms, service_revision, revisions, busy;
END
$function$;

-- Functions from src/db/functions/10_rate_limits.sql

CREATE OR REPLACE FUNCTION public.lease_rate(p_tenant text, p_key text, p_defaults integer[], p_instance text, p_lease_max integer, p_lease_ms integer, p_refund integer, p_release integer, p_refund_rates integer[])
 RETURNS TABLE(granted integer, retry_ms double precision, rates integer[], bursts integer[], remaining integer[], reset_ms double precision[])
 LANGUAGE plpgsql
AS $function$
DECLARE
  names text[] := ARRAY['t/' || p_tenant, 'k/' || p_key];
  tats timestamptz[] := '{}';
  levels double precision[] := '{}';
  v_want integer;
  v_credit double precision;
  v_held integer;
  t0 timestamptz;
  b timestamptz;
BEGIN
  SELECT l.rates, l.bursts INTO rates, bursts FROM rate_limits_in_force(p_tenant, p_key, p_defaults) l;
  v_want := least(p_lease_max, greatest(1, least(bursts[1], bursts[2]) / 16));

  FOR i IN 1..2 LOOP
    INSERT INTO rate_buckets (bucket, tat) VALUES (names[i], '-infinity') ON CONFLICT DO NOTHING;
    SELECT r.tat INTO b FROM rate_buckets r WHERE r.bucket = names[i] FOR UPDATE;
    -- Read the clock once both locks are held: a wait for a lock is no credit.
    IF i = 2 THEN t0 := clock_timestamp(); END IF;
    tats := tats || b;
  END LOOP;

  -- The previous lease no longer counts as held.
  IF p_release > 0 THEN
    UPDATE rate_leases l SET tokens = greatest(l.tokens - p_release, 0)
    WHERE l.bucket = ANY (names) AND l.instance = p_instance;
  END IF;

  -- What this instance still holds of the tenant's tokens for its other
  -- keys: with it, the new lease may hold no more than a lease of the
  -- tenant's size (it holds granted - 1 once this call spends its token).
  SELECT coalesce(sum(l.tokens), 0) INTO v_held FROM rate_leases l
  WHERE l.bucket = names[1] AND l.instance = p_instance AND l.expire_time > t0;
  v_want := least(v_want, greatest(1, least(p_lease_max, bursts[1] / 16) - v_held));

  FOR i IN 1..2 LOOP
    -- Unspent tokens go back, as if never taken.
    IF p_refund > 0 THEN
      tats[i] := tats[i] - make_interval(secs => p_refund::double precision / p_refund_rates[i]);
    END IF;
    levels := levels || (bursts[i] - extract(epoch FROM (greatest(tats[i], t0) - t0))::double precision * rates[i]);
  END LOOP;

  -- A microsecond of slack absorbs the rounding of timestamps.
  granted := greatest(0, least(v_want, floor(least(levels[1], levels[2]) + 1e-6)::integer));
  retry_ms := 0;
  IF granted = 0 AND v_want > 0 THEN
    FOR i IN 1..2 LOOP
      SELECT coalesce(sum(l.tokens), 0) INTO v_credit FROM rate_leases l
      WHERE l.bucket = names[i] AND l.expire_time > t0;
      IF levels[i] + v_credit < 1 - 1e-6 THEN
        retry_ms := greatest(retry_ms, (1 - levels[i] - v_credit) / rates[i] * 1000);
      END IF;
    END LOOP;
    IF retry_ms = 0 THEN
      granted := 1;
    END IF;
  END IF;

  remaining := '{}';
  reset_ms := '{}';
  FOR i IN 1..2 LOOP
    IF granted > 0 THEN
      tats[i] := greatest(tats[i], t0) + make_interval(secs => granted::double precision / rates[i]);
      levels[i] := levels[i] - granted;
    END IF;
    IF granted > 0 OR p_refund > 0 THEN
      UPDATE rate_buckets SET tat = tats[i] WHERE bucket = names[i];
    END IF;
    -- The caller spends one token at once; the rest it may hold.
    IF granted > 1 THEN
      -- Ten seconds more than the lease: time for the sweep to hand back the rest.
      INSERT INTO rate_leases AS l (bucket, instance, tokens, expire_time)
      VALUES (names[i], p_instance, granted - 1, t0 + make_interval(secs => p_lease_ms / 1000.0 + 10))
      ON CONFLICT (bucket, instance) DO UPDATE
      -- Tokens of a row past its expiry can no longer be spent: not held.
      SET tokens = CASE WHEN l.expire_time > t0 THEN l.tokens ELSE 0 END + granted - 1,
        expire_time = greatest(l.expire_time, excluded.expire_time);
    END IF;
    remaining := remaining || greatest(floor(levels[i] + 1e-6), 0)::integer;
    reset_ms := reset_ms || greatest(extract(epoch FROM (greatest(tats[i], t0) - t0))::double precision, 0) * 1000;
  END LOOP;
  RETURN NEXT;
END
$function$;

CREATE OR REPLACE FUNCTION public.rate_limits_in_force(p_tenant text, p_key text, p_defaults integer[], OUT rates integer[], OUT bursts integer[])
 RETURNS record
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
  t_rate integer;
  t_burst integer;
  k_rate integer;
  k_burst integer;
BEGIN
  SELECT t.rate_per_second, t.rate_burst INTO t_rate, t_burst FROM tenants t WHERE t.id = p_tenant;
  SELECT k.rate_per_second, k.rate_burst INTO k_rate, k_burst
  FROM api_keys k WHERE k.id = p_key AND k.tenant_id = p_tenant;
  t_rate := coalesce(t_rate, p_defaults[1]);
  t_burst := coalesce(t_burst, p_defaults[2]);
  rates := ARRAY[t_rate, least(coalesce(k_rate, p_defaults[3]), t_rate)];
  bursts := ARRAY[t_burst, least(coalesce(k_burst, p_defaults[4]), t_burst)];
END
$function$;

CREATE OR REPLACE FUNCTION public.rate_remaining(p_tenant text, p_key text, p_defaults integer[], OUT rates integer[], OUT bursts integer[], OUT remaining integer[])
 RETURNS record
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
  v_now timestamptz := clock_timestamp();
  v_tat timestamptz;
  names text[] := ARRAY['t/' || p_tenant, 'k/' || p_key];
BEGIN
  SELECT l.rates, l.bursts INTO rates, bursts FROM rate_limits_in_force(p_tenant, p_key, p_defaults) l;
  remaining := '{}';
  FOR i IN 1..2 LOOP
    SELECT r.tat INTO v_tat FROM rate_buckets r WHERE r.bucket = names[i];
    remaining := remaining || greatest(floor((bursts[i]::double precision / rates[i]
      - coalesce(extract(epoch FROM (greatest(v_tat, v_now) - v_now))::double precision, 0)) * rates[i] + 1e-6), 0)::integer;
  END LOOP;
END
$function$;

-- Functions from src/db/functions/11_quotas.sql

CREATE OR REPLACE FUNCTION public.quota_limits(p_tenant text)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT jsonb_build_object(
    'bookings_per_month', t.quota_bookings_per_month, 'active_holds', t.quota_active_holds,
    'resources', t.quota_resources, 'services', t.quota_services,
    'webhooks', t.quota_webhooks, 'api_keys', t.quota_api_keys)
  FROM tenants t WHERE t.id = p_tenant
$function$;

CREATE OR REPLACE FUNCTION public.quota_lock(p_tenant text, p_group text)
 RETURNS void
 LANGUAGE plpgsql
AS $function$
BEGIN
  IF quota_limits(p_tenant)->>p_group IS NOT NULL THEN
    PERFORM pg_advisory_xact_lock(hashtextextended('quota/' || p_tenant || '/' || p_group || '/0', 0));
  END IF;
END
$function$;

CREATE OR REPLACE FUNCTION public.quota_rejection(p_tenant text, p_group text, p_quotas text[], p_now timestamp with time zone)
 RETURNS jsonb
 LANGUAGE plpgsql
AS $function$
DECLARE
  v_limits jsonb := quota_limits(p_tenant);
  v_set text[] := '{}';
  v_quota text;
  v_limit bigint;
  v_usage bigint;
  v_lock text := 'quota/' || p_tenant || '/' || p_group;
  v_slots integer := quota_slots();
  v_slot integer;
  v_month timestamptz := date_trunc('month', p_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
  v_hold integer := CASE WHEN 'active_holds' = ANY (p_quotas) THEN 1 ELSE 0 END;
  v_rows integer;
  v_bookings bigint;
  v_holds bigint;
BEGIN
  FOREACH v_quota IN ARRAY p_quotas LOOP
    IF v_limits->>v_quota IS NOT NULL THEN
      v_set := v_set || v_quota;
    END IF;
  END LOOP;
  IF cardinality(v_set) = 0 THEN
    RETURN NULL;
  END IF;

  IF p_group <> 'bookings' THEN
    PERFORM quota_lock(p_tenant, p_group);
    v_usage := quota_usage(p_tenant, v_set[1], p_now);
    v_limit := (v_limits->>v_set[1])::bigint;
    IF v_usage >= v_limit THEN
      RETURN quota_used_up(v_set[1], v_limit, v_usage);
    END IF;
    RETURN NULL;
  END IF;

  SELECT count(*), coalesce(sum(t.bookings) FILTER (WHERE t.month = v_month), 0), coalesce(sum(t.holds), 0)
  INTO v_rows, v_bookings, v_holds FROM quota_tallies t WHERE t.tenant_id = p_tenant;
  IF v_rows = v_slots AND quota_room(v_set, v_limits, v_bookings, v_holds, 2 * v_slots) THEN
    v_slot := floor(random() * v_slots)::integer;
    PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || v_slot, 0));
    UPDATE quota_tallies t
    SET bookings = CASE WHEN t.month = v_month THEN t.bookings ELSE 0 END + 1, month = v_month,
        holds = t.holds + v_hold
    WHERE t.tenant_id = p_tenant AND t.slot = v_slot;
    SELECT count(*), coalesce(sum(t.bookings) FILTER (WHERE t.month = v_month), 0), coalesce(sum(t.holds), 0)
    INTO v_rows, v_bookings, v_holds FROM quota_tallies t WHERE t.tenant_id = p_tenant;
    -- This write is in the sums already; the other slots' writers are not.
    IF v_rows < v_slots OR NOT quota_room(v_set, v_limits, v_bookings, v_holds, v_slots - 1) THEN
      RAISE EXCEPTION 'the tenant came near its booking quotas while the request was checked'
        USING ERRCODE = 'HF004';
    END IF;
    RETURN NULL;
  END IF;

  FOR i IN 0 .. v_slots - 1 LOOP
    PERFORM pg_advisory_xact_lock(hashtextextended(v_lock || '/' || i, 0));
  END LOOP;
  v_bookings := quota_usage(p_tenant, 'bookings_per_month', p_now);
  v_holds := quota_usage(p_tenant, 'active_holds', p_now);
  FOREACH v_quota IN ARRAY v_set LOOP
    v_limit := (v_limits->>v_quota)::bigint;
    v_usage := CASE v_quota WHEN 'active_holds' THEN v_holds ELSE v_bookings END;
    IF v_usage >= v_limit THEN
      RETURN quota_used_up(v_quota, v_limit, v_usage);
    END IF;
  END LOOP;
  -- The tallies start again from the exact counts, this write included.
  INSERT INTO quota_tallies AS t (tenant_id, slot, month, bookings, holds)
  SELECT p_tenant, s, v_month, CASE WHEN s = 0 THEN v_bookings + 1 ELSE 0 END,
         CASE WHEN s = 0 THEN v_holds + v_hold ELSE 0 END
  FROM generate_series(0, v_slots - 1) AS s
  ON CONFLICT (tenant_id, slot) DO UPDATE
  SET month = excluded.month, bookings = excluded.bookings, holds = excluded.holds;
  RETURN NULL;
END
$function$;

CREATE OR REPLACE FUNCTION public.quota_room(p_set text[], p_limits jsonb, p_bookings bigint, p_holds bigint, p_margin integer)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE
AS $function$
  SELECT bool_and(CASE q WHEN 'active_holds' THEN p_holds ELSE p_bookings END + p_margin
                  <= (p_limits->>q)::bigint)
  FROM unnest(p_set) AS q
$function$;

CREATE OR REPLACE FUNCTION public.quota_slots()
 RETURNS integer
 LANGUAGE sql
 IMMUTABLE
AS $function$SELECT 16$function$;

CREATE OR REPLACE FUNCTION public.quota_usage(p_tenant text, p_quota text, p_now timestamp with time zone)
 RETURNS bigint
 LANGUAGE plpgsql
 STABLE
AS $function$
DECLARE
  n bigint;
BEGIN
  CASE p_quota
    WHEN 'bookings_per_month' THEN
      SELECT count(*) INTO n FROM bookings b
      WHERE b.tenant_id = p_tenant
        AND b.create_time >= date_trunc('month', p_now AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
        AND b.status <> 'expired' AND NOT (b.status = 'held' AND b.expire_time <= p_now);
    WHEN 'active_holds' THEN
      SELECT count(*) INTO n FROM bookings b
      WHERE b.tenant_id = p_tenant AND b.status = 'held' AND b.expire_time > p_now;
    WHEN 'resources' THEN
      SELECT count(*) INTO n FROM resources r WHERE r.tenant_id = p_tenant AND r.active;
    WHEN 'services' THEN
      SELECT count(*) INTO n FROM services s WHERE s.tenant_id = p_tenant AND s.active;
    WHEN 'webhooks' THEN
      SELECT count(*) INTO n FROM webhooks w WHERE w.tenant_id = p_tenant;
    WHEN 'api_keys' THEN
      SELECT count(*) INTO n FROM api_keys k WHERE k.tenant_id = p_tenant AND k.revoke_time IS NULL;
  END CASE;
  RETURN n;
END
$function$;

CREATE OR REPLACE FUNCTION public.quota_used_up(p_quota text, p_limit bigint, p_usage bigint)
 RETURNS jsonb
 LANGUAGE sql
 STABLE
AS $function$
  SELECT rejection('LIMIT_REACHED',
    format('the tenant''s quota %s is used up: %s in use of %s', p_quota, p_usage, p_limit),
    jsonb_build_object('metadata', jsonb_build_object(
      'quota', p_quota, 'limit', p_limit::text, 'usage', p_usage::text)))
$function$;

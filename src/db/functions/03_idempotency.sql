-- Idempotency-Keys: looking up what a key already answered, claiming a key,
-- and keeping its outcome in the transaction that did the work.
--
-- A key is scoped to the tenant, the API key that sent it and the method
-- (the primary key of idempotency_keys, 0017_idempotency_per_api_key.sql):
-- another API key of the tenant sending the same key gets no answer of the
-- first one's, whose answers depend on what that key made and may do. Rows
-- stored before keys were scoped by API key have api_key_id '' and still
-- answer any key of their tenant, until they age out after 24 hours.

-- What a key already answered: its stored outcome marked as replayed, or
-- an IDEMPOTENCY_KEY_REUSED rejection when it came with a different
-- request; NULL when the key is new (or older than the 24 hours keys are
-- kept).
CREATE FUNCTION idempotent_replay(p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea)
RETURNS jsonb
LANGUAGE plpgsql STABLE AS $$
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
$$;

-- The booking functions' way, one write per key: they look the key up
-- first (idempotent_replay), do their work, then store the outcome here.
-- NULL: stored. If a request with the same key committed meanwhile, its
-- outcome wins: this returns it (replayed, or IDEMPOTENCY_KEY_REUSED) when
-- this call wrote nothing, and raises HF003 when it did, so the whole
-- transaction rolls back and the caller runs it again, which then replays.
-- Concurrent duplicates therefore never both take effect.
CREATE FUNCTION keep_idempotent_outcome(
  p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea, p_outcome jsonb, p_wrote boolean
) RETURNS jsonb
LANGUAGE plpgsql AS $$
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
$$;

-- The other mutations' way, for work spread over several statements:
-- claim the key at the start of the transaction, finish it at the end.
-- NULL: the caller owns the key and does the work; otherwise what the key
-- already answered. A duplicate sent while the first is still running
-- waits on the key's row until the first commits, then replays it; but for
-- the transaction's setting holdfast.claim_wait_ms at most, when the caller
-- set it (lock_timeout, SQLSTATE 55P03): the caller then gives its
-- connection back and waits for the first without one
-- (src/rpc/idempotency.ts), so duplicates of a slow request cannot take
-- every connection of the pool. A setting rather than an argument: an
-- instance of the previous release, which calls with five arguments and
-- re-creates the functions of its own files when it starts, keeps working
-- beside this one, and this one with its function (waiting the session's
-- lock_timeout instead).
CREATE FUNCTION claim_idempotency_key(p_tenant text, p_api_key text, p_method text, p_key text, p_hash bytea)
RETURNS jsonb
LANGUAGE plpgsql AS $$
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
$$;

CREATE FUNCTION finish_idempotency_key(p_tenant text, p_api_key text, p_method text, p_key text, p_outcome jsonb)
RETURNS void
LANGUAGE sql AS $$
  UPDATE idempotency_keys SET outcome = p_outcome
  WHERE tenant_id = p_tenant AND api_key_id = p_api_key AND method = p_method AND key = p_key
$$;

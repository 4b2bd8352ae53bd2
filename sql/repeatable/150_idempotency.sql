-- Idempotency: the Idempotency-Key of POST requests. In the request's own transaction
-- the API calls idempotency_begin (which claims the key, or reports it), then the real
-- function, then idempotency_finish with the response. A failed request rolls the claim
-- back with everything else; a concurrent duplicate waits on the claim, then replays.

----------------------------------------------------------------------------------------
-- claim and finish
----------------------------------------------------------------------------------------

-- Claim p_key for this request. state: 'new' (go on), 'replay' (same request by the
-- same actor seen: status/response are the first answer), 'mismatch' (the key was used
-- for another request, or by another actor: a replay would hand one caller's answer,
-- perhaps made with scopes they lack, to another).
CREATE OR REPLACE FUNCTION api.idempotency_begin(
    p_tenant_id uuid, p_key text, p_request_hash bytea, p_method text, p_path text,
    p_ttl interval DEFAULT '24 hours'
)
RETURNS TABLE (state text, status integer, response jsonb)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row core.idempotency_keys;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, NULL);
    -- an expired key is free again
    DELETE FROM core.idempotency_keys AS k
     WHERE k.tenant_id = p_tenant_id AND k.key = p_key AND k.expires_at <= now();
    IF core.current_actor_id() IS NULL THEN
        RAISE EXCEPTION 'idempotency keys need an actor in the context' USING ERRCODE = '42501';
    END IF;
    INSERT INTO core.idempotency_keys (tenant_id, key, actor_id, request_hash, method, path, expires_at)
    VALUES (p_tenant_id, p_key, core.current_actor_id(), p_request_hash, p_method, p_path, now() + p_ttl)
    ON CONFLICT (tenant_id, key) DO NOTHING;
    IF FOUND THEN
        state := 'new';
        RETURN NEXT;
        RETURN;
    END IF;
    SELECT * INTO v_row FROM core.idempotency_keys AS k WHERE k.tenant_id = p_tenant_id AND k.key = p_key;
    IF v_row.request_hash <> p_request_hash OR v_row.method <> p_method OR v_row.path <> p_path
       OR v_row.actor_id IS DISTINCT FROM core.current_actor_id() THEN
        state := 'mismatch';
    ELSE
        state := 'replay';
        status := v_row.status;
        response := v_row.response;
    END IF;
    RETURN NEXT;
END
$$;

-- Record the response of the request that claimed p_key.
CREATE OR REPLACE FUNCTION api.idempotency_finish(p_tenant_id uuid, p_key text, p_status integer, p_response jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, NULL);
    UPDATE core.idempotency_keys AS k SET status = p_status, response = p_response
     WHERE k.tenant_id = p_tenant_id AND k.key = p_key;
END
$$;

----------------------------------------------------------------------------------------
-- sweeps (worker)
----------------------------------------------------------------------------------------

-- For the sweep job (jobs/sweeps.py): delete the keys whose replay window ended
-- (expires_at, from idempotency_begin's p_ttl); a request with such a key is new again.
-- At most p_batch per call, so that one run is short. Returns how many went.
CREATE OR REPLACE FUNCTION ops.sweep_idempotency_keys(p_batch integer DEFAULT 5000)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := pg_catalog.now();
    v_count integer;
BEGIN
    IF p_batch IS NULL OR p_batch < 1 THEN
        RAISE EXCEPTION 'a sweep needs a batch of at least 1' USING ERRCODE = '22023';
    END IF;
    DELETE FROM core.idempotency_keys
     WHERE (tenant_id, key) IN (
        SELECT k.tenant_id, k.key FROM core.idempotency_keys AS k WHERE k.expires_at < v_now LIMIT p_batch);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

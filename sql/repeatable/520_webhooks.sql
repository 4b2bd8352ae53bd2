-- Webhooks: the tenants' endpoints (api.* CRUD, plan feature 'webhooks'), the fan-out of
-- outbox events (510_outbox.sql) into deliveries, and the sender's claim and record of
-- attempts, for the worker role. Tables: sql/versions/0011_webhooks.up.sql; the sender
-- (HTTP, Standard Webhooks signature, SSRF check, secret decryption) is
-- jobs/webhook_delivery.py.
--
-- Delivery is at least once and, per endpoint, in event order where feasible: a claim
-- leases at most one delivery per endpoint at a time, the oldest due one, so first
-- attempts go out in the order the events occurred; a delivery waiting for a retry does
-- not hold the later ones back (a dead endpoint would stop them all). A sender killed
-- mid-batch leaves leases that run out, and the delivery is claimed again. Receivers
-- de-duplicate by the event id (the webhook-id header).
--
-- Retries: a failed attempt (no 2xx answer, a timeout, a refused address) is due again
-- after min(cap, base * 2^attempts) times a jitter of 0.5 to 1.0; after the maximum
-- number of attempts the delivery is dead. Every attempt is a row of core.webhook_attempts.
--
-- The endpoints' signing secret is generated and encrypted by the API (AES-GCM, key from
-- the environment: db/webhooks.py) and stored as ciphertext; SQL never sees the
-- secret or the key. The URL's form is a CHECK of the table; that it is https and not a
-- private address is the API's check and the sender's (on the address it resolves).

----------------------------------------------------------------------------------------
-- endpoints: checks and triggers
----------------------------------------------------------------------------------------

-- The event types of an endpoint, checked (each a known type or '*'), de-duplicated and
-- sorted; 22023 naming event_types otherwise.
CREATE OR REPLACE FUNCTION core.webhook_event_type_list(p_types text[])
RETURNS text[]
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text;
    v_types text[];
BEGIN
    IF p_types IS NULL OR cardinality(p_types) = 0 THEN
        RAISE EXCEPTION 'an endpoint needs at least one event type (or "*" for all)' USING
            ERRCODE = '22023', COLUMN = 'event_types';
    END IF;
    SELECT t INTO v_unknown FROM unnest(p_types) AS t
     WHERE t IS NULL OR (t <> '*' AND t <> ALL (core.webhook_event_types()))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown event type: %', COALESCE(v_unknown, 'null') USING
            ERRCODE = '22023', COLUMN = 'event_types',
            HINT = 'Known types: ' || array_to_string(core.webhook_event_types(), ', ') || ', or "*" for all.';
    END IF;
    SELECT array_agg(DISTINCT t ORDER BY t) INTO v_types FROM unnest(p_types) AS t;
    RETURN v_types;
END
$$;

CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- stamp updated_at and raise row_version, the ETag (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.webhook_endpoints
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

----------------------------------------------------------------------------------------
-- api.*: endpoints (scopes webhooks:read, webhooks:write)
----------------------------------------------------------------------------------------

-- Register an endpoint: needs the plan feature 'webhooks' (TQ002). p_secret_ciphertext is
-- the signing secret as the API encrypted it (the API shows the secret once).
CREATE OR REPLACE FUNCTION api.create_webhook(
    p_tenant_id uuid,
    p_url text,
    p_event_types text[],
    p_secret_ciphertext bytea,
    p_description text DEFAULT '',
    p_active boolean DEFAULT true
)
RETURNS core.webhook_endpoints
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_endpoint core.webhook_endpoints;
    v_types text[];
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:write');
    PERFORM core.assert_plan_feature(p_tenant_id, 'webhooks');
    v_types := core.webhook_event_type_list(p_event_types);  -- a value first (docs/citus.md, fact 15)
    INSERT INTO core.webhook_endpoints (tenant_id, url, event_types, active, secret_ciphertext, description, created_by)
    VALUES (p_tenant_id, p_url, v_types, COALESCE(p_active, true), p_secret_ciphertext, COALESCE(p_description, ''),
            core.current_actor_id())
    RETURNING * INTO v_endpoint;
    RETURN v_endpoint;
END
$$;

-- One endpoint, or P0002.
CREATE OR REPLACE FUNCTION api.get_webhook(p_tenant_id uuid, p_endpoint_id uuid)
RETURNS core.webhook_endpoints
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_endpoint core.webhook_endpoints;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:read');
    SELECT * INTO v_endpoint FROM core.webhook_endpoints WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('webhook', p_endpoint_id);
    END IF;
    RETURN v_endpoint;
END
$$;

-- A page of endpoints in (created_at, endpoint_id) order, after the keyset cursor.
CREATE OR REPLACE FUNCTION api.list_webhooks(
    p_tenant_id uuid,
    p_limit integer DEFAULT 50,
    p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL
)
RETURNS SETOF core.webhook_endpoints
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:read');
    PERFORM core.assert_page_size(p_limit);
    RETURN QUERY
        SELECT * FROM core.webhook_endpoints
         WHERE tenant_id = p_tenant_id
           AND (p_after_created_at IS NULL
                OR (created_at, endpoint_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY created_at, endpoint_id
         LIMIT p_limit;
END
$$;

-- Change an endpoint's url, event_types, active or description (p_changes holds the new
-- values); conditional like api.update_project (TN020, 040_timestamps.sql).
CREATE OR REPLACE FUNCTION api.update_webhook(
    p_tenant_id uuid,
    p_endpoint_id uuid,
    p_changes jsonb,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.webhook_endpoints
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_endpoint core.webhook_endpoints;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
    v_types text[];
    v_active boolean;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:write');
    PERFORM core.assert_known_fields(p_changes, ARRAY['url', 'event_types', 'active', 'description'], 'webhook');
    -- typed values first: the UPDATE's CASEs only pick (docs/citus.md, fact 14)
    IF p_changes ? 'event_types' THEN
        IF jsonb_typeof(p_changes -> 'event_types') <> 'array' THEN
            RAISE EXCEPTION 'event_types is a list of event types' USING ERRCODE = '22023', COLUMN = 'event_types';
        END IF;
        v_types := core.webhook_event_type_list(ARRAY(SELECT jsonb_array_elements_text(p_changes -> 'event_types')));
    END IF;
    IF p_changes ? 'active' THEN
        IF jsonb_typeof(p_changes -> 'active') <> 'boolean' THEN
            RAISE EXCEPTION 'active is true or false' USING ERRCODE = '22023', COLUMN = 'active';
        END IF;
        v_active := (p_changes ->> 'active')::boolean;
    END IF;
    UPDATE core.webhook_endpoints SET
        url         = CASE WHEN p_changes ? 'url' THEN p_changes ->> 'url' ELSE url END,
        event_types = CASE WHEN p_changes ? 'event_types' THEN v_types ELSE event_types END,
        active      = CASE WHEN p_changes ? 'active' THEN v_active ELSE active END,
        description = CASE WHEN p_changes ? 'description' THEN COALESCE(p_changes ->> 'description', '') ELSE description END
     WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_endpoint;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.webhook_endpoints WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id
        ) THEN
            PERFORM core.raise_changed('webhook', p_endpoint_id);
        END IF;
        PERFORM core.raise_not_found('webhook', p_endpoint_id);
    END IF;
    RETURN v_endpoint;
END
$$;

-- Delete an endpoint with its deliveries and their attempts (ON DELETE CASCADE);
-- conditional like api.update_webhook. Returns the endpoint as it was.
CREATE OR REPLACE FUNCTION api.delete_webhook(
    p_tenant_id uuid,
    p_endpoint_id uuid,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.webhook_endpoints
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_endpoint core.webhook_endpoints;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:write');
    DELETE FROM core.webhook_endpoints
     WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_endpoint;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.webhook_endpoints WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id
        ) THEN
            PERFORM core.raise_changed('webhook', p_endpoint_id);
        END IF;
        PERFORM core.raise_not_found('webhook', p_endpoint_id);
    END IF;
    RETURN v_endpoint;
END
$$;

----------------------------------------------------------------------------------------
-- api.*: deliveries, redelivery and the test event
----------------------------------------------------------------------------------------

-- A page of an endpoint's deliveries, newest-last in (created_at, delivery_id) order, with
-- the event's type; P0002 for an endpoint that is not the tenant's.
CREATE OR REPLACE FUNCTION api.list_webhook_deliveries(
    p_tenant_id uuid,
    p_endpoint_id uuid,
    p_limit integer DEFAULT 50,
    p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL
)
RETURNS TABLE (
    delivery_id uuid, endpoint_id uuid, event_id uuid, event_type text, status text, attempts integer,
    next_attempt_at timestamptz, last_status integer, last_error text, created_at timestamptz,
    finished_at timestamptz
)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:read');
    PERFORM core.assert_page_size(p_limit);
    IF NOT EXISTS (SELECT 1 FROM core.webhook_endpoints AS w
                    WHERE w.tenant_id = p_tenant_id AND w.endpoint_id = p_endpoint_id) THEN
        PERFORM core.raise_not_found('webhook', p_endpoint_id);
    END IF;
    RETURN QUERY
        SELECT d.delivery_id, d.endpoint_id, d.event_id, e.event_type, d.status, d.attempts,
               d.next_attempt_at, d.last_status, d.last_error, d.created_at, d.finished_at
          FROM core.webhook_deliveries AS d
          JOIN core.outbox_events AS e ON e.tenant_id = d.tenant_id AND e.event_id = d.event_id
         WHERE d.tenant_id = p_tenant_id AND d.endpoint_id = p_endpoint_id
           AND (p_after_created_at IS NULL
                OR (d.created_at, d.delivery_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY d.created_at, d.delivery_id
         LIMIT p_limit;
END
$$;

-- One delivery with its event and every attempt (status code, latency, the start of
-- the answer), as JSON; P0002 unless it is a delivery of the tenant's endpoint.
CREATE OR REPLACE FUNCTION api.get_webhook_delivery(p_tenant_id uuid, p_endpoint_id uuid, p_delivery_id uuid)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_delivery core.webhook_deliveries;
    v_event core.outbox_events;
    v_attempts jsonb;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:read');
    SELECT * INTO v_delivery FROM core.webhook_deliveries
     WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id AND delivery_id = p_delivery_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('delivery', p_delivery_id);
    END IF;
    SELECT * INTO v_event FROM core.outbox_events WHERE tenant_id = p_tenant_id AND event_id = v_delivery.event_id;
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'attempt_no', a.attempt_no, 'status_code', a.status_code, 'latency_ms', a.latency_ms,
               'response_snippet', a.response_snippet, 'error', a.error, 'attempted_at', a.attempted_at)
             ORDER BY a.attempt_no), '[]'::jsonb)
      INTO v_attempts
      FROM core.webhook_attempts AS a
     WHERE a.tenant_id = p_tenant_id AND a.delivery_id = p_delivery_id;
    RETURN core.jsonb_pick(to_jsonb(v_delivery), ARRAY[
               'delivery_id', 'endpoint_id', 'event_id', 'status', 'attempts', 'next_attempt_at', 'last_status',
               'last_error', 'created_at', 'finished_at'])
        || jsonb_build_object('event_type', v_event.event_type, 'occurred_at', v_event.occurred_at,
                              'payload', v_event.payload, 'attempt_log', v_attempts);
END
$$;

-- Send a delivery's event to its endpoint again: a new pending delivery of the same event
-- (same webhook-id: receivers that de-duplicate see a repeat), due now, with attempts of
-- its own. Any delivery (succeeded, dead or pending) may be redelivered.
CREATE OR REPLACE FUNCTION api.redeliver_webhook(p_tenant_id uuid, p_endpoint_id uuid, p_delivery_id uuid)
RETURNS core.webhook_deliveries
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_old core.webhook_deliveries;
    v_new core.webhook_deliveries;
    v_now timestamptz := now();
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:write');
    SELECT * INTO v_old FROM core.webhook_deliveries
     WHERE tenant_id = p_tenant_id AND endpoint_id = p_endpoint_id AND delivery_id = p_delivery_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('delivery', p_delivery_id);
    END IF;
    INSERT INTO core.webhook_deliveries (tenant_id, endpoint_id, event_id, next_attempt_at, created_at)
    VALUES (p_tenant_id, p_endpoint_id, v_old.event_id, v_now, v_now)
    RETURNING * INTO v_new;
    RETURN v_new;
END
$$;

-- Send a webhook.test event to one endpoint, through the outbox like any event (the
-- fan-out makes its delivery only for that endpoint, if it is active). Returns the event.
CREATE OR REPLACE FUNCTION api.send_test_webhook(p_tenant_id uuid, p_endpoint_id uuid)
RETURNS TABLE (event_id uuid, event_type text, endpoint_id uuid)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'webhooks:write');
    IF NOT EXISTS (SELECT 1 FROM core.webhook_endpoints AS w
                    WHERE w.tenant_id = p_tenant_id AND w.endpoint_id = p_endpoint_id) THEN
        PERFORM core.raise_not_found('webhook', p_endpoint_id);
    END IF;
    event_id := core.emit_event(p_tenant_id, 'webhook.test',
                                jsonb_build_object('endpoint_id', p_endpoint_id,
                                                   'message', 'This is a test event from tenantry.'),
                                p_endpoint_id);
    event_type := 'webhook.test';
    endpoint_id := p_endpoint_id;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- the worker's steps (jobs/webhooks.py): fan out, claim, record
----------------------------------------------------------------------------------------

-- Fan out up to p_limit undispatched events into deliveries: one per active endpoint
-- subscribed to the event's type (a test event: its one endpoint), and mark the events
-- dispatched, in this transaction, so an event is fanned out exactly once. The tenants
-- with work are found by a multi-shard read without locks (Citus cannot lock rows in a
-- multi-shard query); each tenant's events are then locked FOR UPDATE SKIP LOCKED by a
-- router statement, so concurrent runs take disjoint events. Set-based per tenant:
-- one INSERT ... SELECT and one UPDATE.
CREATE OR REPLACE FUNCTION ops.fan_out_webhook_events(p_limit integer DEFAULT 1000)
RETURNS TABLE (events integer, deliveries integer, tenants integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_tenant uuid;
    v_ids uuid[];
    v_made integer;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'a run takes 1 to 100000 events, not %', p_limit USING ERRCODE = '22023', COLUMN = 'limit';
    END IF;
    events := 0;
    deliveries := 0;
    tenants := 0;
    FOR v_tenant IN
        SELECT e.tenant_id FROM core.outbox_events AS e
         WHERE e.dispatched_at IS NULL
         GROUP BY e.tenant_id
         ORDER BY min(e.occurred_at)
    LOOP
        EXIT WHEN events >= p_limit;
        SELECT array_agg(q.event_id) INTO v_ids
          FROM (SELECT e.event_id FROM core.outbox_events AS e
                 WHERE e.tenant_id = v_tenant AND e.dispatched_at IS NULL
                 ORDER BY e.occurred_at, e.event_id
                 LIMIT p_limit - events
                   FOR UPDATE SKIP LOCKED) AS q;
        CONTINUE WHEN v_ids IS NULL;
        -- the first attempt is due when the event occurred: claims go oldest first
        WITH made AS (
            INSERT INTO core.webhook_deliveries (tenant_id, endpoint_id, event_id, next_attempt_at, created_at)
            SELECT v_tenant, w.endpoint_id, e.event_id, e.occurred_at, v_now
              FROM core.outbox_events AS e
              JOIN core.webhook_endpoints AS w ON w.tenant_id = e.tenant_id
             WHERE e.tenant_id = v_tenant AND w.tenant_id = v_tenant AND e.event_id = ANY (v_ids) AND w.active
               AND CASE WHEN e.endpoint_id IS NOT NULL THEN w.endpoint_id = e.endpoint_id
                        ELSE e.event_type = ANY (w.event_types) OR '*' = ANY (w.event_types) END
            RETURNING 1
        )
        SELECT count(*) INTO v_made FROM made;
        UPDATE core.outbox_events AS e SET dispatched_at = v_now
         WHERE e.tenant_id = v_tenant AND e.event_id = ANY (v_ids);
        events := events + cardinality(v_ids);
        deliveries := deliveries + v_made;
        tenants := tenants + 1;
    END LOOP;
    RETURN NEXT;
END
$$;

-- Lease up to p_limit due deliveries to one sender for p_lease: pending, due, not
-- leased (or the lease ran out), of an active endpoint, at most one in flight per
-- endpoint (its oldest due delivery), oldest first. Returns what the sender needs: the
-- URL, the encrypted secret, the event, the attempt number and the lease (passed back
-- to ops.record_webhook_attempt). Tenants with due deliveries are found by a multi-shard
-- read without locks; per tenant, the endpoints are locked FOR NO KEY UPDATE SKIP LOCKED
-- (router statements), so two claims never lease deliveries of one endpoint at once, and
-- the lease is set by an UPDATE that re-checks that the delivery is still claimable.
CREATE OR REPLACE FUNCTION ops.claim_webhook_deliveries(p_limit integer DEFAULT 50,
                                                        p_lease interval DEFAULT '1 minute')
RETURNS TABLE (
    tenant_id uuid, delivery_id uuid, endpoint_id uuid, url text, secret_ciphertext bytea, event_id uuid,
    event_type text, occurred_at timestamptz, payload jsonb, attempt_no integer, claimed_until timestamptz
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_until timestamptz;
    v_tenant uuid;
    v_candidates uuid[];
    v_endpoints uuid[];
    v_ids uuid[];
    v_count integer := 0;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'a batch is 1 to 1000 deliveries, not %', p_limit USING ERRCODE = '22023', COLUMN = 'limit';
    END IF;
    IF NOT p_lease > interval '0' THEN
        RAISE EXCEPTION 'the lease must be a positive interval' USING ERRCODE = '22023', COLUMN = 'lease';
    END IF;
    v_until := v_now + p_lease;
    FOR v_tenant IN
        SELECT d.tenant_id FROM core.webhook_deliveries AS d
         WHERE d.status = 'pending' AND d.next_attempt_at <= v_now
           AND (d.claimed_until IS NULL OR d.claimed_until <= v_now)
         GROUP BY d.tenant_id
         ORDER BY min(d.next_attempt_at)
         LIMIT p_limit
    LOOP
        EXIT WHEN v_count >= p_limit;
        -- the endpoints with a due delivery and none in flight, then locked (another
        -- claim holding one skips it)
        SELECT array_agg(DISTINCT d.endpoint_id) INTO v_candidates
          FROM core.webhook_deliveries AS d
         WHERE d.tenant_id = v_tenant AND d.status = 'pending' AND d.next_attempt_at <= v_now
           AND (d.claimed_until IS NULL OR d.claimed_until <= v_now);
        SELECT array_agg(w.endpoint_id) INTO v_endpoints
          FROM (SELECT w.endpoint_id FROM core.webhook_endpoints AS w
                 WHERE w.tenant_id = v_tenant AND w.endpoint_id = ANY (v_candidates) AND w.active
                 ORDER BY w.endpoint_id
                   FOR NO KEY UPDATE SKIP LOCKED) AS w;
        CONTINUE WHEN v_endpoints IS NULL;
        -- per endpoint its oldest due delivery, unless one of its deliveries is in flight
        -- (read under the endpoint's lock: a concurrent claim of it has committed or waits)
        SELECT array_agg(o.delivery_id) INTO v_ids
          FROM (SELECT f.delivery_id FROM (
                    SELECT DISTINCT ON (d.endpoint_id) d.delivery_id, d.next_attempt_at, d.created_at
                      FROM core.webhook_deliveries AS d
                     WHERE d.tenant_id = v_tenant AND d.endpoint_id = ANY (v_endpoints)
                       AND d.status = 'pending' AND d.next_attempt_at <= v_now
                       AND (d.claimed_until IS NULL OR d.claimed_until <= v_now)
                       AND NOT EXISTS (SELECT 1 FROM core.webhook_deliveries AS busy
                                        WHERE busy.tenant_id = v_tenant AND busy.endpoint_id = d.endpoint_id
                                          AND busy.status = 'pending' AND busy.claimed_until > v_now)
                     ORDER BY d.endpoint_id, d.next_attempt_at, d.created_at, d.delivery_id) AS f
                 ORDER BY f.next_attempt_at, f.created_at, f.delivery_id
                 LIMIT p_limit - v_count) AS o;
        CONTINUE WHEN v_ids IS NULL;
        WITH claimed AS (
            UPDATE core.webhook_deliveries AS d SET claimed_until = v_until
             WHERE d.tenant_id = v_tenant AND d.delivery_id = ANY (v_ids) AND d.status = 'pending'
               AND (d.claimed_until IS NULL OR d.claimed_until <= v_now)
            RETURNING d.delivery_id
        )
        SELECT array_agg(c.delivery_id) INTO v_ids FROM claimed AS c;
        CONTINUE WHEN v_ids IS NULL;
        v_count := v_count + cardinality(v_ids);
        RETURN QUERY
            SELECT d.tenant_id, d.delivery_id, d.endpoint_id, w.url, w.secret_ciphertext, e.event_id,
                   e.event_type, e.occurred_at, e.payload, d.attempts + 1, d.claimed_until
              FROM core.webhook_deliveries AS d
              JOIN core.webhook_endpoints AS w ON w.tenant_id = d.tenant_id AND w.endpoint_id = d.endpoint_id
              JOIN core.outbox_events AS e ON e.tenant_id = d.tenant_id AND e.event_id = d.event_id
             WHERE d.tenant_id = v_tenant AND d.delivery_id = ANY (v_ids)
             ORDER BY d.next_attempt_at, d.created_at, d.delivery_id;
    END LOOP;
END
$$;

-- Record one attempt of a delivery the sender leased (p_claimed_until: the lease the
-- claim returned). A 2xx status is success: the delivery succeeded. A failure (another
-- status, or none: p_error says why) is retried after min(p_backoff_cap, p_backoff_base
-- * 2^attempts) times a jitter of 0.5 to 1.0, or is dead after p_max_attempts. The
-- attempt is always recorded (first 500 characters of the answer); a sender whose lease
-- ran out and was claimed again by another does not reschedule the other's attempt
-- (its success still counts: the event arrived). Returns the delivery's state; nothing
-- if the delivery is gone (its endpoint was deleted meanwhile).
CREATE OR REPLACE FUNCTION ops.record_webhook_attempt(
    p_tenant_id uuid,
    p_delivery_id uuid,
    p_claimed_until timestamptz,
    p_status_code integer,
    p_latency_ms integer,
    p_response_snippet text DEFAULT NULL,
    p_error text DEFAULT NULL,
    p_max_attempts integer DEFAULT 8,
    p_backoff_base interval DEFAULT '10 seconds',
    p_backoff_cap interval DEFAULT '6 hours'
)
RETURNS TABLE (status text, attempts integer, next_attempt_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_delivery core.webhook_deliveries;
    v_now timestamptz := now();
    v_attempt integer;
    v_ok boolean := p_status_code BETWEEN 200 AND 299;
    v_owner boolean;
    v_status text;
    v_next timestamptz;
    v_claimed timestamptz;
    v_finished timestamptz;
    v_wait interval;
BEGIN
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        RAISE EXCEPTION 'max attempts must be at least 1' USING ERRCODE = '22023', COLUMN = 'max_attempts';
    END IF;
    SELECT * INTO v_delivery FROM core.webhook_deliveries AS d
     WHERE d.tenant_id = p_tenant_id AND d.delivery_id = p_delivery_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    v_attempt := v_delivery.attempts + 1;
    INSERT INTO core.webhook_attempts (tenant_id, delivery_id, attempt_no, status_code, latency_ms,
                                       response_snippet, error, attempted_at)
    VALUES (p_tenant_id, p_delivery_id, v_attempt, p_status_code, GREATEST(COALESCE(p_latency_ms, 0), 0),
            left(p_response_snippet, 500), left(p_error, 2000), v_now);
    v_owner := v_delivery.status = 'pending' AND v_delivery.claimed_until IS NOT DISTINCT FROM p_claimed_until;
    -- computed here, not in the UPDATE (docs/citus.md, fact 14)
    v_status := v_delivery.status;
    v_next := v_delivery.next_attempt_at;
    v_claimed := v_delivery.claimed_until;
    v_finished := v_delivery.finished_at;
    IF v_delivery.status = 'pending' AND v_ok THEN
        v_status := 'succeeded';
        v_claimed := NULL;
        v_finished := v_now;
    ELSIF v_owner AND v_attempt >= p_max_attempts THEN
        v_status := 'dead';
        v_claimed := NULL;
        v_finished := v_now;
    ELSIF v_owner THEN
        v_wait := LEAST(p_backoff_cap, p_backoff_base * power(2, v_attempt)) * (0.5 + random() / 2);
        v_next := v_now + v_wait;
        v_claimed := NULL;
    END IF;
    UPDATE core.webhook_deliveries AS d SET
        attempts = v_attempt,
        status = v_status,
        next_attempt_at = v_next,
        claimed_until = v_claimed,
        finished_at = v_finished,
        last_status = p_status_code,
        last_error = left(p_error, 2000)
     WHERE d.tenant_id = p_tenant_id AND d.delivery_id = p_delivery_id;
    status := v_status;
    attempts := v_attempt;
    next_attempt_at := v_next;
    RETURN NEXT;
END
$$;

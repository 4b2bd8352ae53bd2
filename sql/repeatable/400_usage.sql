-- Usage metering: ingest (api.ingest_usage; ops.record_api_calls for the API-call
-- counters a job flushes from Redis), rollups (ops.rollup_usage), partition maintenance
-- and retention (ops.maintain_usage_partitions), and reading (api.get_usage,
-- api.get_usage_summary, api.list_metrics). Tables: sql/versions/0009_usage.up.sql.
--
-- Exactly once: an event id is claimed once per tenant in core.usage_event_ids, whatever
-- the event's occurred_at (docs/citus.md, fact 7); a claimed event is stored and queued
-- in core.usage_pending in the same transaction; a rollup run deletes what it takes from
-- core.usage_pending and adds it to core.usage_rollups in one transaction. A retry is a
-- duplicate, a crashed run rolls back whole, concurrent runs take disjoint events
-- (FOR UPDATE SKIP LOCKED), and a late event is just another pending event.
--
-- A batch is all or nothing: the first bad event (in batch order) is named in the
-- error's COLUMN as events[<index from 0>].<field>, and nothing of the batch is stored.
-- Refusals: TU001 unknown metric, TU002 older than the lateness window, TU003 in the
-- future beyond the clock skew, TU005 no partition for the event (maintenance is late);
-- 22023 for a malformed event (field named), 22007 for an unparsable time.

----------------------------------------------------------------------------------------
-- the documented limits
----------------------------------------------------------------------------------------

-- How late an event may arrive: 7 days after it occurred. Older events are refused
-- (TU002), so the rollups of a bucket older than this never change again.
CREATE OR REPLACE FUNCTION core.usage_lateness_window()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT interval '7 days' $$;

-- How far in the future an event may be (clients' clocks drift): 5 minutes (TU003).
CREATE OR REPLACE FUNCTION core.usage_clock_skew()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT interval '5 minutes' $$;

-- The most events one ingest call takes: 1000 (the API's batch limit, too).
CREATE OR REPLACE FUNCTION core.usage_max_batch()
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 1000 $$;

----------------------------------------------------------------------------------------
-- ingest
----------------------------------------------------------------------------------------

-- Store a batch of usage events of one tenant; return how many were new (accepted) and
-- how many were ids seen before (duplicates: in an earlier batch, or earlier in this
-- one). Set-based: one pass validates, one parses into arrays, then each table gets one
-- INSERT ... SELECT FROM unnest(...). The callers check the context (api.ingest_usage)
-- or are the worker (ops.record_api_calls); invoker rights, so RLS applies to the API.
--
-- Metered quotas: for the sum and count metrics among the new events, the batch's
-- total per metric is charged with core.consume_metered (070_quotas.sql), once per
-- metric, only for new events; a refusal there refuses the batch. p_block_over_quota
-- false records usage beyond a blocking limit (API calls already served).
CREATE OR REPLACE FUNCTION core.ingest_usage(p_tenant_id uuid, p_events jsonb, p_block_over_quota boolean DEFAULT true)
RETURNS TABLE (accepted integer, duplicates integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_oldest timestamptz := now() - core.usage_lateness_window();
    v_newest timestamptz := now() + core.usage_clock_skew();
    v_total integer;
    v_bad record;
    v_ids text[];
    v_metrics text[];
    v_quantities numeric[];
    v_times timestamptz[];
    v_properties jsonb[];
    v_unique text[];
    v_new text[];
    v_charge record;
BEGIN
    IF p_events IS NULL OR jsonb_typeof(p_events) <> 'array' THEN
        RAISE EXCEPTION 'events must be a JSON array of events' USING ERRCODE = '22023', COLUMN = 'events';
    END IF;
    v_total := jsonb_array_length(p_events);
    IF v_total > core.usage_max_batch() THEN
        RAISE EXCEPTION 'a batch holds at most % events, not %', core.usage_max_batch(), v_total USING
            ERRCODE = '22023', COLUMN = 'events', HINT = 'Split the events into several batches.';
    END IF;
    accepted := 0;
    duplicates := 0;
    IF v_total = 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;

    -- the first bad event, in batch order (CASE tests in order, so each cast only sees
    -- a value of the right JSON type)
    SELECT (x.ord - 1)::integer AS idx, p.* INTO v_bad
      FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x (doc, ord)
      LEFT JOIN core.metrics AS m ON m.metric = x.doc ->> 'metric'
      CROSS JOIN LATERAL (SELECT CASE
            WHEN jsonb_typeof(x.doc) IS DISTINCT FROM 'object' THEN '22023|event|an event is a JSON object'
            WHEN x.doc - ARRAY['event_id', 'metric', 'quantity', 'occurred_at', 'properties'] <> '{}'::jsonb THEN
                '22023|' || (SELECT min(k) FROM jsonb_object_keys(x.doc - ARRAY['event_id', 'metric', 'quantity', 'occurred_at', 'properties']) AS k)
                || '|not a field of a usage event (event_id, metric, quantity, occurred_at, properties)'
            WHEN jsonb_typeof(x.doc -> 'event_id') IS DISTINCT FROM 'string'
                 OR length(x.doc ->> 'event_id') NOT BETWEEN 1 AND 200 THEN
                '22023|event_id|event_id is a string of 1 to 200 characters'
            WHEN jsonb_typeof(x.doc -> 'metric') IS DISTINCT FROM 'string' THEN '22023|metric|metric is a string'
            WHEN m.metric IS NULL THEN 'TU001|metric|unknown metric ' || (x.doc ->> 'metric')
            WHEN x.doc ? 'quantity' AND jsonb_typeof(x.doc -> 'quantity') IS DISTINCT FROM 'number' THEN
                '22023|quantity|quantity is a number'
            WHEN (x.doc ->> 'quantity')::numeric < 0 THEN '22023|quantity|quantity cannot be negative'
            WHEN x.doc ? 'occurred_at' AND (jsonb_typeof(x.doc -> 'occurred_at') IS DISTINCT FROM 'string'
                 OR x.doc ->> 'occurred_at' !~ '^\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d{1,6})?)?(Z|z|[+-]\d\d(:?\d\d)?)$') THEN
                '22007|occurred_at|occurred_at is an ISO 8601 time with a UTC offset, e.g. 2025-01-31T12:00:00Z'
            WHEN (x.doc ->> 'occurred_at')::timestamptz < v_oldest THEN
                'TU002|occurred_at|the event is older than the lateness window (' || core.usage_lateness_window() || ')'
            WHEN (x.doc ->> 'occurred_at')::timestamptz > v_newest THEN
                'TU003|occurred_at|the event is in the future (more than ' || core.usage_clock_skew() || ' ahead)'
            WHEN x.doc ? 'properties' AND jsonb_typeof(x.doc -> 'properties') IS DISTINCT FROM 'object' THEN
                '22023|properties|properties is a JSON object'
            WHEN m.aggregation = 'unique_count' AND (jsonb_typeof(x.doc -> 'properties' -> m.property) IS NULL
                 OR jsonb_typeof(x.doc -> 'properties' -> m.property) = 'null') THEN
                '22023|properties.' || m.property || '|metric ' || m.metric || ' counts distinct values of properties.' || m.property
            END AS problem) AS p
     WHERE p.problem IS NOT NULL
     ORDER BY x.ord
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'event % (%): %', v_bad.idx, left(COALESCE(p_events -> v_bad.idx ->> 'event_id', 'no event_id'), 200),
                        split_part(v_bad.problem, '|', 3) USING
            ERRCODE = split_part(v_bad.problem, '|', 1),
            COLUMN = format('events[%s].%s', v_bad.idx, split_part(v_bad.problem, '|', 2)),
            HINT = CASE split_part(v_bad.problem, '|', 1)
                       WHEN 'TU001' THEN 'GET /v1/usage/metrics lists the metrics.'
                       WHEN 'TU002' THEN 'Send events within the lateness window; nothing of this batch was stored.'
                       ELSE 'Nothing of this batch was stored.' END;
    END IF;

    -- parse once, keeping the first of repeated ids, in id order (claims below then take
    -- their row locks in one order, so two overlapping batches cannot deadlock)
    -- (one sort: the aggregates read the sorted subquery in its order)
    SELECT array_agg(b.event_id), array_agg(b.metric), array_agg(b.quantity), array_agg(b.occurred_at),
           array_agg(b.properties), array_agg(b.unique_value)
      INTO v_ids, v_metrics, v_quantities, v_times, v_properties, v_unique
      FROM (SELECT DISTINCT ON (x.doc ->> 'event_id')
                   x.doc ->> 'event_id' AS event_id,
                   m.metric,
                   COALESCE((x.doc ->> 'quantity')::numeric, 1) AS quantity,
                   COALESCE((x.doc ->> 'occurred_at')::timestamptz, v_now) AS occurred_at,
                   COALESCE(x.doc -> 'properties', '{}'::jsonb) AS properties,
                   CASE WHEN m.aggregation = 'unique_count' THEN x.doc -> 'properties' ->> m.property END AS unique_value
              FROM jsonb_array_elements(p_events) WITH ORDINALITY AS x (doc, ord)
              JOIN core.metrics AS m ON m.metric = x.doc ->> 'metric'
             ORDER BY x.doc ->> 'event_id', x.ord
             OFFSET 0) AS b;

    -- claim the ids: only the ones never seen are new
    WITH claimed AS (
        INSERT INTO core.usage_event_ids (tenant_id, event_id, ingested_at)
        SELECT p_tenant_id, i.event_id, v_now FROM unnest(v_ids) AS i (event_id)
        ON CONFLICT DO NOTHING
        RETURNING event_id
    )
    SELECT COALESCE(array_agg(c.event_id), '{}') INTO v_new FROM claimed AS c;
    accepted := cardinality(v_new);
    duplicates := v_total - accepted;
    IF accepted = 0 THEN
        RETURN NEXT;
        RETURN;
    END IF;
    IF accepted < cardinality(v_ids) THEN
        -- keep the new events only
        SELECT array_agg(b.event_id ORDER BY b.event_id), array_agg(b.metric ORDER BY b.event_id),
               array_agg(b.quantity ORDER BY b.event_id), array_agg(b.occurred_at ORDER BY b.event_id),
               array_agg(b.properties ORDER BY b.event_id), array_agg(b.unique_value ORDER BY b.event_id)
          INTO v_ids, v_metrics, v_quantities, v_times, v_properties, v_unique
          FROM unnest(v_ids, v_metrics, v_quantities, v_times, v_properties, v_unique)
                   AS b (event_id, metric, quantity, occurred_at, properties, unique_value)
         WHERE b.event_id = ANY (v_new);
    END IF;

    -- metered quotas, once per metric, before the events are stored
    FOR v_charge IN
        SELECT b.metric, CASE WHEN m.aggregation = 'count' THEN count(*)::numeric ELSE sum(b.quantity) END AS amount
          FROM unnest(v_metrics, v_quantities) AS b (metric, quantity)
          JOIN core.metrics AS m ON m.metric = b.metric
         WHERE m.aggregation IN ('sum', 'count')
         GROUP BY b.metric, m.aggregation
         ORDER BY b.metric
    LOOP
        PERFORM core.consume_metered(p_tenant_id, v_charge.metric, v_charge.amount, p_block_over_quota);
    END LOOP;

    -- The ids are new (claimed above), so ON CONFLICT DO NOTHING never skips a row here:
    -- it is for Citus, which writes an INSERT ... SELECT from unnest() with COPY into the
    -- shards unless it has ON CONFLICT or RETURNING, and COPY refuses a table under RLS
    -- (docs/citus.md, fact 26).
    BEGIN
        INSERT INTO core.usage_events (tenant_id, event_id, metric, quantity, occurred_at, properties, ingested_at)
        SELECT p_tenant_id, b.event_id, b.metric, b.quantity, b.occurred_at, b.properties, v_now
          FROM unnest(v_ids, v_metrics, v_quantities, v_times, v_properties)
                   AS b (event_id, metric, quantity, occurred_at, properties)
        ON CONFLICT DO NOTHING;
    EXCEPTION WHEN check_violation THEN
        -- every field was checked above: what is left is a time no partition takes
        RAISE EXCEPTION 'no partition holds events of % yet', (SELECT min(t) FROM unnest(v_times) AS t) USING
            ERRCODE = 'TU005',
            HINT = 'Partition maintenance (ops.maintain_usage_partitions) is behind; nothing of this batch was stored.';
    END;

    INSERT INTO core.usage_pending (tenant_id, event_id, metric, quantity, occurred_at, unique_value)
    SELECT p_tenant_id, b.event_id, b.metric, b.quantity, b.occurred_at, b.unique_value
      FROM unnest(v_ids, v_metrics, v_quantities, v_times, v_unique)
               AS b (event_id, metric, quantity, occurred_at, unique_value)
    ON CONFLICT DO NOTHING;  -- as above: not COPY on Citus
    RETURN NEXT;
END
$$;

-- Ingest a batch of the tenant's usage events (1 to 1000; one event is a batch of one):
-- all or nothing, idempotent by event id. Scope usage:write; a suspended tenant cannot.
CREATE OR REPLACE FUNCTION api.ingest_usage(p_tenant_id uuid, p_events jsonb)
RETURNS TABLE (accepted integer, duplicates integer)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:write');
    -- once per batch, not a row trigger per event (core.guard_tenant_writes)
    PERFORM core.assert_tenant_allows(p_tenant_id, true);
    RETURN QUERY SELECT * FROM core.ingest_usage(p_tenant_id, p_events);
END
$$;

-- The API-call counters of one flush window (a job counts requests in Redis, so no
-- request writes to the database): p_counts is [{"tenant_id", "key": "key:<id>" or
-- "user:<id>", "calls"}]. Each count is an api_calls event with the id
-- api_calls:<key>:<epoch of p_window_start>, so a window flushed twice counts once.
-- Every tenant's status is ignored: a suspended tenant may still read, and its calls
-- are metered. Returns the totals over all tenants.
CREATE OR REPLACE FUNCTION ops.record_api_calls(p_window_start timestamptz, p_counts jsonb)
RETURNS TABLE (accepted integer, duplicates integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_batch record;
    v_result record;
BEGIN
    IF p_window_start IS NULL THEN
        RAISE EXCEPTION 'the window start is required' USING ERRCODE = '22023', COLUMN = 'window_start';
    END IF;
    IF p_counts IS NULL OR jsonb_typeof(p_counts) <> 'array' THEN
        RAISE EXCEPTION 'counts must be a JSON array' USING ERRCODE = '22023', COLUMN = 'counts';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_counts) AS c
                WHERE jsonb_typeof(c) IS DISTINCT FROM 'object'
                   OR c ->> 'tenant_id' !~ '^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$'
                   OR c ->> 'key' !~ '^(key|user):[0-9a-fA-F-]{36}$'
                   OR jsonb_typeof(c -> 'calls') IS DISTINCT FROM 'number') THEN
        RAISE EXCEPTION 'each count is {"tenant_id": uuid, "key": "key:<uuid>" or "user:<uuid>", "calls": number}'
            USING ERRCODE = '22023', COLUMN = 'counts';
    END IF;
    accepted := 0;
    duplicates := 0;
    FOR v_batch IN
        SELECT (c ->> 'tenant_id')::uuid AS tenant_id,
               jsonb_agg(jsonb_build_object(
                   'event_id', format('api_calls:%s:%s', c ->> 'key', extract(epoch FROM p_window_start)::bigint),
                   'metric', 'api_calls',
                   'quantity', c -> 'calls',
                   'occurred_at', to_char(p_window_start AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                   'properties', jsonb_build_object('key', c ->> 'key'))) AS events
          FROM jsonb_array_elements(p_counts) AS c
         GROUP BY 1
         ORDER BY 1
    LOOP
        IF core.tenant_status(v_batch.tenant_id) IS NULL THEN
            PERFORM core.raise_not_found('tenant', v_batch.tenant_id, 'tenant_id');
        END IF;
        -- a batch per tenant; a window has one count per key
        FOR v_result IN
            SELECT * FROM core.ingest_usage(v_batch.tenant_id, v_batch.events, false)
        LOOP
            accepted := accepted + v_result.accepted;
            duplicates := duplicates + v_result.duplicates;
        END LOOP;
    END LOOP;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- rollups
----------------------------------------------------------------------------------------

-- Roll up at most p_limit pending events of one tenant (each statement is a router
-- statement on the tenant's shard): take them out of core.usage_pending (rows another
-- run holds are skipped), add the distinct values of unique_count metrics, then add the
-- events to their hour, day and period rows. Statements run in one order and write rows
-- in key order, so concurrent runs wait on each other but cannot deadlock. Returns the
-- number of events rolled up. Runs inside ops.rollup_usage's transaction.
CREATE OR REPLACE FUNCTION core.rollup_usage_tenant(p_tenant_id uuid, p_limit integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_ids text[];
    v_metrics text[];
    v_quantities numeric[];
    v_times timestamptz[];
    v_unique text[];
    v_added_metric text[];
    v_added_granularity text[];
    v_added_bucket timestamptz[];
BEGIN
    -- Take the events in two statements: lock a batch (skipping rows another run holds),
    -- then delete exactly those by key. As one DELETE ... WHERE event_id IN (SELECT ...
    -- LIMIT ... FOR UPDATE SKIP LOCKED), the planner may, on statistics taken while the
    -- table was small, choose a nested loop that re-runs the locking subquery for every
    -- row: minutes for a backlog of 140k events (seen in bench/rollup). An array of keys
    -- is read with the primary key (or one hashed pass) whatever the statistics say.
    SELECT array_agg(q.event_id) INTO v_ids
      FROM (SELECT event_id FROM core.usage_pending
             WHERE tenant_id = p_tenant_id
             LIMIT p_limit
               FOR UPDATE SKIP LOCKED) AS q;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;
    WITH taken AS (
        DELETE FROM core.usage_pending AS p
         WHERE p.tenant_id = p_tenant_id AND p.event_id = ANY (v_ids)
        RETURNING p.event_id, p.metric, p.quantity, p.occurred_at, p.unique_value
    )
    SELECT array_agg(t.event_id), array_agg(t.metric), array_agg(t.quantity), array_agg(t.occurred_at),
           array_agg(t.unique_value)
      INTO v_ids, v_metrics, v_quantities, v_times, v_unique
      FROM taken AS t;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    -- unique_count: the values new to each bucket (exact: every distinct value is kept)
    WITH added AS (
        INSERT INTO core.usage_rollup_values (tenant_id, metric, granularity, bucket_start, value)
        SELECT DISTINCT p_tenant_id, e.metric, g.granularity, g.bucket_start, e.unique_value
          FROM unnest(v_metrics, v_times, v_unique) AS e (metric, occurred_at, unique_value)
          JOIN core.metrics AS m ON m.metric = e.metric AND m.aggregation = 'unique_count'
          CROSS JOIN LATERAL (VALUES
              ('hour', date_trunc('hour', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
              ('day', date_trunc('day', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
              ('period', date_trunc('month', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
          ) AS g (granularity, bucket_start)
         ORDER BY 2, 3, 4, 5
        ON CONFLICT DO NOTHING
        RETURNING metric, granularity, bucket_start
    )
    SELECT array_agg(a.metric), array_agg(a.granularity), array_agg(a.bucket_start)
      INTO v_added_metric, v_added_granularity, v_added_bucket
      FROM added AS a;

    -- sum, count and unique_count add up
    INSERT INTO core.usage_rollups AS r (tenant_id, metric, granularity, bucket_start, value, events, updated_at)
    SELECT p_tenant_id, b.metric, b.granularity, b.bucket_start,
           CASE b.aggregation WHEN 'sum' THEN b.total WHEN 'count' THEN b.events ELSE COALESCE(a.added, 0) END,
           b.events, v_now
      FROM (SELECT e.metric, m.aggregation, g.granularity, g.bucket_start,
                   sum(e.quantity) AS total, count(*) AS events
              FROM unnest(v_metrics, v_quantities, v_times) AS e (metric, quantity, occurred_at)
              JOIN core.metrics AS m ON m.metric = e.metric AND m.aggregation IN ('sum', 'count', 'unique_count')
              CROSS JOIN LATERAL (VALUES
                  ('hour', date_trunc('hour', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                  ('day', date_trunc('day', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                  ('period', date_trunc('month', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
              ) AS g (granularity, bucket_start)
             GROUP BY e.metric, m.aggregation, g.granularity, g.bucket_start) AS b
      LEFT JOIN (SELECT a.metric, a.granularity, a.bucket_start, count(*) AS added
                   FROM unnest(v_added_metric, v_added_granularity, v_added_bucket) AS a (metric, granularity, bucket_start)
                  GROUP BY 1, 2, 3) AS a
             ON a.metric = b.metric AND a.granularity = b.granularity AND a.bucket_start = b.bucket_start
     ORDER BY b.metric, b.granularity, b.bucket_start
    ON CONFLICT (tenant_id, metric, granularity, bucket_start) DO UPDATE SET
        value = r.value + EXCLUDED.value,
        events = r.events + EXCLUDED.events,
        updated_at = EXCLUDED.updated_at;

    -- max keeps the greatest quantity
    INSERT INTO core.usage_rollups AS r (tenant_id, metric, granularity, bucket_start, value, events, updated_at)
    SELECT p_tenant_id, e.metric, g.granularity, g.bucket_start, max(e.quantity), count(*), v_now
      FROM unnest(v_metrics, v_quantities, v_times) AS e (metric, quantity, occurred_at)
      JOIN core.metrics AS m ON m.metric = e.metric AND m.aggregation = 'max'
      CROSS JOIN LATERAL (VALUES
          ('hour', date_trunc('hour', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
          ('day', date_trunc('day', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
          ('period', date_trunc('month', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
      ) AS g (granularity, bucket_start)
     GROUP BY e.metric, g.granularity, g.bucket_start
     ORDER BY e.metric, g.granularity, g.bucket_start
    ON CONFLICT (tenant_id, metric, granularity, bucket_start) DO UPDATE SET
        value = GREATEST(r.value, EXCLUDED.value),
        events = r.events + EXCLUDED.events,
        updated_at = EXCLUDED.updated_at;

    -- latest keeps the quantity of the greatest (occurred_at, event_id), however late
    -- the events arrive
    INSERT INTO core.usage_rollups AS r
        (tenant_id, metric, granularity, bucket_start, value, events, latest_at, latest_event_id, updated_at)
    SELECT p_tenant_id, l.metric, l.granularity, l.bucket_start, l.quantity, l.events, l.latest_at, l.event_id, v_now
      FROM (SELECT e.metric, g.granularity, g.bucket_start, count(*) AS events, max(e.occurred_at) AS latest_at,
                   (array_agg(e.quantity ORDER BY e.occurred_at DESC, e.event_id DESC))[1] AS quantity,
                   (array_agg(e.event_id ORDER BY e.occurred_at DESC, e.event_id DESC))[1] AS event_id
              FROM unnest(v_ids, v_metrics, v_quantities, v_times) AS e (event_id, metric, quantity, occurred_at)
              JOIN core.metrics AS m ON m.metric = e.metric AND m.aggregation = 'latest'
              CROSS JOIN LATERAL (VALUES
                  ('hour', date_trunc('hour', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                  ('day', date_trunc('day', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'),
                  ('period', date_trunc('month', e.occurred_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
              ) AS g (granularity, bucket_start)
             GROUP BY e.metric, g.granularity, g.bucket_start) AS l
     ORDER BY l.metric, l.granularity, l.bucket_start
    ON CONFLICT (tenant_id, metric, granularity, bucket_start) DO UPDATE SET
        value = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) > (r.latest_at, r.latest_event_id)
                     THEN EXCLUDED.value ELSE r.value END,
        latest_event_id = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) > (r.latest_at, r.latest_event_id)
                               THEN EXCLUDED.latest_event_id ELSE r.latest_event_id END,
        latest_at = GREATEST(r.latest_at, EXCLUDED.latest_at),
        events = r.events + EXCLUDED.events,
        updated_at = EXCLUDED.updated_at;

    RETURN cardinality(v_ids);
END
$$;

-- One rollup run (the worker's job; call it again while it returns p_max_events): up
-- to p_max_events pending events, tenant by tenant in tenant order, in this one
-- transaction. Returns how many events and tenants it rolled up. Exactly once: what it
-- takes it deletes from core.usage_pending in the same transaction as it counts it, so
-- a run that fails or is killed counts nothing and leaves everything pending.
CREATE OR REPLACE FUNCTION ops.rollup_usage(p_max_events integer DEFAULT 10000)
RETURNS TABLE (events integer, tenants integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant uuid;
    v_done integer;
BEGIN
    IF p_max_events IS NULL OR p_max_events NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'a run takes 1 to 1000000 events, not %', p_max_events USING
            ERRCODE = '22023', COLUMN = 'max_events';
    END IF;
    events := 0;
    tenants := 0;
    FOR v_tenant IN SELECT DISTINCT p.tenant_id FROM core.usage_pending AS p ORDER BY 1 LOOP
        EXIT WHEN events >= p_max_events;
        v_done := core.rollup_usage_tenant(v_tenant, p_max_events - events);
        IF v_done > 0 THEN
            events := events + v_done;
            tenants := tenants + 1;
        END IF;
    END LOOP;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- partitions and retention
----------------------------------------------------------------------------------------

-- The partitions of core.usage_events with their ranges (from the catalog, on both
-- PostgreSQL and Citus).
CREATE OR REPLACE FUNCTION core.usage_partitions()
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$FROM \('([^']+)'\)$r$)::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$TO \('([^']+)'\)$r$)::timestamptz
      FROM pg_catalog.pg_inherits AS i
      JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'core.usage_events'::regclass
$$;

-- Partition maintenance: monthly partitions (UTC) from the month of the oldest event the
-- lateness window allows to p_ahead from now; partitions that end before now -
-- p_retention are dropped whole (NULL: none), with the event ids ingested before then.
-- On Citus its time-partition functions do it (create_time_partitions, and
-- drop_old_time_partitions, a procedure: docs/citus.md, fact 7); on PostgreSQL this
-- function does the same. Definer rights: only the owner may drop partitions (fact 13).
-- Returns what changed: created and dropped partitions, and the forgotten event ids.
CREATE OR REPLACE FUNCTION ops.maintain_usage_partitions(p_retention interval, p_ahead interval DEFAULT interval '2 months')
RETURNS TABLE (action text, object text, range_start timestamptz, range_end timestamptz, row_count bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_from timestamptz := date_trunc('month', (now() - core.usage_lateness_window()) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_to timestamptz := now() + p_ahead;
    v_cutoff timestamptz := now() - p_retention;
    v_before text[];
    v_month timestamptz;
    v_name text;
    v_forgotten bigint;
BEGIN
    IF p_ahead IS NULL OR p_ahead < interval '1 day' OR p_ahead > interval '10 years' THEN
        RAISE EXCEPTION 'partitions are made 1 day to 10 years ahead, not %', p_ahead USING
            ERRCODE = '22023', COLUMN = 'ahead';
    END IF;
    IF p_retention IS NOT NULL AND p_retention < core.usage_lateness_window() + interval '1 month' THEN
        RAISE EXCEPTION 'the retention must be at least the lateness window and a month (%), not %',
                        core.usage_lateness_window() + interval '1 month', p_retention USING
            ERRCODE = '22023', COLUMN = 'retention',
            HINT = 'A shorter retention would drop partitions that still take late events.';
    END IF;
    SELECT COALESCE(array_agg(p.partition_name), '{}') INTO v_before FROM core.usage_partitions() AS p;

    IF core.citus_enabled() THEN
        EXECUTE 'SELECT create_time_partitions($1, $2, $3, $4)'
            USING 'core.usage_events'::regclass, interval '1 month', v_to, v_from;
        IF p_retention IS NOT NULL THEN
            EXECUTE 'CALL drop_old_time_partitions($1, $2)' USING 'core.usage_events'::regclass, v_cutoff;
        END IF;
    ELSE
        -- named as Citus names monthly partitions: usage_events_p2025m01
        -- months counted in UTC (timestamps without time zone), whatever the session's TimeZone
        FOR v_month IN SELECT g AT TIME ZONE 'UTC'
                         FROM generate_series(v_from AT TIME ZONE 'UTC', v_to AT TIME ZONE 'UTC', interval '1 month') AS g
        LOOP
            CONTINUE WHEN EXISTS (SELECT 1 FROM core.usage_partitions() AS p
                                   WHERE p.range_start <= v_month AND p.range_end > v_month);
            v_name := 'usage_events_p' || to_char(v_month AT TIME ZONE 'UTC', 'YYYY"m"MM');
            EXECUTE format('CREATE TABLE core.%I PARTITION OF core.usage_events FOR VALUES FROM (%L) TO (%L)',
                           v_name, v_month,
                           ((v_month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
        END LOOP;
        IF p_retention IS NOT NULL THEN
            FOR v_name IN SELECT p.partition_name FROM core.usage_partitions() AS p WHERE p.range_end <= v_cutoff LOOP
                EXECUTE format('DROP TABLE %s', v_name);
            END LOOP;
        END IF;
    END IF;

    IF p_retention IS NOT NULL THEN
        DELETE FROM core.usage_event_ids AS i WHERE i.ingested_at < v_cutoff;
        GET DIAGNOSTICS v_forgotten = ROW_COUNT;
    END IF;

    RETURN QUERY
        SELECT 'created', p.partition_name, p.range_start, p.range_end, NULL::bigint
          FROM core.usage_partitions() AS p
         WHERE p.partition_name <> ALL (v_before)
        UNION ALL
        SELECT 'dropped', b.name, NULL, NULL, NULL
          FROM unnest(v_before) AS b (name)
         WHERE b.name NOT IN (SELECT p.partition_name FROM core.usage_partitions() AS p)
        UNION ALL
        SELECT 'forgot event ids', 'core.usage_event_ids', NULL, v_cutoff, v_forgotten
         WHERE v_forgotten > 0
        ORDER BY 1, 2;
END
$$;

----------------------------------------------------------------------------------------
-- reading
----------------------------------------------------------------------------------------

-- The metric catalog (any actor of the tenant).
CREATE OR REPLACE FUNCTION api.list_metrics(p_tenant_id uuid)
RETURNS SETOF core.metrics
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, NULL);
    RETURN QUERY SELECT * FROM core.metrics ORDER BY metric;
END
$$;

-- A page of rolled-up usage: one metric (or all, p_metric NULL) at one granularity
-- ('hour', 'day' or 'period': the calendar month, UTC), buckets starting in
-- [p_from, p_to), in (bucket_start, metric) order after the keyset cursor. Values lag
-- the events by one rollup run.
CREATE OR REPLACE FUNCTION api.get_usage(
    p_tenant_id uuid,
    p_metric text DEFAULT NULL,
    p_granularity text DEFAULT 'day',
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_limit integer DEFAULT 50,
    p_after_bucket timestamptz DEFAULT NULL,
    p_after_metric text DEFAULT NULL
)
RETURNS TABLE (metric text, granularity text, bucket_start timestamptz, value numeric, events bigint, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:read');
    PERFORM core.assert_page_size(p_limit);
    IF p_granularity IS NULL OR p_granularity NOT IN ('hour', 'day', 'period') THEN
        RAISE EXCEPTION 'granularity is hour, day or period, not %', p_granularity USING
            ERRCODE = '22023', COLUMN = 'granularity';
    END IF;
    IF p_metric IS NOT NULL AND NOT EXISTS (SELECT 1 FROM core.metrics AS m WHERE m.metric = p_metric) THEN
        PERFORM core.raise_not_found('metric', p_metric, 'metric');
    END IF;
    RETURN QUERY
        SELECT r.metric, r.granularity, r.bucket_start, r.value, r.events, r.updated_at
          FROM core.usage_rollups AS r
         WHERE r.tenant_id = p_tenant_id
           AND (p_metric IS NULL OR r.metric = p_metric)
           AND r.granularity = p_granularity
           AND (p_from IS NULL OR r.bucket_start >= p_from)
           AND (p_to IS NULL OR r.bucket_start < p_to)
           AND (p_after_bucket IS NULL
                OR (r.bucket_start, r.metric) > (p_after_bucket, COALESCE(p_after_metric, '')))
         ORDER BY r.bucket_start, r.metric
         LIMIT p_limit;
END
$$;

-- The current billing period (calendar month, UTC): every metric's rolled-up value
-- and, where the tenant's plan sets one for the metric, its limit.
CREATE OR REPLACE FUNCTION api.get_usage_summary(p_tenant_id uuid)
RETURNS TABLE (metric text, unit text, aggregation text, period_start timestamptz, value numeric, events bigint,
               usage_limit numeric, updated_at timestamptz)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_period timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_limits jsonb;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'usage:read');
    SELECT p.limits INTO v_limits
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    RETURN QUERY
        SELECT m.metric, m.unit, m.aggregation, v_period, COALESCE(r.value, 0), COALESCE(r.events, 0),
               CASE WHEN jsonb_typeof(v_limits -> m.metric) = 'number' THEN (v_limits ->> m.metric)::numeric END,
               r.updated_at
          FROM core.metrics AS m
          LEFT JOIN core.usage_rollups AS r
                 ON r.tenant_id = p_tenant_id AND r.metric = m.metric
                AND r.granularity = 'period' AND r.bucket_start = v_period
         ORDER BY m.metric;
END
$$;

----------------------------------------------------------------------------------------
-- partitions at migrate time
----------------------------------------------------------------------------------------

-- A fresh database takes events at once: partitions for the lateness window and the
-- next months (the maintenance job keeps them ahead and applies the retention).
SELECT count(*) FROM ops.maintain_usage_partitions(NULL, interval '2 months');

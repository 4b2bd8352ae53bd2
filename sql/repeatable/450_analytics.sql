-- Analytics: the job that keeps what analysts read up to date (the views themselves are
-- in analytics/*.sql, the rollup tables in sql/versions/0012_analytics.up.sql).
--
-- ops.refresh_analytics() does both kinds of precomputation, in one transaction:
--   - the per-tenant rollup tables (analytics.usage_daily, usage_monthly, activity_daily)
--     are filled over a time window by INSERT ... SELECT ... GROUP BY tenant_id, ...
--     ON CONFLICT DO UPDATE from colocated distributed tables: on Citus each statement
--     runs on the workers, shard by shard (docs/citus.md, fact 20);
--   - the small cross-tenant summaries (analytics.plan_mix, analytics.growth_monthly) are
--     materialized views, refreshed CONCURRENTLY so that analysts reading them never wait.
-- The same statements run on PostgreSQL and on Citus.

----------------------------------------------------------------------------------------
-- the window a refresh recomputes
----------------------------------------------------------------------------------------

-- How far back a refresh recomputes by default: usage events may arrive up to the
-- lateness window late (core.usage_lateness_window, 7 days) and change those days'
-- rollups, plus a day for the rollup job's own lag.
CREATE OR REPLACE FUNCTION core.analytics_refresh_window()
RETURNS interval
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT core.usage_lateness_window() + interval '1 day' $$;

----------------------------------------------------------------------------------------
-- the refresh (the worker's job, jobs/analytics.py)
----------------------------------------------------------------------------------------

-- Refresh the analytics rollups for the days from p_since (default: now minus
-- core.analytics_refresh_window(), at UTC midnight; pass an older time to backfill),
-- then the materialized views. Idempotent: the rollups are recomputed from their sources
-- for the window, so a second run changes nothing but refreshed_at. One refresh at a
-- time: a run that finds another one running (a transaction-level advisory lock) returns
-- at once with skipped = true, and the running one does the work. Returns what it wrote.
CREATE OR REPLACE FUNCTION ops.refresh_analytics(p_since timestamptz DEFAULT NULL)
RETURNS TABLE (
    skipped boolean, since date, usage_days bigint, usage_months bigint, activity_days bigint
)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_day date;      -- the first UTC day recomputed
    v_from timestamptz;  -- its start, as a timestamp (for the sources' indexes)
    v_month timestamptz; -- the start of its month (monthly rows are recomputed whole)
    v_rows bigint;
BEGIN
    IF NOT pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('tenantry.refresh_analytics', 0)) THEN
        skipped := true;
        RETURN NEXT;
        RETURN;
    END IF;
    skipped := false;
    v_day := (COALESCE(p_since, v_now - core.analytics_refresh_window()) AT TIME ZONE 'UTC')::date;
    v_from := v_day::timestamp AT TIME ZONE 'UTC';
    v_month := pg_catalog.date_trunc('month', v_day::timestamp) AT TIME ZONE 'UTC';
    since := v_day;

    -- usage per day and per month: a copy of the rollups' buckets in the window (the
    -- rollups are exact and only grow, so a bucket recomputed is the rollup's value)
    INSERT INTO analytics.usage_daily AS u (tenant_id, metric, day, value, events, refreshed_at)
    SELECT r.tenant_id, r.metric, (r.bucket_start AT TIME ZONE 'UTC')::date, r.value, r.events, v_now
      FROM core.usage_rollups AS r
     WHERE r.granularity = 'day' AND r.bucket_start >= v_from
    ON CONFLICT (tenant_id, metric, day) DO UPDATE
        SET value = EXCLUDED.value, events = EXCLUDED.events, refreshed_at = EXCLUDED.refreshed_at;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    usage_days := v_rows;

    INSERT INTO analytics.usage_monthly AS u (tenant_id, metric, month, value, events, refreshed_at)
    SELECT r.tenant_id, r.metric, (r.bucket_start AT TIME ZONE 'UTC')::date, r.value, r.events, v_now
      FROM core.usage_rollups AS r
     WHERE r.granularity = 'period' AND r.bucket_start >= v_month
    ON CONFLICT (tenant_id, metric, month) DO UPDATE
        SET value = EXCLUDED.value, events = EXCLUDED.events, refreshed_at = EXCLUDED.refreshed_at;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    usage_months := v_rows;

    -- activity: API calls per day (from the daily rollups of the api_calls metric) ...
    INSERT INTO analytics.activity_daily AS a (tenant_id, day, api_calls, refreshed_at)
    SELECT r.tenant_id, (r.bucket_start AT TIME ZONE 'UTC')::date, r.value, v_now
      FROM core.usage_rollups AS r
     WHERE r.granularity = 'day' AND r.metric = 'api_calls' AND r.bucket_start >= v_from
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET api_calls = EXCLUDED.api_calls, refreshed_at = EXCLUDED.refreshed_at;
    GET DIAGNOSTICS v_rows = ROW_COUNT;
    activity_days := v_rows;

    -- ... and writes: rows created per day (exact: created_at never changes), and rows
    -- whose last change falls on the day (updated_at moves on with every change, so a
    -- row changed again later leaves the earlier day: keep the highest count seen)
    INSERT INTO analytics.activity_daily AS a (tenant_id, day, projects_created, refreshed_at)
    SELECT p.tenant_id, (p.created_at AT TIME ZONE 'UTC')::date, count(*), v_now
      FROM core.projects AS p
     WHERE p.created_at >= v_from
     GROUP BY p.tenant_id, (p.created_at AT TIME ZONE 'UTC')::date
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET projects_created = EXCLUDED.projects_created, refreshed_at = EXCLUDED.refreshed_at;

    INSERT INTO analytics.activity_daily AS a (tenant_id, day, projects_updated, refreshed_at)
    SELECT p.tenant_id, (p.updated_at AT TIME ZONE 'UTC')::date, count(*), v_now
      FROM core.projects AS p
     WHERE p.updated_at >= v_from AND p.updated_at > p.created_at
     GROUP BY p.tenant_id, (p.updated_at AT TIME ZONE 'UTC')::date
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET projects_updated = GREATEST(a.projects_updated, EXCLUDED.projects_updated),
            refreshed_at = EXCLUDED.refreshed_at;

    INSERT INTO analytics.activity_daily AS a (tenant_id, day, tasks_created, refreshed_at)
    SELECT t.tenant_id, (t.created_at AT TIME ZONE 'UTC')::date, count(*), v_now
      FROM core.tasks AS t
     WHERE t.created_at >= v_from
     GROUP BY t.tenant_id, (t.created_at AT TIME ZONE 'UTC')::date
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET tasks_created = EXCLUDED.tasks_created, refreshed_at = EXCLUDED.refreshed_at;

    INSERT INTO analytics.activity_daily AS a (tenant_id, day, tasks_updated, refreshed_at)
    SELECT t.tenant_id, (t.updated_at AT TIME ZONE 'UTC')::date, count(*), v_now
      FROM core.tasks AS t
     WHERE t.updated_at >= v_from AND t.updated_at > t.created_at
     GROUP BY t.tenant_id, (t.updated_at AT TIME ZONE 'UTC')::date
    ON CONFLICT (tenant_id, day) DO UPDATE
        SET tasks_updated = GREATEST(a.tasks_updated, EXCLUDED.tasks_updated),
            refreshed_at = EXCLUDED.refreshed_at;

    -- the small cross-tenant summaries: materialized views on the coordinator (one row
    -- per plan, one per month). CONCURRENTLY, their readers never wait; it builds the
    -- diff in temporary tables as the views' owner (TEMPORARY granted to tenantry_owner
    -- in policies/02_database.sql for this).
    REFRESH MATERIALIZED VIEW CONCURRENTLY analytics.plan_mix;
    REFRESH MATERIALIZED VIEW CONCURRENTLY analytics.growth_monthly;
    RETURN NEXT;
END
$$;

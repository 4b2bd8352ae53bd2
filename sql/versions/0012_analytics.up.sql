-- 0012 analytics: the per-tenant rollup tables that analysts read (schema analytics).
--
-- Versioned: applied once by migrations/versions/0012_analytics.py, because these tables
-- hold data that must survive every migrate. The views over them and the small
-- cross-tenant materialized views (plan mix, growth) are in analytics/*.sql, re-created on
-- every migrate (they are cheap to rebuild: one pass over core.tenants); the fill is
-- ops.refresh_analytics in sql/repeatable/450_analytics.sql; the policies are in
-- policies/analytics_*.sql.
--
-- Each table is distributed on tenant_id and colocated with core.tenants, like the
-- tables it is filled from (core.usage_rollups, core.projects, core.tasks), so the fill,
-- INSERT ... SELECT ... GROUP BY tenant_id, ... ON CONFLICT DO UPDATE over a time window,
-- runs on each worker for its own shards (docs/citus.md, fact 20): nothing is pulled to
-- the coordinator. They are not materialized views for that reason: a materialized view
-- over distributed tables lives on the coordinator and pulls every row there to refresh.
-- Analysts read them straight (SELECT only, RLS lets tenantry_analyst see every tenant),
-- so their filters on tenant_id and day reach the shards.

----------------------------------------------------------------------------------------
-- usage per tenant, metric and day / calendar month (copied from core.usage_rollups)
----------------------------------------------------------------------------------------
CREATE TABLE analytics.usage_daily (
    tenant_id     uuid NOT NULL,
    metric        text NOT NULL,
    day           date NOT NULL,
    value         numeric NOT NULL,
    events        bigint NOT NULL,
    refreshed_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, metric, day)
);
COMMENT ON TABLE analytics.usage_daily IS
    'Usage per tenant, metric and UTC day, from the usage rollups (core.usage_rollups, granularity day); refreshed by ops.refresh_analytics.';
COMMENT ON COLUMN analytics.usage_daily.tenant_id IS 'The tenant (analytics.tenant_overview has its slug, name and plan).';
COMMENT ON COLUMN analytics.usage_daily.metric IS 'The metric (analytics.metrics: its unit and aggregation).';
COMMENT ON COLUMN analytics.usage_daily.day IS 'The UTC day.';
COMMENT ON COLUMN analytics.usage_daily.value IS 'The day''s value, aggregated as the metric says (sum, count, max, unique_count, latest).';
COMMENT ON COLUMN analytics.usage_daily.events IS 'How many usage events made the value.';
COMMENT ON COLUMN analytics.usage_daily.refreshed_at IS 'When ops.refresh_analytics last wrote the row.';
SELECT core.distribute_table('analytics.usage_daily', 'core.tenants');

CREATE TABLE analytics.usage_monthly (
    tenant_id     uuid NOT NULL,
    metric        text NOT NULL,
    month         date NOT NULL,
    value         numeric NOT NULL,
    events        bigint NOT NULL,
    refreshed_at  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, metric, month)
);
COMMENT ON TABLE analytics.usage_monthly IS
    'Usage per tenant, metric and calendar month (UTC; the billing period), from the usage rollups (granularity period); refreshed by ops.refresh_analytics.';
COMMENT ON COLUMN analytics.usage_monthly.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.usage_monthly.metric IS 'The metric (analytics.metrics).';
COMMENT ON COLUMN analytics.usage_monthly.month IS 'The first day of the month (UTC).';
COMMENT ON COLUMN analytics.usage_monthly.value IS 'The month''s value, aggregated as the metric says (not the sum of the days for max, unique_count and latest metrics).';
COMMENT ON COLUMN analytics.usage_monthly.events IS 'How many usage events made the value.';
COMMENT ON COLUMN analytics.usage_monthly.refreshed_at IS 'When ops.refresh_analytics last wrote the row.';
SELECT core.distribute_table('analytics.usage_monthly', 'core.tenants');

----------------------------------------------------------------------------------------
-- activity per tenant and day: API calls and writes
----------------------------------------------------------------------------------------
CREATE TABLE analytics.activity_daily (
    tenant_id         uuid NOT NULL,
    day               date NOT NULL,
    api_calls         numeric NOT NULL DEFAULT 0,
    projects_created  bigint NOT NULL DEFAULT 0,
    projects_updated  bigint NOT NULL DEFAULT 0,
    tasks_created     bigint NOT NULL DEFAULT 0,
    tasks_updated     bigint NOT NULL DEFAULT 0,
    refreshed_at      timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
COMMENT ON TABLE analytics.activity_daily IS
    'Activity per tenant and UTC day: API calls (the api_calls metric) and writes (projects and tasks created or changed); refreshed by ops.refresh_analytics.';
COMMENT ON COLUMN analytics.activity_daily.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.activity_daily.day IS 'The UTC day.';
COMMENT ON COLUMN analytics.activity_daily.api_calls IS 'API calls that day (the api_calls metric).';
COMMENT ON COLUMN analytics.activity_daily.projects_created IS 'Projects created that day (exact).';
COMMENT ON COLUMN analytics.activity_daily.projects_updated IS 'Projects whose last change seen by a refresh was that day (a lower bound: a row keeps only its latest change time; the highest count seen is kept).';
COMMENT ON COLUMN analytics.activity_daily.tasks_created IS 'Tasks created that day (exact).';
COMMENT ON COLUMN analytics.activity_daily.tasks_updated IS 'Tasks whose last change seen by a refresh was that day (a lower bound, as projects_updated).';
COMMENT ON COLUMN analytics.activity_daily.refreshed_at IS 'When ops.refresh_analytics last wrote the row.';
SELECT core.distribute_table('analytics.activity_daily', 'core.tenants');

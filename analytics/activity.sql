-- Active tenants: by API calls (the api_calls metric) and by writes (projects and tasks
-- created or changed), per tenant and month and in total per month and day. Plain views
-- over the rollup table analytics.activity_daily (0012_analytics.up.sql), which
-- ops.refresh_analytics fills; on Citus they run on the workers' shards (grouped by
-- tenant first), as the analyst, whom the table's policy lets read every tenant.

CREATE OR REPLACE VIEW analytics.tenant_activity_monthly AS
SELECT a.tenant_id,
       (date_trunc('month', a.day))::date AS month,
       sum(a.api_calls) AS api_calls,
       sum(a.projects_created + a.projects_updated + a.tasks_created + a.tasks_updated)::bigint AS writes,
       count(*) FILTER (WHERE a.api_calls > 0
                           OR a.projects_created + a.projects_updated + a.tasks_created + a.tasks_updated > 0)
           AS active_days,
       sum(a.api_calls) > 0 AS active_by_api_calls,
       sum(a.projects_created + a.projects_updated + a.tasks_created + a.tasks_updated) > 0 AS active_by_writes
  FROM analytics.activity_daily AS a
 GROUP BY a.tenant_id, (date_trunc('month', a.day))::date;

COMMENT ON VIEW analytics.tenant_activity_monthly IS
    'Per tenant and calendar month (UTC): API calls, writes, active days, and whether it was active by each measure.';
COMMENT ON COLUMN analytics.tenant_activity_monthly.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.tenant_activity_monthly.month IS 'The first day of the month (UTC).';
COMMENT ON COLUMN analytics.tenant_activity_monthly.api_calls IS 'API calls in the month.';
COMMENT ON COLUMN analytics.tenant_activity_monthly.writes IS 'Projects and tasks created or changed in the month (changes: a lower bound, see analytics.activity_daily).';
COMMENT ON COLUMN analytics.tenant_activity_monthly.active_days IS 'Days of the month with an API call or a write.';
COMMENT ON COLUMN analytics.tenant_activity_monthly.active_by_api_calls IS 'The tenant made at least one API call in the month.';
COMMENT ON COLUMN analytics.tenant_activity_monthly.active_by_writes IS 'The tenant created or changed at least one project or task in the month.';

CREATE OR REPLACE VIEW analytics.active_tenants_monthly AS
SELECT m.month,
       count(*) FILTER (WHERE m.active_by_api_calls) AS by_api_calls,
       count(*) FILTER (WHERE m.active_by_writes) AS by_writes,
       count(*) FILTER (WHERE m.active_by_api_calls OR m.active_by_writes) AS by_either
  FROM analytics.tenant_activity_monthly AS m
 GROUP BY m.month;

COMMENT ON VIEW analytics.active_tenants_monthly IS 'Per calendar month (UTC): how many tenants were active by API calls, by writes, by either.';
COMMENT ON COLUMN analytics.active_tenants_monthly.month IS 'The first day of the month (UTC).';
COMMENT ON COLUMN analytics.active_tenants_monthly.by_api_calls IS 'Tenants with at least one API call in the month.';
COMMENT ON COLUMN analytics.active_tenants_monthly.by_writes IS 'Tenants with at least one write (project or task created or changed) in the month.';
COMMENT ON COLUMN analytics.active_tenants_monthly.by_either IS 'Tenants active by either measure.';

CREATE OR REPLACE VIEW analytics.active_tenants_daily AS
SELECT a.day,
       count(*) FILTER (WHERE a.api_calls > 0) AS by_api_calls,
       count(*) FILTER (WHERE a.projects_created + a.projects_updated + a.tasks_created + a.tasks_updated > 0)
           AS by_writes,
       count(*) FILTER (WHERE a.api_calls > 0
                           OR a.projects_created + a.projects_updated + a.tasks_created + a.tasks_updated > 0)
           AS by_either
  FROM analytics.activity_daily AS a
 GROUP BY a.day;

COMMENT ON VIEW analytics.active_tenants_daily IS 'Per UTC day: how many tenants were active by API calls, by writes, by either.';
COMMENT ON COLUMN analytics.active_tenants_daily.day IS 'The UTC day.';
COMMENT ON COLUMN analytics.active_tenants_daily.by_api_calls IS 'Tenants with at least one API call that day.';
COMMENT ON COLUMN analytics.active_tenants_daily.by_writes IS 'Tenants with at least one write that day.';
COMMENT ON COLUMN analytics.active_tenants_daily.by_either IS 'Tenants active by either measure.';

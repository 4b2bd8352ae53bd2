-- Growth: tenants' lifecycle events (created, suspended, reactivated, deleted) and, per
-- month, new, churned and reactivated tenants.
--
-- THE ONE PLACE that says when a tenant's status changed is
-- analytics.tenant_lifecycle_rows(): today core.tenants (created_at; the current
-- suspended_at / deleted_at) and the platform administrators' record of status changes
-- (core.platform_admin_actions), which keeps the history a tenant row forgets on
-- reactivation. A status change no administrator made (a billing job's suspension)
-- shows through the tenant's timestamp while it lasts. When the audit log records every
-- status change, read it here instead.
--
-- analytics.growth_monthly is a materialized view (one row per month), rebuilt on every
-- migrate (one pass over the tenants and their admin actions: cheap) and refreshed
-- CONCURRENTLY by ops.refresh_analytics.

-- Every lifecycle event of every tenant, oldest first per tenant.
CREATE OR REPLACE FUNCTION analytics.tenant_lifecycle_rows()
RETURNS TABLE (tenant_id uuid, event text, at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT t.tenant_id, 'created', t.created_at FROM core.tenants AS t
UNION ALL
SELECT a.tenant_id,
       CASE a.action WHEN 'suspend' THEN 'suspended' WHEN 'reactivate' THEN 'reactivated' ELSE 'deleted' END,
       a.at
  FROM core.platform_admin_actions AS a
 WHERE a.action IN ('suspend', 'reactivate', 'delete')
UNION ALL
-- the current suspension or deletion when no administrator's action recorded it (the
-- admin's action and the status timestamp are written in one transaction: equal times)
SELECT t.tenant_id, t.status, COALESCE(t.deleted_at, t.suspended_at)
  FROM core.tenants AS t
 WHERE t.status IN ('suspended', 'deleted')
   AND NOT EXISTS (SELECT 1 FROM core.platform_admin_actions AS a
                    WHERE a.tenant_id = t.tenant_id
                      AND a.action = CASE t.status WHEN 'suspended' THEN 'suspend' ELSE 'delete' END
                      AND a.at = COALESCE(t.deleted_at, t.suspended_at))
$$;

CREATE OR REPLACE VIEW analytics.tenant_lifecycle_events AS
SELECT * FROM analytics.tenant_lifecycle_rows();

COMMENT ON VIEW analytics.tenant_lifecycle_events IS
    'Live: every tenant''s lifecycle events (created, suspended, reactivated, deleted) with their time.';
COMMENT ON COLUMN analytics.tenant_lifecycle_events.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.tenant_lifecycle_events.event IS 'created, suspended, reactivated or deleted.';
COMMENT ON COLUMN analytics.tenant_lifecycle_events.at IS 'When it happened.';

DROP MATERIALIZED VIEW IF EXISTS analytics.growth_monthly;
CREATE MATERIALIZED VIEW analytics.growth_monthly AS
WITH events AS (
    -- each event with the one before it: a churn is a move out of the active state (a
    -- deletion after a suspension is not a second churn), a reactivation one back into it
    SELECT e.tenant_id, e.event,
           (date_trunc('month', e.at AT TIME ZONE 'UTC'))::date AS month,
           lag(e.event) OVER (PARTITION BY e.tenant_id ORDER BY e.at,
                              array_position(ARRAY['created', 'suspended', 'reactivated', 'deleted'], e.event))
               AS previous
      FROM analytics.tenant_lifecycle_rows() AS e
),
moves AS (
    SELECT x.month,
           count(*) FILTER (WHERE x.event = 'created') AS new_tenants,
           count(*) FILTER (WHERE x.event IN ('suspended', 'deleted')
                              AND x.previous IN ('created', 'reactivated')) AS churned_tenants,
           count(*) FILTER (WHERE x.event = 'reactivated' AND x.previous = 'suspended') AS reactivated_tenants
      FROM events AS x
     GROUP BY x.month
),
months AS (
    SELECT (generate_series(min(m.month), (date_trunc('month', now() AT TIME ZONE 'UTC'))::date,
                            interval '1 month'))::date AS month
      FROM moves AS m
)
SELECT s.month,
       COALESCE(m.new_tenants, 0) AS new_tenants,
       COALESCE(m.churned_tenants, 0) AS churned_tenants,
       COALESCE(m.reactivated_tenants, 0) AS reactivated_tenants,
       COALESCE(m.new_tenants, 0) - COALESCE(m.churned_tenants, 0) + COALESCE(m.reactivated_tenants, 0)
           AS net_change,
       sum(COALESCE(m.new_tenants, 0) - COALESCE(m.churned_tenants, 0) + COALESCE(m.reactivated_tenants, 0))
           OVER (ORDER BY s.month)::bigint AS active_at_month_end,
       now() AS refreshed_at
  FROM months AS s
  LEFT JOIN moves AS m ON m.month = s.month;
-- REFRESH ... CONCURRENTLY needs a unique index on the materialized view
CREATE UNIQUE INDEX growth_monthly_month_idx ON analytics.growth_monthly (month);

COMMENT ON MATERIALIZED VIEW analytics.growth_monthly IS
    'Refreshed by ops.refresh_analytics (every 15 min): per calendar month (UTC), new, churned and reactivated tenants.';
COMMENT ON COLUMN analytics.growth_monthly.month IS 'The first day of the month (UTC).';
COMMENT ON COLUMN analytics.growth_monthly.new_tenants IS 'Tenants created in the month.';
COMMENT ON COLUMN analytics.growth_monthly.churned_tenants IS 'Moves from active to suspended or deleted in the month (a deletion after a suspension counts once, at the suspension).';
COMMENT ON COLUMN analytics.growth_monthly.reactivated_tenants IS 'Moves from suspended back to active in the month.';
COMMENT ON COLUMN analytics.growth_monthly.net_change IS 'new - churned + reactivated: the change in active tenants over the month.';
COMMENT ON COLUMN analytics.growth_monthly.active_at_month_end IS 'Active tenants at the end of the month (the running sum of net_change).';
COMMENT ON COLUMN analytics.growth_monthly.refreshed_at IS 'When the materialized view was last refreshed.';

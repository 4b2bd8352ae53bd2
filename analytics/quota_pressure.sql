-- analytics.quota_pressure: every tenant's limited resources with how close each is to
-- its limit, now (live: a row per tenant and resource, read from the quota counters).
-- "Near" is the same test as GET /v1/quotas's `warning` (core.quota_report): used plus
-- held units at or above the resource's warn_at_percent (80 % by default) of the limit.
-- A metered resource counts this billing period's units only, as core.quota_report does.
-- Rows come from a SECURITY DEFINER function (see analytics/metrics.sql for why).

-- Each tenant's resources that have a limit, with usage, share and flags.
CREATE OR REPLACE FUNCTION analytics.quota_pressure_rows()
RETURNS TABLE (
    tenant_id uuid,
    slug text,
    plan_id text,
    status text,
    resource text,
    kind text,
    unit text,
    used numeric,
    reserved numeric,
    quota_limit numeric,
    percent_used numeric,
    warn_at_percent smallint,
    near_limit boolean,
    over_limit boolean
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT q.tenant_id, q.slug, q.plan_id, q.status, q.resource, q.kind, q.unit, q.used, q.reserved, q.max_value,
       CASE WHEN q.max_value > 0 THEN round(100 * (q.used + q.reserved) / q.max_value, 1) END,
       q.warn_at_percent,
       q.used + q.reserved >= q.max_value * q.warn_at_percent / 100.0,
       q.used > q.max_value
  FROM (SELECT c.tenant_id, t.slug, t.plan_id, t.status, c.resource, r.kind, r.unit, c.reserved, c.max_value,
               r.warn_at_percent,
               -- a metered counter not yet rolled into this period holds last period's units
               CASE WHEN r.kind = 'metered'
                         AND c.period_start IS DISTINCT FROM core.billing_period_start(c.tenant_id, now())
                    THEN 0 ELSE c.used END AS used
          FROM core.quota_counters AS c
          JOIN core.quota_resources AS r ON r.resource = c.resource
          JOIN core.tenants AS t ON t.tenant_id = c.tenant_id
         WHERE c.max_value IS NOT NULL) AS q
$$;

CREATE OR REPLACE VIEW analytics.quota_pressure AS
SELECT * FROM analytics.quota_pressure_rows();

COMMENT ON VIEW analytics.quota_pressure IS
    'Live: per tenant and limited resource, usage against the limit in force; near_limit from warn_at_percent (80 % by default), over_limit above it.';
COMMENT ON COLUMN analytics.quota_pressure.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.quota_pressure.slug IS 'The tenant''s slug.';
COMMENT ON COLUMN analytics.quota_pressure.plan_id IS 'The tenant''s plan.';
COMMENT ON COLUMN analytics.quota_pressure.status IS 'The tenant''s status: active, suspended or deleted.';
COMMENT ON COLUMN analytics.quota_pressure.resource IS 'The limited resource (projects, tasks, members, api_keys, storage_bytes, or a metered one).';
COMMENT ON COLUMN analytics.quota_pressure.kind IS 'counted (live rows now) or metered (units this billing period).';
COMMENT ON COLUMN analytics.quota_pressure.unit IS 'The resource''s unit.';
COMMENT ON COLUMN analytics.quota_pressure.used IS 'Units used (metered: in the current billing period).';
COMMENT ON COLUMN analytics.quota_pressure.reserved IS 'Metered units held by open reservations (0 for counted resources).';
COMMENT ON COLUMN analytics.quota_pressure.quota_limit IS 'The limit in force: the tenant''s override, else its plan''s.';
COMMENT ON COLUMN analytics.quota_pressure.percent_used IS '(used + reserved) as a percentage of the limit (null for a limit of 0).';
COMMENT ON COLUMN analytics.quota_pressure.warn_at_percent IS 'The share of the limit from which the resource counts as near its limit (80 by default).';
COMMENT ON COLUMN analytics.quota_pressure.near_limit IS 'used + reserved is at or above warn_at_percent of the limit (as GET /v1/quotas''s warning).';
COMMENT ON COLUMN analytics.quota_pressure.over_limit IS 'used is above the limit (after a downgrade, an override, or billed overage).';

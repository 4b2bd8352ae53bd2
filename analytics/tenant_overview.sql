-- analytics.tenant_overview: one row per tenant with its plan and workload size, for
-- analysts (cross-tenant by design). No secrets and no free text from tenants' data.
--
-- The rows come from a SECURITY DEFINER function rather than straight from the view:
-- on Citus the shard queries of a view run on the workers as the *querying* role, which
-- (being an analyst) has no rights on core; inside a definer function they run as the
-- owner. On single-node PostgreSQL both forms behave the same.

-- Every tenant with its plan and counts of live projects and open/done tasks.
CREATE OR REPLACE FUNCTION analytics.tenant_overview_rows()
RETURNS TABLE (
    tenant_id uuid,
    slug text,
    name text,
    plan_id text,
    plan_price_cents integer,
    status text,
    created_at timestamptz,
    suspended_at timestamptz,
    deleted_at timestamptz,
    live_projects bigint,
    open_tasks bigint,
    done_tasks bigint
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT t.tenant_id, t.slug, t.name, t.plan_id, p.price_cents, t.status,
       t.created_at, t.suspended_at, t.deleted_at,
       COALESCE(pr.live_projects, 0), COALESCE(tk.open_tasks, 0), COALESCE(tk.done_tasks, 0)
  FROM core.tenants AS t
  JOIN core.plans AS p ON p.plan_id = t.plan_id
  LEFT JOIN (SELECT x.tenant_id, count(*) AS live_projects
               FROM core.projects AS x WHERE x.deleted_at IS NULL
              GROUP BY x.tenant_id) AS pr ON pr.tenant_id = t.tenant_id
  LEFT JOIN (SELECT y.tenant_id,
                    count(*) FILTER (WHERE y.status IN ('todo', 'in_progress')) AS open_tasks,
                    count(*) FILTER (WHERE y.status = 'done') AS done_tasks
               FROM core.tasks AS y WHERE y.deleted_at IS NULL
              GROUP BY y.tenant_id) AS tk ON tk.tenant_id = t.tenant_id
$$;

CREATE OR REPLACE VIEW analytics.tenant_overview AS
SELECT * FROM analytics.tenant_overview_rows();

COMMENT ON VIEW analytics.tenant_overview IS
    'One row per tenant: plan, status with its timestamps, live projects, open and done tasks.';
COMMENT ON COLUMN analytics.tenant_overview.tenant_id IS 'The tenant.';
COMMENT ON COLUMN analytics.tenant_overview.slug IS 'Its slug (unique across tenants).';
COMMENT ON COLUMN analytics.tenant_overview.name IS 'Its display name.';
COMMENT ON COLUMN analytics.tenant_overview.plan_id IS 'Its plan.';
COMMENT ON COLUMN analytics.tenant_overview.plan_price_cents IS 'The plan''s list price per month, in cents.';
COMMENT ON COLUMN analytics.tenant_overview.status IS 'active, suspended (reads only) or deleted.';
COMMENT ON COLUMN analytics.tenant_overview.created_at IS 'When the tenant was created.';
COMMENT ON COLUMN analytics.tenant_overview.suspended_at IS 'When it was suspended, while it is.';
COMMENT ON COLUMN analytics.tenant_overview.deleted_at IS 'When it was deleted, if it was.';
COMMENT ON COLUMN analytics.tenant_overview.live_projects IS 'Projects not deleted.';
COMMENT ON COLUMN analytics.tenant_overview.open_tasks IS 'Live tasks to do or in progress.';
COMMENT ON COLUMN analytics.tenant_overview.done_tasks IS 'Live tasks done.';

-- analytics.tenant_overview: one row per tenant with its plan and workload size, for
-- analysts (cross-tenant by design: the view runs with its owner's rights). No secrets
-- and no free text from tenants' data.
CREATE OR REPLACE VIEW analytics.tenant_overview AS
SELECT t.tenant_id,
       t.slug,
       t.name,
       t.plan_id,
       p.price_cents AS plan_price_cents,
       t.status,
       t.created_at,
       t.suspended_at,
       t.deleted_at,
       COALESCE(pr.live_projects, 0) AS live_projects,
       COALESCE(tk.open_tasks, 0)    AS open_tasks,
       COALESCE(tk.done_tasks, 0)    AS done_tasks
  FROM core.tenants AS t
  JOIN core.plans AS p USING (plan_id)
  LEFT JOIN (SELECT tenant_id, count(*) AS live_projects
               FROM core.projects WHERE deleted_at IS NULL
              GROUP BY tenant_id) AS pr USING (tenant_id)
  LEFT JOIN (SELECT tenant_id,
                    count(*) FILTER (WHERE status IN ('todo', 'in_progress')) AS open_tasks,
                    count(*) FILTER (WHERE status = 'done') AS done_tasks
               FROM core.tasks WHERE deleted_at IS NULL
              GROUP BY tenant_id) AS tk USING (tenant_id);

COMMENT ON VIEW analytics.tenant_overview IS
    'One row per tenant: plan, status with its timestamps, live projects, open and done tasks.';

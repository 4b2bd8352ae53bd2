-- analytics.usage_monthly: a per-tenant rollup that analysts read across tenants by design (it
-- holds counts, no secrets and no tenants' text); nobody writes it but ops.refresh_analytics
-- (SECURITY DEFINER, as the owner). RLS is on and forced, like every table with a
-- tenant_id, with one policy: the analyst role reads every row. No other role has a grant.
ALTER TABLE analytics.usage_monthly ENABLE ROW LEVEL SECURITY;
ALTER TABLE analytics.usage_monthly FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('analytics.usage_monthly');

CREATE POLICY "analysts read every tenant's rows" ON analytics.usage_monthly
    FOR SELECT TO tenantry_analyst
    USING (true);

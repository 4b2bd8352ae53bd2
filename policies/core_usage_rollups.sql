-- core.usage_rollups: a tenant reads only its own rollups; only the rollup (the worker,
-- through the definer function ops.rollup_usage) writes them.
ALTER TABLE core.usage_rollups ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.usage_rollups FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.usage_rollups');

CREATE POLICY "tenants read their own usage rollups" ON core.usage_rollups
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

-- core.usage_rollup_values: a tenant reads only its own distinct values; only the
-- rollup (the worker, through ops.rollup_usage) writes them.
ALTER TABLE core.usage_rollup_values ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.usage_rollup_values FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.usage_rollup_values');

CREATE POLICY "tenants read their own usage rollup values" ON core.usage_rollup_values
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

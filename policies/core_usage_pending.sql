-- core.usage_pending: the API queues only its own tenant's events; the rollup (the
-- worker, through the definer function ops.rollup_usage) takes them.
ALTER TABLE core.usage_pending ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.usage_pending FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.usage_pending');

CREATE POLICY "tenants queue usage events only for themselves" ON core.usage_pending
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

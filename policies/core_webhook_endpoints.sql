-- core.webhook_endpoints: a tenant registers, reads, changes and deletes only its own
-- endpoints (api.*_webhook, 520_webhooks.sql, with the caller's rights).
ALTER TABLE core.webhook_endpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.webhook_endpoints FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.webhook_endpoints');

CREATE POLICY "tenants read their own webhook endpoints" ON core.webhook_endpoints
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants add webhook endpoints only to themselves" ON core.webhook_endpoints
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own webhook endpoints" ON core.webhook_endpoints
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants delete only their own webhook endpoints" ON core.webhook_endpoints
    FOR DELETE TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

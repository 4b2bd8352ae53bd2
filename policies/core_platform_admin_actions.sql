-- core.platform_admin_actions: written by admin.* only; a tenant may read what platform
-- administrators did to it.
ALTER TABLE core.platform_admin_actions ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.platform_admin_actions FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.platform_admin_actions');

CREATE POLICY "tenants read the platform actions taken on them" ON core.platform_admin_actions
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

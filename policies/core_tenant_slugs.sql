-- core.tenant_slugs: a global lookup, written only by admin.create_tenant(); a tenant
-- may see its own slug.
ALTER TABLE core.tenant_slugs ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.tenant_slugs FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.tenant_slugs');

CREATE POLICY "tenants read their own slug" ON core.tenant_slugs
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

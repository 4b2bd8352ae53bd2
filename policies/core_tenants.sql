-- core.tenants: a tenant sees its own row; only admin.* (definer rights) writes.
ALTER TABLE core.tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.tenants FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.tenants');

CREATE POLICY "tenants read their own tenant row" ON core.tenants
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

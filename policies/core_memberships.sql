-- core.memberships: a tenant's members read, change and remove memberships of their own
-- tenant (the api.* functions add the scope and owner rules); new members arrive only
-- through auth.sign_up, auth.accept_invitation and admin.create_tenant (definer rights).
ALTER TABLE core.memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.memberships FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.memberships');

CREATE POLICY "tenants read their own memberships" ON core.memberships
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own memberships" ON core.memberships
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants remove only their own members" ON core.memberships
    FOR DELETE TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

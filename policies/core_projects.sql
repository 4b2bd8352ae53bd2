-- core.projects: a tenant reads, adds and changes only its own projects; nobody deletes
-- rows through the API (soft delete is an UPDATE).
ALTER TABLE core.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.projects FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.projects');

CREATE POLICY "tenants read their own projects" ON core.projects
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants add projects only to themselves" ON core.projects
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own projects" ON core.projects
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

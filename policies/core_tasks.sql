-- core.tasks: a tenant reads, adds and changes only its own tasks; nobody deletes
-- rows through the API (soft delete is an UPDATE).
ALTER TABLE core.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.tasks FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.tasks');

CREATE POLICY "tenants read their own tasks" ON core.tasks
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants add tasks only to themselves" ON core.tasks
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own tasks" ON core.tasks
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

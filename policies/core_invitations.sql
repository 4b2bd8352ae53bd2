-- core.invitations: a tenant reads and changes only its own invitations (creation and
-- acceptance go through definer-rights functions).
ALTER TABLE core.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.invitations FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.invitations');

CREATE POLICY "tenants read their own invitations" ON core.invitations
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own invitations" ON core.invitations
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

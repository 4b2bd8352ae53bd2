-- core.quota_overrides: written by admin.* only; a tenant may read its own overrides.
ALTER TABLE core.quota_overrides ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.quota_overrides FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.quota_overrides');

CREATE POLICY "tenants read their own quota overrides" ON core.quota_overrides
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

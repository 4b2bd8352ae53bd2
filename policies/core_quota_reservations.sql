-- core.quota_reservations: a tenant reserves, confirms and releases only its own
-- reservations (api.reserve_quota and friends, with the caller's rights); nobody deletes
-- them through the API.
ALTER TABLE core.quota_reservations ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.quota_reservations FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.quota_reservations');

CREATE POLICY "tenants read their own quota reservations" ON core.quota_reservations
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants reserve only for themselves" ON core.quota_reservations
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants settle only their own quota reservations" ON core.quota_reservations
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

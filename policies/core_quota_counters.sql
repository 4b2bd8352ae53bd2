-- core.quota_counters: a tenant reads its own counters, and its writes move them (the
-- counting triggers and the reservation functions of 070_quotas.sql run with the
-- caller's rights); the api role may change the usage columns only, never the limit.
ALTER TABLE core.quota_counters ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.quota_counters FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.quota_counters');

CREATE POLICY "tenants read their own quota counters" ON core.quota_counters
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants move only their own quota counters" ON core.quota_counters
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

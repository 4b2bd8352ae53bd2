-- core.api_keys and core.api_key_prefixes: a tenant reads and revokes only its own keys;
-- keys are created and rotated by definer-rights functions that also write the global
-- prefix lookup.
ALTER TABLE core.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.api_keys FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.api_keys');

CREATE POLICY "tenants read their own api keys" ON core.api_keys
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants change only their own api keys" ON core.api_keys
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

ALTER TABLE core.api_key_prefixes ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.api_key_prefixes FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.api_key_prefixes');

CREATE POLICY "tenants read their own key prefixes" ON core.api_key_prefixes
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

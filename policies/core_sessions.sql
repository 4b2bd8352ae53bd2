-- core.sessions and core.refresh_tokens: written only by auth.* (definer rights); the api
-- role has no privileges on them. The policies keep them closed should that change.
ALTER TABLE core.sessions ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.sessions FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.sessions');

CREATE POLICY "tenants read their own sessions" ON core.sessions
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

ALTER TABLE core.refresh_tokens ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.refresh_tokens FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.refresh_tokens');

CREATE POLICY "tenants read their own refresh tokens" ON core.refresh_tokens
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

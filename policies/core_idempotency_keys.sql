-- core.idempotency_keys: a tenant claims, reads, completes and expires only its own keys.
ALTER TABLE core.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.idempotency_keys FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.idempotency_keys');

CREATE POLICY "tenants read their own idempotency keys" ON core.idempotency_keys
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants claim idempotency keys only for themselves" ON core.idempotency_keys
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants complete only their own idempotency keys" ON core.idempotency_keys
    FOR UPDATE TO tenantry_api
    USING (tenant_id = core.current_tenant_id())
    WITH CHECK (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants expire only their own idempotency keys" ON core.idempotency_keys
    FOR DELETE TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

-- core.usage_event_ids: a tenant claims and sees only its own event ids (the ingest's
-- INSERT ... ON CONFLICT DO NOTHING RETURNING needs both).
ALTER TABLE core.usage_event_ids ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.usage_event_ids FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.usage_event_ids');

CREATE POLICY "tenants see their own usage event ids" ON core.usage_event_ids
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants claim usage event ids only for themselves" ON core.usage_event_ids
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

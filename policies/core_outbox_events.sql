-- core.outbox_events: a tenant's writes emit its own events (the triggers of
-- 510_outbox.sql run with the writer's rights) and its webhook calls read them (the
-- event type and payload of a delivery); nothing changes or deletes them through the
-- API: the worker's definer functions mark them dispatched.
ALTER TABLE core.outbox_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.outbox_events FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.outbox_events');

CREATE POLICY "tenants read their own events" ON core.outbox_events
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants emit events only for themselves" ON core.outbox_events
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

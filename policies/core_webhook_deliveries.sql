-- core.webhook_deliveries: a tenant reads its own deliveries and asks for a redelivery
-- (a new row: api.redeliver_webhook); the worker's definer functions make, lease and
-- settle them. Deleting an endpoint deletes its deliveries (the foreign key's cascade
-- runs as the table's owner).
ALTER TABLE core.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.webhook_deliveries FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.webhook_deliveries');

CREATE POLICY "tenants read their own webhook deliveries" ON core.webhook_deliveries
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants redeliver only their own webhook events" ON core.webhook_deliveries
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

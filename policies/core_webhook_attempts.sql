-- core.webhook_attempts: a tenant reads the attempts of its own deliveries; only the
-- worker's definer function (ops.record_webhook_attempt) writes them.
ALTER TABLE core.webhook_attempts ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.webhook_attempts FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.webhook_attempts');

CREATE POLICY "tenants read their own webhook attempts" ON core.webhook_attempts
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

-- core.subscriptions: a tenant reads its own subscription; changes go through the definer
-- functions of 610_subscriptions.sql (api.* with billing:manage, admin.*, the provider's events).
ALTER TABLE core.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.subscriptions FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.subscriptions');

CREATE POLICY "tenants read their own subscriptions" ON core.subscriptions
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

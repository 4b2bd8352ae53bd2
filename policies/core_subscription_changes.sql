-- core.subscription_changes: a tenant reads its own subscription history; only the definer
-- functions of 610_subscriptions.sql write it.
ALTER TABLE core.subscription_changes ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.subscription_changes FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.subscription_changes');

CREATE POLICY "tenants read their own subscription changes" ON core.subscription_changes
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

-- core.usage_events: a tenant stores and reads only its own usage events; nobody
-- changes or deletes them through the API (retention drops whole partitions, as the
-- owner: ops.maintain_usage_partitions). On the partitioned table, so every partition
-- read through it is covered.
ALTER TABLE core.usage_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.usage_events FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.usage_events');

CREATE POLICY "tenants read their own usage events" ON core.usage_events
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

CREATE POLICY "tenants record usage events only for themselves" ON core.usage_events
    FOR INSERT TO tenantry_api
    WITH CHECK (tenant_id = core.current_tenant_id());

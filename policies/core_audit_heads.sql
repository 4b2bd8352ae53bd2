-- core.audit_heads: the seal chain's head per tenant, made by a tenant's first audit row
-- and moved by the sealer (both definer code, 500_audit.sql); a tenant may read its own.
ALTER TABLE core.audit_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.audit_heads FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.audit_heads');

CREATE POLICY "tenants read their own audit head" ON core.audit_heads
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

-- core.audit_seals: written by the sealer (ops.seal_audit, definer) only; a tenant may
-- read its own seals. Insert-only like the log (500_audit.sql; privileges in
-- core_audit_log.sql).
ALTER TABLE core.audit_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE core.audit_seals FORCE ROW LEVEL SECURITY;
SELECT core.drop_policies('core.audit_seals');

CREATE POLICY "tenants read their own audit seals" ON core.audit_seals
    FOR SELECT TO tenantry_api
    USING (tenant_id = core.current_tenant_id());

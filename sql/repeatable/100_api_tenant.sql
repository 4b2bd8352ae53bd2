-- api: the tenant's own record. Every api.* function takes the tenant as its first
-- argument p_tenant_id (Citus routes the call by it) and checks it against the
-- transaction's context first. They run as the caller, so RLS applies to them too.

-- The calling tenant, as its members may see it.
CREATE OR REPLACE FUNCTION api.get_tenant(p_tenant_id uuid)
RETURNS core.tenants
LANGUAGE plpgsql STABLE
SET search_path = ''
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'tenant:read');
    SELECT * INTO v_tenant FROM core.tenants WHERE tenant_id = p_tenant_id;
    RETURN v_tenant;
END
$$;

-- admin: platform administration across tenants, for the platform-admin role only.
-- SECURITY DEFINER with an empty search_path: they run as the owner, beyond RLS, and
-- are the only way to create tenants or change their status.

-- Create a tenant with a globally unique slug (23505 on tenant_slugs_pkey if taken).
CREATE OR REPLACE FUNCTION admin.create_tenant(
    p_slug text,
    p_name text,
    p_plan_id text DEFAULT 'free',
    p_settings jsonb DEFAULT '{}'
)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    INSERT INTO core.tenants (slug, name, plan_id, settings)
    VALUES (p_slug, p_name, p_plan_id, COALESCE(p_settings, '{}'))
    RETURNING * INTO v_tenant;
    INSERT INTO core.tenant_slugs (slug, tenant_id) VALUES (v_tenant.slug, v_tenant.tenant_id);
    RETURN v_tenant;
EXCEPTION WHEN unique_violation THEN
    -- re-raised with a stable constraint name: on Citus the error names a shard
    RAISE EXCEPTION 'the slug "%" is taken', p_slug USING
        ERRCODE = '23505', CONSTRAINT = 'tenant_slugs_pkey', COLUMN = 'slug';
END
$$;

-- Set a tenant's status: 'active', 'suspended' or 'deleted' (final; TN003 after it).
CREATE OR REPLACE FUNCTION admin.set_tenant_status(p_tenant_id uuid, p_status text)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    UPDATE core.tenants SET status = p_status WHERE tenant_id = p_tenant_id
    RETURNING * INTO v_tenant;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'tenant % not found', p_tenant_id USING ERRCODE = 'P0002';
    END IF;
    RETURN v_tenant;
END
$$;

-- Tenants in slug order, after p_after_slug, optionally of one status.
CREATE OR REPLACE FUNCTION admin.list_tenants(
    p_status text DEFAULT NULL,
    p_limit integer DEFAULT 50,
    p_after_slug text DEFAULT NULL
)
RETURNS SETOF core.tenants
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    PERFORM core.assert_page_size(p_limit);
    RETURN QUERY
        SELECT t.* FROM core.tenant_slugs AS s
          JOIN core.tenants AS t USING (tenant_id)
         WHERE (p_status IS NULL OR t.status = p_status)
           AND (p_after_slug IS NULL OR s.slug > p_after_slug)
         ORDER BY s.slug
         LIMIT p_limit;
END
$$;

-- Admin: platform administration across tenants, for the platform-admin role, and only
-- with a platform administrator as the context's actor (TA060). SECURITY DEFINER with
-- search_path `pg_catalog, pg_temp` (temp last): they run as the owner, beyond RLS. Every change is recorded in
-- core.platform_admin_actions with the administrator and request id.

----------------------------------------------------------------------------------------
-- who may, and the record of what they did
----------------------------------------------------------------------------------------

-- Raise TA060 unless the context's actor is a platform administrator.
CREATE OR REPLACE FUNCTION core.assert_platform_admin()
RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF core.current_actor_type() IS DISTINCT FROM 'platform_admin' OR NOT EXISTS (
        SELECT 1 FROM core.users
         WHERE user_id = core.current_actor_id() AND is_platform_admin AND status = 'active'
    ) THEN
        RAISE EXCEPTION 'only a platform administrator may do this' USING ERRCODE = 'TA060';
    END IF;
END
$$;

-- Record an action by the context's administrator.
CREATE OR REPLACE FUNCTION core.record_admin_action(p_tenant_id uuid, p_action text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO core.platform_admin_actions (tenant_id, admin_user_id, action, request_id)
    VALUES (p_tenant_id, core.current_actor_id(), p_action, core.current_request_id())
$$;

----------------------------------------------------------------------------------------
-- tenants
----------------------------------------------------------------------------------------

-- Create a tenant with an existing user as its owner.
CREATE OR REPLACE FUNCTION admin.create_tenant(
    p_slug text, p_name text, p_plan_id text, p_owner_user_id uuid
)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    PERFORM core.assert_platform_admin();
    IF NOT EXISTS (SELECT 1 FROM core.users WHERE user_id = p_owner_user_id) THEN
        PERFORM core.raise_not_found('user', p_owner_user_id, 'owner_user_id');
    END IF;
    v_tenant := core.create_tenant(p_slug, p_name, p_plan_id);
    INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (v_tenant.tenant_id, p_owner_user_id, 'owner');
    PERFORM core.record_admin_action(v_tenant.tenant_id, 'create');
    RETURN v_tenant;
END
$$;

-- Set a tenant's status: 'active', 'suspended' or 'deleted' (final; TN003 after it).
CREATE OR REPLACE FUNCTION admin.set_tenant_status(p_tenant_id uuid, p_status text)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    PERFORM core.assert_platform_admin();
    UPDATE core.tenants SET status = p_status WHERE tenant_id = p_tenant_id
    RETURNING * INTO v_tenant;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('tenant', p_tenant_id);
    END IF;
    PERFORM core.record_admin_action(p_tenant_id, CASE p_status WHEN 'active' THEN 'reactivate'
                                                                WHEN 'suspended' THEN 'suspend'
                                                                ELSE 'delete' END);
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
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_platform_admin();
    PERFORM core.assert_page_size(p_limit);
    PERFORM core.assert_column_allows('core.tenants', 'status', p_status);  -- TP001: a status no tenant has
    RETURN QUERY
        SELECT t.* FROM core.tenant_slugs AS s
          JOIN core.tenants AS t USING (tenant_id)
         WHERE (p_status IS NULL OR t.status = p_status)
           AND (p_after_slug IS NULL OR s.slug > p_after_slug)
         ORDER BY s.slug
         LIMIT p_limit;
END
$$;

-- The actions taken on a tenant, newest first.
CREATE OR REPLACE FUNCTION admin.list_tenant_actions(p_tenant_id uuid)
RETURNS SETOF core.platform_admin_actions
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_platform_admin();
    RETURN QUERY SELECT * FROM core.platform_admin_actions WHERE tenant_id = p_tenant_id ORDER BY at DESC;
END
$$;

-- api: the caller, and the members of the calling tenant. Only owners manage owners
-- (TA041); the last owner cannot be removed or demoted (TA040, by trigger).

-- Who is calling: the actor, its role (users) and its scopes in this tenant.
CREATE OR REPLACE FUNCTION api.me(p_tenant_id uuid)
RETURNS TABLE (actor_type text, actor_id uuid, email text, name text, role text, scopes text[],
               is_platform_admin boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, NULL);
    actor_type := core.current_actor_type();
    actor_id := core.current_actor_id();
    role := core.current_member_role();
    scopes := core.current_scopes();
    SELECT u.email, u.name, u.is_platform_admin INTO email, name, is_platform_admin
      FROM core.users AS u WHERE actor_type = 'user' AND u.user_id = actor_id;
    RETURN NEXT;
END
$$;

-- A page of members in (created_at, user_id) order. Definer rights: users are global
-- rows the api role cannot read; the tenant filter is explicit.
CREATE OR REPLACE FUNCTION api.list_members(
    p_tenant_id uuid, p_limit integer DEFAULT 50, p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL
)
RETURNS TABLE (user_id uuid, email text, name text, role text, created_at timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:read');
    PERFORM core.assert_page_size(p_limit);
    RETURN QUERY
        SELECT m.user_id, u.email, u.name, m.role, m.created_at
          FROM core.memberships AS m JOIN core.users AS u ON u.user_id = m.user_id
         WHERE m.tenant_id = p_tenant_id
           AND (p_after_created_at IS NULL
                OR (m.created_at, m.user_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY m.created_at, m.user_id
         LIMIT p_limit;
END
$$;

-- Change a member's role (P0002 if not a member; 23503 for an unknown role).
CREATE OR REPLACE FUNCTION api.set_member_role(p_tenant_id uuid, p_user_id uuid, p_role text)
RETURNS core.memberships
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_membership core.memberships;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    SELECT * INTO v_membership FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member % not found', p_user_id USING ERRCODE = 'P0002';
    END IF;
    PERFORM core.assert_may_manage_role(v_membership.role);
    PERFORM core.assert_may_manage_role(p_role);
    UPDATE core.memberships SET role = p_role
     WHERE tenant_id = p_tenant_id AND user_id = p_user_id
    RETURNING * INTO v_membership;
    RETURN v_membership;
END
$$;

-- Remove a member (or leave, for oneself); their sessions in the tenant end with it.
CREATE OR REPLACE FUNCTION api.remove_member(p_tenant_id uuid, p_user_id uuid)
RETURNS core.memberships
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_membership core.memberships;
BEGIN
    IF p_user_id IS DISTINCT FROM core.current_actor_id() THEN
        PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    ELSE
        PERFORM core.assert_tenant_context(p_tenant_id, NULL);  -- anyone may leave
    END IF;
    SELECT * INTO v_membership FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'member % not found', p_user_id USING ERRCODE = 'P0002';
    END IF;
    IF p_user_id IS DISTINCT FROM core.current_actor_id() THEN
        PERFORM core.assert_may_manage_role(v_membership.role);
    END IF;
    DELETE FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    RETURN v_membership;
END
$$;

-- Access: which scopes the current actor holds in the current tenant, read from data
-- (a user's membership role -> core.role_scopes; an API key's own scopes, within its
-- member's current role), and the assertions every tenant-scoped api.* function starts
-- with. Missing scope: TA010.
-- Feature-specific rules live with their feature: only owners manage owners in
-- 110_members.sql, platform administrators in 300_admin.sql.

----------------------------------------------------------------------------------------
-- who is acting
----------------------------------------------------------------------------------------

-- The scopes of the context's actor in the context's tenant ('{}' when there is none).
-- Invoker rights, like core.tenant_status(): the api role reads its tenant's memberships
-- and keys through RLS, and on Citus a definer read after the caller's own writes in
-- the same transaction fails (docs/citus.md, fact 16).
CREATE OR REPLACE FUNCTION core.current_scopes()
RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant_id uuid := core.current_tenant_id();
    v_actor_id uuid := core.current_actor_id();
    v_scopes text[];
BEGIN
    IF core.current_actor_type() = 'user' THEN
        SELECT array_agg(rs.scope ORDER BY rs.scope) INTO v_scopes
          FROM core.memberships AS m
          JOIN core.role_scopes AS rs ON rs.role = m.role
         WHERE m.tenant_id = v_tenant_id AND m.user_id = v_actor_id;
    ELSIF core.current_actor_type() = 'api_key' THEN
        -- the key's scopes within its member's current role (130_api_keys.sql)
        v_scopes := core.api_key_scopes(v_tenant_id, v_actor_id);
    END IF;
    RETURN COALESCE(v_scopes, '{}');
END
$$;

-- The membership role of the context's user (NULL for API keys and non-members).
CREATE OR REPLACE FUNCTION core.current_member_role()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT m.role FROM core.memberships AS m
     WHERE core.current_actor_type() = 'user'
       AND m.tenant_id = core.current_tenant_id() AND m.user_id = core.current_actor_id()
$$;

----------------------------------------------------------------------------------------
-- assertions
----------------------------------------------------------------------------------------

-- Raise TA010 unless the context's actor holds p_scope.
CREATE OR REPLACE FUNCTION core.assert_scope(p_scope text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT p_scope = ANY (core.current_scopes()) THEN
        RAISE EXCEPTION 'this call needs the scope %', p_scope USING
            ERRCODE = 'TA010',
            HINT = 'Ask an owner or admin for a role (or an API key) that grants it.';
    END IF;
END
$$;

-- The first line of every tenant-scoped api.* function: the tenant argument (which
-- lets Citus route the call) must be the transaction's tenant, the tenant must be
-- readable, and the actor must hold p_scope (NULL: any actor of the tenant).
CREATE OR REPLACE FUNCTION core.assert_tenant_context(p_tenant_id uuid, p_scope text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_tenant_id IS NULL OR p_tenant_id IS DISTINCT FROM core.current_tenant_id() THEN
        RAISE EXCEPTION 'the tenant argument is not the tenant of this transaction' USING
            ERRCODE = '42501',
            HINT = 'Open the transaction with SET LOCAL app.tenant_id to the same tenant.';
    END IF;
    PERFORM core.assert_tenant_allows(p_tenant_id, false);
    IF p_scope IS NOT NULL THEN
        PERFORM core.assert_scope(p_scope);
    END IF;
END
$$;

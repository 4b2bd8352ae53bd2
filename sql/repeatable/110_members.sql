-- Members: who belongs to a tenant, with which role. The caller's own view (api.me), the
-- member list, role changes and removal, and the rules kept whatever the path of the
-- change: only owners grant or take away the owner role (TA041), and a tenant always
-- keeps at least one owner (TA040, by trigger). Members join through sign-up
-- (140_sessions.sql), an accepted invitation (120_invitations.sql) or
-- admin.create_tenant (300_admin.sql).

----------------------------------------------------------------------------------------
-- owner rules
----------------------------------------------------------------------------------------

-- Raise TA041 unless the actor may give or take away p_role: only owners manage owners.
CREATE OR REPLACE FUNCTION core.assert_may_manage_role(p_role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF p_role = 'owner' AND core.current_member_role() IS DISTINCT FROM 'owner' THEN
        RAISE EXCEPTION 'only an owner can grant or take away the owner role' USING ERRCODE = 'TA041';
    END IF;
END
$$;

-- Row trigger on core.memberships, before an owner is demoted or removed: wait for any
-- other transaction changing this tenant's owners to end. Two owners demoting or removing
-- each other at once would otherwise both pass core.keep_an_owner (below): under READ
-- COMMITTED each still sees the other's row as an owner, and the tenant ends with none.
-- With this lock (held to the end of the transaction) the second one's check runs after
-- the first commits, on a fresh snapshot, and sees its change. An advisory lock, not row
-- locks: locking every owner row from here deadlocks (this row is already locked by the
-- UPDATE or DELETE), and the api role may not lock the tenant's row (no UPDATE on
-- core.tenants). On Citus the trigger runs on the worker holding the tenant's shard,
-- where every change of the tenant's memberships runs, so the lock is taken on that
-- node (docs/citus.md, fact 24).
CREATE OR REPLACE FUNCTION core.serialize_owner_changes()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(
        pg_catalog.hashtextextended('tenantry.owners:' || OLD.tenant_id::text, 0));
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER serialize_owner_changes
    BEFORE UPDATE OF role OR DELETE ON core.memberships
    FOR EACH ROW WHEN (OLD.role = 'owner')
    EXECUTE FUNCTION core.serialize_owner_changes();

-- Row trigger on core.memberships: refuse to remove or demote the last owner. It runs
-- after core.serialize_owner_changes took the tenant's owner lock, so it sees every
-- other owner change that committed first.
CREATE OR REPLACE FUNCTION core.keep_an_owner()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM core.memberships WHERE tenant_id = OLD.tenant_id AND role = 'owner') THEN
        RAISE EXCEPTION 'a tenant must keep at least one owner' USING
            ERRCODE = 'TA040',
            HINT = 'Make another member an owner first.';
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER keep_an_owner
    AFTER UPDATE OF role OR DELETE ON core.memberships
    FOR EACH ROW WHEN (OLD.role = 'owner')
    EXECUTE FUNCTION core.keep_an_owner();

----------------------------------------------------------------------------------------
-- members
----------------------------------------------------------------------------------------

-- Who is calling: the actor, its role (users) and its scopes in this tenant.
CREATE OR REPLACE FUNCTION api.me(p_tenant_id uuid)
RETURNS TABLE (actor_type text, actor_id uuid, email text, name text, role text, scopes text[],
               is_platform_admin boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
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
SET search_path = pg_catalog, pg_temp
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
-- p_if_match (row versions) and p_if_unmodified_since make the change conditional
-- (040_timestamps.sql): a membership that changed since is TN020.
CREATE OR REPLACE FUNCTION api.set_member_role(
    p_tenant_id uuid,
    p_user_id uuid,
    p_role text,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.memberships
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_membership core.memberships;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    SELECT * INTO v_membership FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('member', p_user_id);
    END IF;
    PERFORM core.assert_may_manage_role(v_membership.role);
    PERFORM core.assert_may_manage_role(p_role);
    UPDATE core.memberships SET role = p_role
     WHERE tenant_id = p_tenant_id AND user_id = p_user_id
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_membership;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id
        ) THEN
            PERFORM core.raise_changed('member', p_user_id);
        END IF;
        PERFORM core.raise_not_found('member', p_user_id);
    END IF;
    RETURN v_membership;
END
$$;

-- Remove a member (or leave, for oneself); their sessions in the tenant end with it
-- (foreign key cascade), their API keys are revoked (core.revoke_member_api_keys,
-- 130_api_keys.sql) and their tasks unassigned (core.unassign_member_tasks, 210_tasks.sql).
-- Conditional like api.set_member_role.
CREATE OR REPLACE FUNCTION api.remove_member(
    p_tenant_id uuid,
    p_user_id uuid,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.memberships
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_membership core.memberships;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    IF p_user_id IS DISTINCT FROM core.current_actor_id() THEN
        PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    ELSE
        PERFORM core.assert_tenant_context(p_tenant_id, NULL);  -- anyone may leave
    END IF;
    SELECT * INTO v_membership FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('member', p_user_id);
    END IF;
    IF p_user_id IS DISTINCT FROM core.current_actor_id() THEN
        PERFORM core.assert_may_manage_role(v_membership.role);
    END IF;
    DELETE FROM core.memberships
     WHERE tenant_id = p_tenant_id AND user_id = p_user_id
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_membership;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.memberships WHERE tenant_id = p_tenant_id AND user_id = p_user_id
        ) THEN
            PERFORM core.raise_changed('member', p_user_id);
        END IF;
        PERFORM core.raise_not_found('member', p_user_id);
    END IF;
    RETURN v_membership;
END
$$;

----------------------------------------------------------------------------------------
-- tenant status and timestamps
----------------------------------------------------------------------------------------

-- no writes by a suspended or deleted tenant (core.guard_tenant_writes, 100_tenants.sql)
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- stamp updated_at (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

-- Invitations: a member with members:manage invites an email with a role; the API makes
-- the token and passes its SHA-256. An open invitation can be resent (a new token and
-- expiry) or revoked, and is accepted once, through auth.accept_invitation(). One open
-- invitation per email (23505 on invitations_open_email_key); an existing member cannot
-- be invited (TA020).

----------------------------------------------------------------------------------------
-- inviting
----------------------------------------------------------------------------------------

-- Invite an email with a role, valid for p_valid_for.
CREATE OR REPLACE FUNCTION api.create_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_email text, p_role text, p_token_hash bytea,
    p_valid_for interval DEFAULT '7 days'
)
RETURNS core.invitations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    PERFORM core.assert_may_manage_role(p_role);
    IF EXISTS (SELECT 1 FROM core.memberships AS m JOIN core.users AS u ON u.user_id = m.user_id
                WHERE m.tenant_id = p_tenant_id AND lower(u.email) = lower(p_email)) THEN
        RAISE EXCEPTION '% is already a member', p_email USING ERRCODE = 'TA020', COLUMN = 'email';
    END IF;
    INSERT INTO core.invitations (tenant_id, invitation_id, email, role, token_hash, invited_by, expires_at)
    VALUES (p_tenant_id, p_invitation_id, p_email, p_role, p_token_hash, core.current_actor_id(), now() + p_valid_for)
    RETURNING * INTO v_invitation;
    RETURN v_invitation;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION '% already has an open invitation', p_email USING
        ERRCODE = '23505', CONSTRAINT = 'invitations_open_email_key', COLUMN = 'email',
        HINT = 'Resend or revoke the open invitation.';
END
$$;

-- A page of invitations, newest last, in (created_at, invitation_id) order.
CREATE OR REPLACE FUNCTION api.list_invitations(
    p_tenant_id uuid, p_limit integer DEFAULT 50, p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL
)
RETURNS SETOF core.invitations
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:read');
    PERFORM core.assert_page_size(p_limit);
    RETURN QUERY
        SELECT * FROM core.invitations
         WHERE tenant_id = p_tenant_id
           AND (p_after_created_at IS NULL
                OR (created_at, invitation_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY created_at, invitation_id
         LIMIT p_limit;
END
$$;

----------------------------------------------------------------------------------------
-- resending and revoking
----------------------------------------------------------------------------------------

-- The open invitation p_invitation_id, locked; P0002, TA032 (used) or TA033 (revoked).
CREATE OR REPLACE FUNCTION core.open_invitation_for_update(p_tenant_id uuid, p_invitation_id uuid)
RETURNS core.invitations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    SELECT * INTO v_invitation FROM core.invitations
     WHERE tenant_id = p_tenant_id AND invitation_id = p_invitation_id
       FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('invitation', p_invitation_id);
    ELSIF v_invitation.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was already used' USING ERRCODE = 'TA032';
    ELSIF v_invitation.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was revoked' USING ERRCODE = 'TA033';
    END IF;
    RETURN v_invitation;
END
$$;

-- Send an open invitation again: a new token (the old one stops working), a new expiry.
CREATE OR REPLACE FUNCTION api.resend_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_token_hash bytea, p_valid_for interval DEFAULT '7 days'
)
RETURNS core.invitations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    PERFORM core.open_invitation_for_update(p_tenant_id, p_invitation_id);
    UPDATE core.invitations SET token_hash = p_token_hash, sent_at = now(), expires_at = now() + p_valid_for
     WHERE tenant_id = p_tenant_id AND invitation_id = p_invitation_id
    RETURNING * INTO v_invitation;
    RETURN v_invitation;
END
$$;

-- Revoke an open invitation: its token stops working.
CREATE OR REPLACE FUNCTION api.revoke_invitation(p_tenant_id uuid, p_invitation_id uuid)
RETURNS core.invitations
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    PERFORM core.open_invitation_for_update(p_tenant_id, p_invitation_id);
    UPDATE core.invitations SET revoked_at = now()
     WHERE tenant_id = p_tenant_id AND invitation_id = p_invitation_id
    RETURNING * INTO v_invitation;
    RETURN v_invitation;
END
$$;

----------------------------------------------------------------------------------------
-- accepting
----------------------------------------------------------------------------------------

-- The invitee has no tenant context yet: SECURITY DEFINER with search_path `pg_catalog, pg_temp` (temp last),
-- filtering by tenant explicitly (as the sign-up and login functions, 140_sessions.sql).

-- Accept an invitation: creates the user if the email is new (name and password hash
-- needed then), or links the existing one; makes the membership. Errors: TA030 unknown
-- token, TA031 expired, TA032 already used, TA033 revoked, TA020 already a member.
CREATE OR REPLACE FUNCTION auth.accept_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_token_hash bytea,
    p_name text DEFAULT NULL, p_password_hash text DEFAULT NULL
)
RETURNS TABLE (user_id uuid, tenant_id uuid, role text, created_user boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    SELECT * INTO v_invitation FROM core.invitations AS i
     WHERE i.tenant_id = p_tenant_id AND i.invitation_id = p_invitation_id
       FOR UPDATE;
    IF NOT FOUND OR v_invitation.token_hash <> p_token_hash THEN
        RAISE EXCEPTION 'no such invitation' USING ERRCODE = 'TA030';
    ELSIF v_invitation.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was revoked' USING ERRCODE = 'TA033';
    ELSIF v_invitation.accepted_at IS NOT NULL THEN
        RAISE EXCEPTION 'the invitation was already used' USING ERRCODE = 'TA032';
    ELSIF v_invitation.expires_at <= now() THEN
        RAISE EXCEPTION 'the invitation expired at %', v_invitation.expires_at USING
            ERRCODE = 'TA031', HINT = 'Ask for the invitation to be sent again.';
    END IF;
    SELECT u.user_id INTO user_id FROM core.users AS u WHERE lower(u.email) = lower(v_invitation.email);
    created_user := user_id IS NULL;
    IF created_user THEN
        IF p_name IS NULL OR p_password_hash IS NULL THEN
            RAISE EXCEPTION 'a new account needs a name and a password' USING
                ERRCODE = '22023', COLUMN = CASE WHEN p_name IS NULL THEN 'name' ELSE 'password' END;
        END IF;
        user_id := core.create_user(v_invitation.email, p_name, p_password_hash);
    ELSIF EXISTS (SELECT 1 FROM core.memberships AS m WHERE m.tenant_id = p_tenant_id AND m.user_id = accept_invitation.user_id) THEN
        RAISE EXCEPTION 'already a member of this tenant' USING ERRCODE = 'TA020';
    END IF;
    INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (p_tenant_id, user_id, v_invitation.role);
    UPDATE core.invitations AS i SET accepted_at = now(), accepted_by = accept_invitation.user_id
     WHERE i.tenant_id = p_tenant_id AND i.invitation_id = p_invitation_id;
    tenant_id := p_tenant_id;
    role := v_invitation.role;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- tenant status
----------------------------------------------------------------------------------------

-- no writes by a suspended or deleted tenant (core.guard_tenant_writes, 100_tenants.sql)
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.invitations
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

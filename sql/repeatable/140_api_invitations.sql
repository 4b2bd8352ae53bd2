-- api: invitations of the calling tenant. The API makes the token and passes its
-- SHA-256; acceptance is auth.accept_invitation(). One open invitation per email
-- (23505 on invitations_open_email_key); an existing member cannot be invited (TA020).

-- Invite an email with a role, valid for p_valid_for.
CREATE OR REPLACE FUNCTION api.create_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_email text, p_role text, p_token_hash bytea,
    p_valid_for interval DEFAULT '7 days'
)
RETURNS core.invitations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = ''
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
SET search_path = ''
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

-- The open invitation p_invitation_id, locked; P0002, TA032 (used) or TA033 (revoked).
CREATE OR REPLACE FUNCTION core.open_invitation_for_update(p_tenant_id uuid, p_invitation_id uuid)
RETURNS core.invitations
LANGUAGE plpgsql
SET search_path = ''
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    SELECT * INTO v_invitation FROM core.invitations
     WHERE tenant_id = p_tenant_id AND invitation_id = p_invitation_id
       FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'invitation % not found', p_invitation_id USING ERRCODE = 'P0002';
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
SET search_path = ''
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
SET search_path = ''
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

-- Invitations: a member with members:manage invites an email with a role. The API makes
-- the token; it goes to the invitee only, in an `invitation` mail queued here (the
-- database keeps its SHA-256; the inviter never sees it). An open invitation can be
-- resent (a new token, mailed, and a new expiry) or revoked, and is accepted once,
-- through auth.accept_invitation(). One open invitation per email (23505 on
-- invitations_open_email_key); an existing member cannot be invited (TA020); only owners
-- create, resend or revoke an invitation to the owner role (TA041).
--
-- Accepting, two ways (auth.accept_invitation):
--   * as a new account (no login; name and password): the account is created with its
--     address verified, since the token proves the mailbox. An unverified account
--     holding the address is replaced (170_verification.sql); a verified one must log in
--     instead (TA034).
--   * as an existing account: logged in as that account (the context's actor), whose
--     address is the invitation's (TA035) and verified (TA003).
-- So a token alone never adds an existing account to a tenant, and an account that
-- signed up first with someone else's address can neither join nor keep the address.

----------------------------------------------------------------------------------------
-- inviting
----------------------------------------------------------------------------------------

-- The `invitation` mail carrying p_token to the invitee: the tenant's name, the role,
-- and who invited (a user's name, or an API key's).
CREATE OR REPLACE FUNCTION core.queue_invitation_mail(p_invitation core.invitations, p_token text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant_name text;
    v_invited_by text;
BEGIN
    SELECT t.name INTO v_tenant_name FROM core.tenants AS t WHERE t.tenant_id = p_invitation.tenant_id;
    SELECT u.name INTO v_invited_by FROM core.users AS u WHERE u.user_id = p_invitation.invited_by;
    IF v_invited_by IS NULL THEN
        SELECT 'API key ' || k.name INTO v_invited_by FROM core.api_keys AS k
         WHERE k.tenant_id = p_invitation.tenant_id AND k.key_id = p_invitation.invited_by;
    END IF;
    PERFORM core.enqueue_mail(p_invitation.email, 'invitation', jsonb_build_object(
        'token', p_token, 'tenant_name', v_tenant_name, 'role', p_invitation.role,
        'invited_by', COALESCE(v_invited_by, v_tenant_name)));
END
$$;

-- Invite an email with a role, valid for p_valid_for; the token is mailed to it.
CREATE OR REPLACE FUNCTION api.create_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_email text, p_role text, p_token text,
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
    VALUES (p_tenant_id, p_invitation_id, p_email, p_role, sha256(convert_to(p_token, 'UTF8')),
            core.current_actor_id(), now() + p_valid_for)
    RETURNING * INTO v_invitation;
    PERFORM core.queue_invitation_mail(v_invitation, p_token);
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

-- Send an open invitation again: a new token, mailed to the invitee (the old one stops
-- working), and a new expiry. Definer rights, to queue the mail (core.enqueue_mail is
-- no application role's); the tenant filter is explicit.
CREATE OR REPLACE FUNCTION api.resend_invitation(
    p_tenant_id uuid, p_invitation_id uuid, p_token text, p_valid_for interval DEFAULT '7 days'
)
RETURNS core.invitations
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_invitation core.invitations;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'members:manage');
    v_invitation := core.open_invitation_for_update(p_tenant_id, p_invitation_id);
    PERFORM core.assert_may_manage_role(v_invitation.role);  -- owner invitations: owners only
    UPDATE core.invitations
       SET token_hash = sha256(convert_to(p_token, 'UTF8')), sent_at = now(), expires_at = now() + p_valid_for
     WHERE tenant_id = p_tenant_id AND invitation_id = p_invitation_id
    RETURNING * INTO v_invitation;
    PERFORM core.queue_invitation_mail(v_invitation, p_token);
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
    v_invitation := core.open_invitation_for_update(p_tenant_id, p_invitation_id);
    PERFORM core.assert_may_manage_role(v_invitation.role);  -- owner invitations: owners only
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

-- Accept an invitation (see the top of this file). With no user in the context: as a new
-- account, which needs p_name and p_password_hash (22023 naming the missing one) and is
-- created verified; TA034 if a verified account has the address (log in as it). With a
-- user in the context (core.current_actor_id(), set by the API after checking the
-- session): as that account, which must have the invitation's address (TA035),
-- verified (TA003), and takes no name or password (22023). Errors: TA030 unknown token,
-- TA031 expired, TA032 already used, TA033 revoked, TA020 already a member.
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
    v_user core.users;
    v_holder core.users;
BEGIN
    IF core.current_actor_type() IS DISTINCT FROM 'user' AND core.current_actor_id() IS NOT NULL THEN
        RAISE EXCEPTION 'only a person accepts an invitation, logged in or not' USING ERRCODE = '42501';
    END IF;
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

    IF core.current_actor_id() IS NOT NULL THEN
        -- as the logged-in account
        IF p_name IS NOT NULL OR p_password_hash IS NOT NULL THEN
            RAISE EXCEPTION 'logged in, you accept as your account: send no name or password' USING
                ERRCODE = '22023', COLUMN = CASE WHEN p_name IS NOT NULL THEN 'name' ELSE 'password' END;
        END IF;
        SELECT * INTO v_user FROM core.users AS u WHERE u.user_id = core.current_actor_id();
        IF v_user.email IS NULL OR lower(v_user.email) <> lower(v_invitation.email) THEN
            RAISE EXCEPTION 'this invitation is for another email than your account''s' USING
                ERRCODE = 'TA035', HINT = 'Log in as the invited account, or accept without logging in to create one.';
        ELSIF v_user.email_verified_at IS NULL THEN
            RAISE EXCEPTION 'verify your email address before joining a tenant' USING
                ERRCODE = 'TA003', HINT = 'Use the link mailed at sign-up, or ask for a new one: POST /v1/auth/verify-email/resend.';
        ELSIF EXISTS (SELECT 1 FROM core.memberships AS m
                       WHERE m.tenant_id = p_tenant_id AND m.user_id = v_user.user_id) THEN
            RAISE EXCEPTION 'already a member of this tenant' USING ERRCODE = 'TA020';
        END IF;
        user_id := v_user.user_id;
        created_user := false;
    ELSE
        -- as a new account
        SELECT * INTO v_holder FROM core.users AS u WHERE lower(u.email) = lower(v_invitation.email);
        IF v_holder.email_verified_at IS NOT NULL THEN
            RAISE EXCEPTION 'an account with the email "%" exists: log in as it to accept', v_invitation.email USING
                ERRCODE = 'TA034', HINT = 'Log in, then accept with the access token (Authorization: Bearer).';
        ELSIF p_name IS NULL OR p_password_hash IS NULL THEN
            RAISE EXCEPTION 'a new account needs a name and a password' USING
                ERRCODE = '22023', COLUMN = CASE WHEN p_name IS NULL THEN 'name' ELSE 'password' END;
        END IF;
        -- an unverified holder of the address is replaced: the token proves the mailbox
        IF v_holder.user_id IS NOT NULL THEN
            PERFORM core.release_unverified_account(v_holder.user_id, NULL);
        END IF;
        user_id := core.create_user(v_invitation.email, p_name, p_password_hash, now());
        created_user := true;
    END IF;
    INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (p_tenant_id, user_id, v_invitation.role);
    UPDATE core.invitations AS i SET accepted_at = now(), accepted_by = accept_invitation.user_id
     WHERE i.tenant_id = p_tenant_id AND i.invitation_id = p_invitation_id;
    IF v_holder.user_id IS NOT NULL THEN
        PERFORM core.revoke_released_account_sessions(v_holder.user_id);  -- last: every shard
    END IF;
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

----------------------------------------------------------------------------------------
-- sweeps (worker)
----------------------------------------------------------------------------------------

-- For the sweep job (jobs/sweeps.py): delete invitations that were never accepted and
-- expired or were revoked more than p_age ago (their token can do nothing any more; an
-- accepted invitation stays, as the record of how a member joined). Only of active
-- tenants: a suspended or deleted tenant's rows refuse writes (guard_tenant_writes), and
-- one refused row would stop the whole batch. At most p_batch per call, so that one run
-- is short. Returns how many went.
CREATE OR REPLACE FUNCTION ops.sweep_invitations(p_age interval DEFAULT '30 days', p_batch integer DEFAULT 1000)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before timestamptz := pg_catalog.now() - p_age;
    v_count integer;
BEGIN
    IF p_batch IS NULL OR p_batch < 1 OR p_age IS NULL OR p_age < interval '0' THEN
        RAISE EXCEPTION 'a sweep needs a batch of at least 1 and an age of at least 0' USING ERRCODE = '22023';
    END IF;
    DELETE FROM core.invitations
     WHERE (tenant_id, invitation_id) IN (
        SELECT i.tenant_id, i.invitation_id
          FROM core.invitations AS i
          JOIN core.tenants AS t ON t.tenant_id = i.tenant_id AND t.status = 'active'
         WHERE i.accepted_at IS NULL AND (i.expires_at < v_before OR i.revoked_at < v_before)
         LIMIT p_batch);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

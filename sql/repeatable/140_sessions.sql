-- Sessions: accounts, sign-up, login with lockout, sessions with rotating refresh
-- tokens, and the session check every request with an access token makes. These run
-- before a tenant context exists (or across tenants), so they are SECURITY DEFINER with
-- search_path `pg_catalog, pg_temp` (temp last), and filter by tenant explicitly. Passwords are verified in
-- Python (argon2id); tokens arrive as SHA-256. Where a refusal must still be written
-- down (a failed login counts towards lockout; a reused refresh token revokes its
-- session) the function returns an outcome instead of raising, so the caller commits
-- the write and then answers 401.

----------------------------------------------------------------------------------------
-- accounts
----------------------------------------------------------------------------------------

-- Create a user (23505 on users_email_key if the email is taken, ignoring case).
CREATE OR REPLACE FUNCTION core.create_user(p_email text, p_name text, p_password_hash text)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id uuid;
BEGIN
    INSERT INTO core.users (email, name, password_hash) VALUES (p_email, p_name, p_password_hash)
    RETURNING user_id INTO v_user_id;
    RETURN v_user_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an account with the email "%" exists', p_email USING
        ERRCODE = '23505', CONSTRAINT = 'users_email_key', COLUMN = 'email',
        HINT = 'Log in instead, or use another email.';
END
$$;

-- stamp updated_at (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.users
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

----------------------------------------------------------------------------------------
-- sign-up and login
----------------------------------------------------------------------------------------

-- Sign up: a new user, a new tenant, and the user as its owner.
CREATE OR REPLACE FUNCTION auth.sign_up(
    p_email text, p_name text, p_password_hash text, p_slug text, p_tenant_name text, p_plan_id text DEFAULT 'free'
)
RETURNS TABLE (user_id uuid, tenant_id uuid)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
BEGIN
    user_id := core.create_user(p_email, p_name, p_password_hash);
    v_tenant := core.create_tenant(p_slug, p_tenant_name, p_plan_id);
    tenant_id := v_tenant.tenant_id;
    INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (tenant_id, user_id, 'owner');
    RETURN NEXT;
END
$$;

-- Step 1 of a login: the user's password hash, unless the account is locked (then the
-- hash is withheld and locked_for_seconds says for how long). No row: unknown email.
CREATE OR REPLACE FUNCTION auth.begin_login(p_email text)
RETURNS TABLE (user_id uuid, password_hash text, status text, locked_for_seconds integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT u.user_id,
           CASE WHEN u.locked_until > now() THEN NULL ELSE u.password_hash END,
           u.status,
           GREATEST(0, ceil(extract(epoch FROM u.locked_until - now())))::integer
      FROM core.users AS u
     WHERE lower(u.email) = lower(p_email)
$$;

-- Step 2 of a failed login: count the failure; the 5th failure within 15 minutes locks
-- the account for 15 minutes. Returns the seconds the account is now locked for (0: not).
CREATE OR REPLACE FUNCTION auth.record_login_failure(p_user_id uuid)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user core.users;
    -- computed here, not in the UPDATE: Citus allows no now() inside CASE in a modification
    -- (docs/citus.md, fact 14)
    v_now timestamptz := now();
    v_window_start timestamptz := now() - interval '15 minutes';
BEGIN
    UPDATE core.users SET
        failed_logins   = CASE WHEN first_failed_at > v_window_start THEN failed_logins + 1 ELSE 1 END,
        first_failed_at = CASE WHEN first_failed_at > v_window_start THEN first_failed_at ELSE v_now END
     WHERE user_id = p_user_id
    RETURNING * INTO v_user;
    PERFORM core.on_auth_event('login_failed', p_user_id, NULL, jsonb_build_object('failures', v_user.failed_logins));
    IF v_user.failed_logins >= 5 THEN
        UPDATE core.users SET locked_until = now() + interval '15 minutes', failed_logins = 0, first_failed_at = NULL
         WHERE user_id = p_user_id;
        PERFORM core.on_auth_event('account_locked', p_user_id, NULL, '{}');
        RETURN 15 * 60;
    END IF;
    RETURN 0;
END
$$;

-- Step 2 of a successful login (and of switching tenant): open a session in p_tenant_id
-- (NULL: the user's first tenant) with its first refresh token. TA002 if the user is not
-- a member there, TA001 if locked or disabled, TN002 if the tenant is deleted.
CREATE OR REPLACE FUNCTION auth.open_session(
    p_user_id uuid, p_tenant_id uuid, p_refresh_hash bytea,
    p_user_agent text DEFAULT NULL, p_ip inet DEFAULT NULL, p_lifetime interval DEFAULT '30 days'
)
RETURNS TABLE (session_id uuid, tenant_id uuid, role text, scopes text[], is_platform_admin boolean,
               expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user core.users;
BEGIN
    SELECT * INTO v_user FROM core.users AS u WHERE u.user_id = p_user_id;
    IF NOT FOUND OR v_user.status <> 'active' OR v_user.locked_until > now() THEN
        RAISE EXCEPTION 'this account cannot log in now' USING ERRCODE = 'TA001';
    END IF;
    -- a success clears the failures; first, because on Citus a reference table (users)
    -- cannot be changed after a multi-shard read (the membership search) in a transaction
    -- (docs/citus.md, fact 17)
    IF v_user.failed_logins > 0 OR v_user.locked_until IS NOT NULL THEN
        UPDATE core.users AS u SET failed_logins = 0, first_failed_at = NULL, locked_until = NULL
         WHERE u.user_id = p_user_id;
    END IF;
    SELECT m.tenant_id, m.role INTO tenant_id, role
      FROM core.memberships AS m JOIN core.tenants AS t ON t.tenant_id = m.tenant_id
     WHERE m.user_id = p_user_id AND (p_tenant_id IS NULL OR m.tenant_id = p_tenant_id)
       AND t.status <> 'deleted'
     ORDER BY m.created_at
     LIMIT 1;
    IF tenant_id IS NULL THEN
        RAISE EXCEPTION 'the user is not a member of that tenant' USING ERRCODE = 'TA002';
    END IF;
    INSERT INTO core.sessions (tenant_id, user_id, expires_at, user_agent, ip)
    VALUES (tenant_id, p_user_id, now() + p_lifetime, left(p_user_agent, 500), p_ip)
    RETURNING sessions.session_id, sessions.expires_at INTO session_id, expires_at;
    INSERT INTO core.refresh_tokens (tenant_id, token_hash, session_id)
    VALUES (tenant_id, p_refresh_hash, session_id);
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = open_session.role;
    is_platform_admin := v_user.is_platform_admin;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- sessions
----------------------------------------------------------------------------------------

-- Rotate a refresh token. Outcomes: ok (p_new_hash is now the session's token),
-- invalid (unknown token), revoked (also: the account is no longer active), expired,
-- reused (a used token: the whole session is revoked now; commit, then refuse).
CREATE OR REPLACE FUNCTION auth.refresh_session(p_tenant_id uuid, p_token_hash bytea, p_new_hash bytea)
RETURNS TABLE (outcome text, session_id uuid, user_id uuid, role text, scopes text[],
               is_platform_admin boolean, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_token core.refresh_tokens;
    v_session core.sessions;
BEGIN
    SELECT * INTO v_token FROM core.refresh_tokens AS r
     WHERE r.tenant_id = p_tenant_id AND r.token_hash = p_token_hash
       FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'invalid'; RETURN NEXT; RETURN;
    END IF;
    SELECT * INTO v_session FROM core.sessions AS s
     WHERE s.tenant_id = p_tenant_id AND s.session_id = v_token.session_id
       FOR UPDATE;
    session_id := v_session.session_id;
    user_id := v_session.user_id;
    IF v_session.revoked_at IS NULL AND NOT EXISTS (
        SELECT 1 FROM core.users AS u WHERE u.user_id = v_session.user_id AND u.status = 'active'
    ) THEN
        -- a disabled account's sessions end at their next refresh
        UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = 'revoked'
         WHERE s.tenant_id = p_tenant_id AND s.session_id = v_session.session_id;
        v_session.revoked_at := now();
    END IF;
    IF v_session.revoked_at IS NOT NULL THEN
        outcome := 'revoked'; RETURN NEXT; RETURN;
    ELSIF v_session.expires_at <= now() THEN
        outcome := 'expired'; RETURN NEXT; RETURN;
    ELSIF v_token.used_at IS NOT NULL THEN
        -- a stolen token raced its owner: end the whole session family
        UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = 'refresh_reuse'
         WHERE s.tenant_id = p_tenant_id AND s.session_id = v_session.session_id;
        PERFORM core.on_auth_event('refresh_reuse', v_session.user_id, p_tenant_id,
                                   jsonb_build_object('session_id', v_session.session_id));
        outcome := 'reused'; RETURN NEXT; RETURN;
    END IF;
    UPDATE core.refresh_tokens AS r SET used_at = now()
     WHERE r.tenant_id = p_tenant_id AND r.token_hash = p_token_hash;
    INSERT INTO core.refresh_tokens (tenant_id, token_hash, session_id)
    VALUES (p_tenant_id, p_new_hash, v_session.session_id);
    UPDATE core.sessions AS s SET last_refreshed_at = now()
     WHERE s.tenant_id = p_tenant_id AND s.session_id = v_session.session_id;
    SELECT m.role INTO role FROM core.memberships AS m
     WHERE m.tenant_id = p_tenant_id AND m.user_id = v_session.user_id;
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = refresh_session.role;
    SELECT u.is_platform_admin INTO is_platform_admin FROM core.users AS u WHERE u.user_id = v_session.user_id;
    expires_at := v_session.expires_at;
    outcome := 'ok';
    RETURN NEXT;
END
$$;

-- Every request with an access token: its session must be live (TA005 otherwise), and
-- the role and scopes returned are the current ones, not those in the token.
CREATE OR REPLACE FUNCTION auth.check_session(p_tenant_id uuid, p_session_id uuid, p_user_id uuid)
RETURNS TABLE (role text, scopes text[], is_platform_admin boolean, requests_per_minute integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT m.role, u.is_platform_admin INTO role, is_platform_admin
      FROM core.sessions AS s
      JOIN core.memberships AS m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
      JOIN core.users AS u ON u.user_id = s.user_id
     WHERE s.tenant_id = p_tenant_id AND s.session_id = p_session_id AND s.user_id = p_user_id
       AND s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'the session has ended' USING
            ERRCODE = 'TA005', HINT = 'Log in again.';
    END IF;
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = check_session.role;
    requests_per_minute := core.plan_requests_per_minute(p_tenant_id);
    RETURN NEXT;
END
$$;

-- Revoke one session of a user (logout, or from the session list). False if none.
CREATE OR REPLACE FUNCTION auth.revoke_session(p_user_id uuid, p_tenant_id uuid, p_session_id uuid,
                                               p_reason text DEFAULT 'revoked')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = p_reason
     WHERE s.tenant_id = p_tenant_id AND s.session_id = p_session_id AND s.user_id = p_user_id
       AND s.revoked_at IS NULL;
    RETURN FOUND;
END
$$;

-- Revoke every live session of a user, in every tenant. Returns how many.
CREATE OR REPLACE FUNCTION auth.revoke_all_sessions(p_user_id uuid)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count integer;
BEGIN
    UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = 'revoked_all'
     WHERE s.user_id = p_user_id AND s.revoked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- The live sessions of a user, in every tenant, newest first.
CREATE OR REPLACE FUNCTION auth.list_sessions(p_user_id uuid)
RETURNS TABLE (tenant_id uuid, session_id uuid, created_at timestamptz, last_refreshed_at timestamptz,
               expires_at timestamptz, user_agent text, ip inet)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.tenant_id, s.session_id, s.created_at, s.last_refreshed_at, s.expires_at, s.user_agent, s.ip
      FROM core.sessions AS s
     WHERE s.user_id = p_user_id AND s.revoked_at IS NULL AND s.expires_at > now()
     ORDER BY s.created_at DESC
$$;

----------------------------------------------------------------------------------------
-- hook
----------------------------------------------------------------------------------------

-- Authentication events (login_failed, account_locked, refresh_reuse, ...). Does
-- nothing yet: the audit log replaces this body to record them.
CREATE OR REPLACE FUNCTION core.on_auth_event(p_event text, p_user_id uuid, p_tenant_id uuid, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NULL;
END
$$;

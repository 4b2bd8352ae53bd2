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

-- (the signature before p_verified_at; core functions are replaced in place, so the old
-- one would linger beside the new and make three-argument calls ambiguous)
DROP FUNCTION IF EXISTS core.create_user(text, text, text);

-- Create a user (23505 on users_email_key if the email is taken, ignoring case), with a
-- verified address when p_verified_at is given (an accepted invitation proved it). A
-- NULL email: an account waiting for the address it claimed (170_verification.sql).
CREATE OR REPLACE FUNCTION core.create_user(
    p_email text, p_name text, p_password_hash text, p_verified_at timestamptz DEFAULT NULL
)
RETURNS uuid
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id uuid;
BEGIN
    INSERT INTO core.users (email, name, password_hash, email_verified_at)
    VALUES (p_email, p_name, p_password_hash, p_verified_at)
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

-- Sign up: a new user, a new tenant on the free plan (paid plans come from billing or a
-- platform administrator, never from the sign-up form), and the user as its owner. The
-- account starts unverified: a verify_email mail with a single-use token is queued for
-- p_verification_token (made by the API). An address held by a verified account is
-- taken (23505 users_email_key); one held by an unverified account is claimed: the new
-- account has no address until it verifies, and then replaces the holder
-- (170_verification.sql), so a squatter cannot block the address's owner.
CREATE OR REPLACE FUNCTION auth.sign_up(
    p_email text, p_name text, p_password_hash text, p_slug text, p_tenant_name text, p_verification_token text
)
RETURNS TABLE (user_id uuid, tenant_id uuid, email_verified boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
    v_holder core.users;
BEGIN
    SELECT * INTO v_holder FROM core.users AS u WHERE lower(u.email) = lower(p_email);
    IF v_holder.email_verified_at IS NOT NULL THEN
        RAISE EXCEPTION 'an account with the email "%" exists', p_email USING
            ERRCODE = '23505', CONSTRAINT = 'users_email_key', COLUMN = 'email',
            HINT = 'Log in instead, or use another email.';
    END IF;
    user_id := core.create_user(CASE WHEN v_holder.user_id IS NULL THEN p_email END, p_name, p_password_hash);
    v_tenant := core.create_tenant(p_slug, p_tenant_name, 'free');
    tenant_id := v_tenant.tenant_id;
    INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (tenant_id, user_id, 'owner');
    PERFORM core.issue_email_verification(user_id, p_email, p_name, p_verification_token);
    email_verified := false;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- lockout
----------------------------------------------------------------------------------------

-- Failed logins are counted in core.login_failures (distributed on the account, not in
-- the reference table core.users: docs/citus.md, fact 21) under a hash of the email, so
-- an unknown email is counted, locked and answered exactly like a known one:
--   * 5 failures from one client within 15 minutes lock the account FOR THAT CLIENT for
--     15 minutes: there even the right password is refused (429 account_locked).
--   * Other clients are not locked: an attacker without the password cannot lock the
--     owner out. But 50 failures from all clients within 15 minutes put the account
--     under attack for 15 minutes (the '*' row's locked_until): then a client's first
--     failure locks it. The right password from a client that has not failed still works.
--   * A success from a client clears that client's failures (not the account's).
-- A client is its address as the API resolved it (trusted proxies), an IPv6 client its
-- /64 (one host holds a whole /64).

-- The key of an email in core.login_failures: SHA-256 (hex) of the lower-cased address.
CREATE OR REPLACE FUNCTION core.login_account(p_email text)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT encode(sha256(convert_to(lower(COALESCE(p_email, '')), 'UTF8')), 'hex') $$;

-- The key of a client in core.login_failures: its address, an IPv6 address's /64.
CREATE OR REPLACE FUNCTION core.login_client(p_client inet)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_client IS NULL THEN 'unknown'
                WHEN family(p_client) = 6 THEN network(set_masklen(p_client, 64))::text
                ELSE host(p_client) END
$$;

-- Step 1 of a login: the user's password hash, unless the account is locked for this
-- client (then the hash is withheld and locked_for_seconds says for how long). Always
-- one row: an unknown email has no user_id and no hash (the API verifies the password
-- against a dummy hash, so both cost the same time) and is locked just the same.
CREATE OR REPLACE FUNCTION auth.begin_login(p_email text, p_client inet DEFAULT NULL)
RETURNS TABLE (user_id uuid, password_hash text, status text, locked_for_seconds integer)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- computed first: the lookup is a router query on a plain value (the account's shard)
    v_account text := core.login_account(p_email);
    v_client text := core.login_client(p_client);
    v_locked_until timestamptz;
BEGIN
    SELECT f.locked_until INTO v_locked_until FROM core.login_failures AS f
     WHERE f.account = v_account AND f.client = v_client;
    locked_for_seconds := COALESCE(GREATEST(0, ceil(extract(epoch FROM v_locked_until - now())))::integer, 0);
    SELECT u.user_id, u.password_hash, u.status INTO user_id, password_hash, status
      FROM core.users AS u
     WHERE lower(u.email) = lower(p_email);
    IF locked_for_seconds > 0 THEN
        password_hash := NULL;
    END IF;
    RETURN NEXT;
END
$$;

-- One more failure for (account, client) in the window that started after
-- p_window_start (a failure outside it starts a new window). Times are arguments: Citus
-- allows no now() inside CASE in a modification (docs/citus.md, fact 14).
CREATE OR REPLACE FUNCTION core.count_login_failure(
    p_account text, p_client text, p_now timestamptz, p_window_start timestamptz
)
RETURNS core.login_failures
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO core.login_failures AS f (account, client, failures, window_start)
    VALUES (p_account, p_client, 1, p_now)
    ON CONFLICT (account, client) DO UPDATE SET
        failures     = CASE WHEN f.window_start > p_window_start THEN f.failures + 1 ELSE 1 END,
        window_start = CASE WHEN f.window_start > p_window_start THEN f.window_start ELSE p_now END
    RETURNING *
$$;

-- Step 2 of a failed login (known email or not): count the failure for the account and
-- for this client, and lock the account for this client at its limit (see above).
-- Returns the seconds the account is now locked for, for this client (0: not).
CREATE OR REPLACE FUNCTION auth.record_login_failure(p_email text, p_client inet DEFAULT NULL)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_account text := core.login_account(p_email);
    v_client text := core.login_client(p_client);
    v_now timestamptz := now();  -- variables, not now() in the statements (fact 14)
    v_window_start timestamptz := now() - interval '15 minutes';
    v_lock_until timestamptz := now() + interval '15 minutes';
    v_all core.login_failures;
    v_here core.login_failures;
    v_allowed integer := 5;
    v_user_id uuid;
BEGIN
    -- the account, from every client; then from this one (one shard: the account's)
    v_all := core.count_login_failure(v_account, '*', v_now, v_window_start);
    v_here := core.count_login_failure(v_account, v_client, v_now, v_window_start);
    SELECT u.user_id INTO v_user_id FROM core.users AS u WHERE lower(u.email) = lower(p_email);
    IF v_user_id IS NOT NULL THEN
        PERFORM core.on_auth_event('login_failed', v_user_id, NULL, jsonb_build_object(
            'failures', v_here.failures, 'account_failures', v_all.failures, 'client', v_client));
    END IF;
    IF v_all.failures >= 50 THEN
        -- under attack from many clients: for the next 15 minutes, one failure locks a client
        UPDATE core.login_failures SET locked_until = v_lock_until, failures = 0, window_start = v_now
         WHERE account = v_account AND client = '*';
        v_all.locked_until := v_lock_until;
        IF v_user_id IS NOT NULL THEN
            PERFORM core.on_auth_event('account_under_attack', v_user_id, NULL, '{}');
        END IF;
    END IF;
    IF v_all.locked_until > v_now THEN
        v_allowed := 1;
    END IF;
    IF v_here.failures >= v_allowed THEN
        UPDATE core.login_failures SET locked_until = v_lock_until, failures = 0, window_start = v_now
         WHERE account = v_account AND client = v_client;
        IF v_user_id IS NOT NULL THEN
            PERFORM core.on_auth_event('account_locked', v_user_id, NULL, jsonb_build_object('client', v_client));
        END IF;
        RETURN 15 * 60;
    END IF;
    RETURN 0;
END
$$;

-- Step 3 of a successful login: this client's failures are forgiven (the account's
-- count from every client stays: it measures an attack, which one success does not end).
CREATE OR REPLACE FUNCTION auth.record_login_success(p_email text, p_client inet DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_account text := core.login_account(p_email);
    v_client text := core.login_client(p_client);
BEGIN
    DELETE FROM core.login_failures WHERE account = v_account AND client = v_client;
END
$$;

-- For a job: forget failures whose window and lock ended more than p_age ago (the rows
-- of emails nobody tries again). Returns how many rows went.
CREATE OR REPLACE FUNCTION ops.purge_login_failures(p_age interval DEFAULT '1 day')
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before timestamptz := now() - interval '15 minutes' - p_age;
    v_count integer;
BEGIN
    DELETE FROM core.login_failures
     WHERE window_start < v_before AND (locked_until IS NULL OR locked_until < v_before);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Step 2 of a successful login (and of switching tenant): open a session in p_tenant_id
-- (NULL: the user's first tenant) with its first refresh token. TA002 if the user is not
-- a member there, TA001 if locked or disabled, TN002 if the tenant is deleted.
-- The session's limits are fixed now (0005_accounts.up.sql): it ends after
-- p_idle_timeout without a request or refresh, p_max_lifetime after now whatever the
-- activity, or p_refresh_lifetime after its last refresh, whichever comes first; its
-- expires_at is always the earliest of the three (22023 for a limit that is not positive).
CREATE OR REPLACE FUNCTION auth.open_session(
    p_user_id uuid, p_tenant_id uuid, p_refresh_hash bytea,
    p_user_agent text DEFAULT NULL, p_ip inet DEFAULT NULL,
    p_refresh_lifetime interval DEFAULT '7 days', p_idle_timeout interval DEFAULT '30 minutes',
    p_max_lifetime interval DEFAULT '10 hours'
)
RETURNS TABLE (session_id uuid, tenant_id uuid, role text, scopes text[], is_platform_admin boolean,
               expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user core.users;
    v_now timestamptz := now();
BEGIN
    IF NOT (p_refresh_lifetime > interval '0' AND p_idle_timeout > interval '0' AND p_max_lifetime > interval '0') THEN
        RAISE EXCEPTION 'session limits must be positive intervals' USING ERRCODE = '22023';
    END IF;
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
    INSERT INTO core.sessions (tenant_id, user_id, last_seen_at, idle_timeout, absolute_expires_at,
                               refresh_expires_at, expires_at, user_agent, ip)
    VALUES (tenant_id, p_user_id, v_now, p_idle_timeout, v_now + p_max_lifetime,
            v_now + p_refresh_lifetime,
            LEAST(v_now + p_max_lifetime, v_now + p_refresh_lifetime, v_now + p_idle_timeout),
            left(p_user_agent, 500), p_ip)
    RETURNING sessions.session_id, sessions.expires_at INTO session_id, expires_at;
    INSERT INTO core.refresh_tokens (tenant_id, token_hash, session_id)
    VALUES (tenant_id, p_refresh_hash, session_id);
    PERFORM core.on_auth_event('login', p_user_id, tenant_id, jsonb_build_object('session_id', session_id));
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = open_session.role;
    is_platform_admin := v_user.is_platform_admin;
    RETURN NEXT;
END
$$;

----------------------------------------------------------------------------------------
-- sessions
----------------------------------------------------------------------------------------

-- Rotate a refresh token. Outcomes: ok (p_new_hash is now the session's token),
-- invalid (unknown token), revoked (also: the account is no longer active), expired
-- (idle too long, past its maximum, or its refresh token too old), reused (a used
-- token: the whole session is revoked now; commit, then refuse). A refresh is activity:
-- the idle limit starts again, and the new token lives p_refresh_lifetime, never past
-- the session's absolute maximum.
CREATE OR REPLACE FUNCTION auth.refresh_session(p_tenant_id uuid, p_token_hash bytea, p_new_hash bytea,
                                                p_refresh_lifetime interval DEFAULT '7 days')
RETURNS TABLE (outcome text, session_id uuid, user_id uuid, role text, scopes text[],
               is_platform_admin boolean, expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_token core.refresh_tokens;
    v_session core.sessions;
    v_now timestamptz := now();
BEGIN
    IF NOT p_refresh_lifetime > interval '0' THEN
        RAISE EXCEPTION 'the refresh lifetime must be a positive interval' USING ERRCODE = '22023';
    END IF;
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
    -- (LEAST over variables and columns: Citus allows no now() inside CASE/COALESCE in a
    -- modification, docs/citus.md, fact 14; and no STABLE timestamptz + interval over a
    -- column, hence the sum in UTC)
    UPDATE core.sessions AS s SET
        last_refreshed_at  = v_now,
        last_seen_at       = v_now,
        refresh_expires_at = v_now + p_refresh_lifetime,
        expires_at         = LEAST(s.absolute_expires_at, v_now + p_refresh_lifetime,
                                   ((v_now AT TIME ZONE 'UTC') + s.idle_timeout) AT TIME ZONE 'UTC')
     WHERE s.tenant_id = p_tenant_id AND s.session_id = v_session.session_id
    RETURNING s.expires_at INTO v_session.expires_at;
    SELECT m.role INTO role FROM core.memberships AS m
     WHERE m.tenant_id = p_tenant_id AND m.user_id = v_session.user_id;
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = refresh_session.role;
    SELECT u.is_platform_admin INTO is_platform_admin FROM core.users AS u WHERE u.user_id = v_session.user_id;
    expires_at := v_session.expires_at;
    outcome := 'ok';
    RETURN NEXT;
END
$$;

-- A session in use (a request with its access token): its idle limit starts again, and
-- expires_at follows (the earliest of the three limits, 0005_accounts.up.sql). Written at
-- most once a minute per session, so a busy client costs one small write a minute, not
-- one per request (core.sessions is distributed: docs/citus.md, fact 21).
CREATE OR REPLACE FUNCTION core.touch_session(p_tenant_id uuid, p_session_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();  -- a variable: no now() inside LEAST in a modification (fact 14)
BEGIN
    UPDATE core.sessions AS s SET
        last_seen_at = v_now,
        -- timestamptz + interval is STABLE, and Citus refuses STABLE functions over columns
        -- in an UPDATE of a distributed table: the sum is done in UTC (IMMUTABLE, exact)
        expires_at   = LEAST(s.absolute_expires_at, s.refresh_expires_at,
                             ((v_now AT TIME ZONE 'UTC') + s.idle_timeout) AT TIME ZONE 'UTC')
     WHERE s.tenant_id = p_tenant_id AND s.session_id = p_session_id
       AND s.revoked_at IS NULL AND s.last_seen_at < v_now - interval '1 minute';
END
$$;

-- The session of the transaction's context: app.tenant_id, app.session_id and
-- app.actor_id (actor type 'user'), set by the API from a verified access token. It must
-- be live, of an active user who is still a member of its tenant (TA005 otherwise). The
-- after-login auth.* functions below act for this session's user only and take no user
-- id: to act as another user a caller would need a live session id of theirs, which only
-- their tokens carry. With p_platform_admin, a platform administrator's request (actor
-- type 'platform_admin', no tenant in the context) is accepted too: its session is found
-- by id, in whichever tenant it is (on Citus a query of every shard, for admin calls only).
-- 42501 for any other context. Not granted to any role: the definer functions call it.
CREATE OR REPLACE FUNCTION core.context_session(p_platform_admin boolean DEFAULT false)
RETURNS TABLE (tenant_id uuid, session_id uuid, user_id uuid, role text, is_platform_admin boolean)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant_id uuid := core.current_tenant_id();
    v_session_id uuid := core.current_session_id();
    v_user_id uuid := core.current_actor_id();
    v_actor_type text := core.current_actor_type();
BEGIN
    IF v_actor_type = 'user' AND v_tenant_id IS NOT NULL THEN
        SELECT s.tenant_id, s.session_id, s.user_id, m.role, u.is_platform_admin
          INTO tenant_id, session_id, user_id, role, is_platform_admin
          FROM core.sessions AS s
          JOIN core.memberships AS m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
          JOIN core.users AS u ON u.user_id = s.user_id
         WHERE s.tenant_id = v_tenant_id AND s.session_id = v_session_id AND s.user_id = v_user_id
           AND s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active';
    ELSIF v_actor_type = 'platform_admin' AND p_platform_admin AND v_tenant_id IS NULL THEN
        SELECT s.tenant_id, s.session_id, s.user_id, m.role, u.is_platform_admin
          INTO tenant_id, session_id, user_id, role, is_platform_admin
          FROM core.sessions AS s
          JOIN core.memberships AS m ON m.tenant_id = s.tenant_id AND m.user_id = s.user_id
          JOIN core.users AS u ON u.user_id = s.user_id
         WHERE s.session_id = v_session_id AND s.user_id = v_user_id
           AND s.revoked_at IS NULL AND s.expires_at > now() AND u.status = 'active';
    ELSE
        RAISE EXCEPTION 'this call acts for the user of the transaction''s session, and there is none' USING
            ERRCODE = '42501',
            HINT = 'SET LOCAL app.actor_type = ''user'', app.tenant_id, app.actor_id and app.session_id.';
    END IF;
    IF session_id IS NULL THEN
        RAISE EXCEPTION 'the session has ended' USING
            ERRCODE = 'TA005', HINT = 'Log in again.';
    END IF;
    RETURN NEXT;
END
$$;

-- Every request with an access token: the context's session must be live (TA005
-- otherwise), and the role and scopes returned are the current ones, not those in the
-- token. The API's pipeline sets the context from the verified token first.
--
-- It only reads: recording the session's use (auth.touch_session) is a separate, short
-- transaction the API runs after the request when touch_due says so (once a minute at
-- most). On Citus a definer-rights write here would make the request's own reads of the
-- tenant's shards fail ("placements modified by a different user", docs/citus.md, fact 16).
CREATE OR REPLACE FUNCTION auth.check_session()
RETURNS TABLE (role text, scopes text[], is_platform_admin boolean, requests_per_minute integer,
               touch_due boolean)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_session record;
BEGIN
    SELECT * INTO v_session FROM core.context_session(true);
    role := v_session.role;
    is_platform_admin := v_session.is_platform_admin;
    SELECT s.last_seen_at < now() - interval '1 minute' INTO touch_due
      FROM core.sessions AS s
     WHERE s.tenant_id = v_session.tenant_id AND s.session_id = v_session.session_id;
    SELECT array_agg(rs.scope ORDER BY rs.scope) INTO scopes FROM core.role_scopes AS rs WHERE rs.role = v_session.role;
    requests_per_minute := core.plan_requests_per_minute(v_session.tenant_id);
    RETURN NEXT;
END
$$;

-- The context's session is in use: its idle limit starts again (core.touch_session, at
-- most one write a minute). Its own transaction, after the request's (see check_session).
CREATE OR REPLACE FUNCTION auth.touch_session()
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_session record;
BEGIN
    SELECT * INTO v_session FROM core.context_session(true);
    PERFORM core.touch_session(v_session.tenant_id, v_session.session_id);
END
$$;

-- Revoke one session of the context's user, in any of their tenants (logout, or from the
-- session list). False if they have no such live session.
CREATE OR REPLACE FUNCTION auth.revoke_session(p_tenant_id uuid, p_session_id uuid, p_reason text DEFAULT 'revoked')
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id uuid;
BEGIN
    SELECT c.user_id INTO v_user_id FROM core.context_session() AS c;
    UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = p_reason
     WHERE s.tenant_id = p_tenant_id AND s.session_id = p_session_id AND s.user_id = v_user_id
       AND s.revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM core.on_auth_event('session_revoked', v_user_id, p_tenant_id,
                               jsonb_build_object('session_id', p_session_id, 'reason', p_reason));
    RETURN true;
END
$$;

-- Revoke every live session of the context's user, in every tenant (this one included).
-- Returns how many.
CREATE OR REPLACE FUNCTION auth.revoke_all_sessions()
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id uuid;
    v_count integer;
BEGIN
    SELECT c.user_id INTO v_user_id FROM core.context_session() AS c;
    UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = 'revoked_all'
     WHERE s.user_id = v_user_id AND s.revoked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM core.on_auth_event('session_revoked', v_user_id, NULL,
                               jsonb_build_object('reason', 'revoked_all', 'sessions', v_count));
    RETURN v_count;
END
$$;

-- The live sessions of the context's user, in every tenant, newest first.
CREATE OR REPLACE FUNCTION auth.list_sessions()
RETURNS TABLE (tenant_id uuid, session_id uuid, created_at timestamptz, last_refreshed_at timestamptz,
               expires_at timestamptz, user_agent text, ip inet)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user_id uuid;
BEGIN
    SELECT c.user_id INTO v_user_id FROM core.context_session() AS c;
    RETURN QUERY
    SELECT s.tenant_id, s.session_id, s.created_at, s.last_refreshed_at, s.expires_at, s.user_agent, s.ip
      FROM core.sessions AS s
     WHERE s.user_id = v_user_id AND s.revoked_at IS NULL AND s.expires_at > now()
     ORDER BY s.created_at DESC;
END
$$;

----------------------------------------------------------------------------------------
-- hook
----------------------------------------------------------------------------------------

-- Authentication events (login, login_failed, account_locked, refresh_reuse,
-- session_revoked, ...). Does nothing here: the audit log (500_audit.sql) replaces this
-- body to record them.
CREATE OR REPLACE FUNCTION core.on_auth_event(p_event text, p_user_id uuid, p_tenant_id uuid, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NULL;
END
$$;

----------------------------------------------------------------------------------------
-- sweeps (worker)
----------------------------------------------------------------------------------------

-- For the sweep job (jobs/sweeps.py): delete sessions that ended (expired, or revoked)
-- more than p_age ago, their refresh tokens with them (ON DELETE CASCADE). Until then an
-- ended session is kept, so a reused refresh token is still told apart from an unknown
-- one. At most p_batch sessions per call, so that one run is short (the job calls again
-- while full batches go). Returns how many went.
CREATE OR REPLACE FUNCTION ops.sweep_sessions(p_age interval DEFAULT '7 days', p_batch integer DEFAULT 1000)
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
    -- the batch is chosen first (a subquery with LIMIT: Citus plans it on its own, then
    -- deletes the chosen rows on each shard)
    DELETE FROM core.sessions
     WHERE (tenant_id, session_id) IN (
        SELECT s.tenant_id, s.session_id FROM core.sessions AS s
         WHERE s.expires_at < v_before OR s.revoked_at < v_before
         LIMIT p_batch);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Accounts: what people do to their own account. A forgotten password is reset with a
-- single-use, short-lived token sent by mail (core.password_resets, 0005; the mail is
-- queued here, in the same transaction, from the row just checked); a known password is
-- changed by proving it first; the profile (the name) is changed by its user. A reset
-- ends every session of the account, a change every session but the caller's: whoever
-- knew the old password is out. Passwords are hashed and verified in Python (argon2id);
-- reset tokens arrive in clear only to be mailed, and are kept as SHA-256.
--
-- The functions that act for the logged-in user find who that is from the transaction's
-- session (core.context_session(), 140_sessions.sql), never from an argument.
--
-- core.users and core.password_resets are reference tables on Citus: each function
-- writes them before it touches the sessions of several tenants (a multi-shard write),
-- since a reference table cannot change after a multi-shard access in a transaction
-- (docs/citus.md, fact 17).

----------------------------------------------------------------------------------------
-- password reset
----------------------------------------------------------------------------------------

-- How many reset mails an account may have open (unused, asked for within the last
-- hour): a flood of requests cannot mail-bomb its owner.
CREATE OR REPLACE FUNCTION core.max_open_password_resets()
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 3 $$;

-- Ask for a reset of the password of the account with p_email: a token (p_token, made
-- by the API) valid for p_lifetime and the password_reset mail that carries it. Does
-- nothing, and says nothing, for an unknown email, a disabled account, or an account
-- that already has core.max_open_password_resets() open within the hour: the caller
-- answers the same in every case (no account oracle).
CREATE OR REPLACE FUNCTION auth.request_password_reset(p_email text, p_token text,
                                                       p_lifetime interval DEFAULT '30 minutes')
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user core.users;
    v_now timestamptz := now();
    v_open integer;
BEGIN
    IF NOT (p_lifetime > interval '0' AND p_lifetime <= interval '1 day') THEN
        RAISE EXCEPTION 'a reset token lives more than no time and at most a day' USING
            ERRCODE = '22023', COLUMN = 'lifetime';
    END IF;
    IF p_token IS NULL OR length(p_token) NOT BETWEEN 32 AND 200 THEN
        RAISE EXCEPTION 'the reset token must be 32 to 200 characters' USING ERRCODE = '22023', COLUMN = 'token';
    END IF;
    SELECT * INTO v_user FROM core.users AS u WHERE lower(u.email) = lower(p_email) AND u.status = 'active';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- one request of an account at a time, so that the cap below is not raced (an
    -- advisory lock: the function runs on the coordinator, and users is a reference table)
    PERFORM pg_advisory_xact_lock(hashtextextended('password reset ' || v_user.user_id::text, 0));
    SELECT count(*) INTO v_open FROM core.password_resets AS r
     WHERE r.user_id = v_user.user_id AND r.used_at IS NULL AND r.created_at > v_now - interval '1 hour';
    IF v_open >= core.max_open_password_resets() THEN
        PERFORM core.on_auth_event('password_reset_capped', v_user.user_id, NULL, jsonb_build_object('open', v_open));
        RETURN;
    END IF;
    INSERT INTO core.password_resets (token_hash, user_id, created_at, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), v_user.user_id, v_now, v_now + p_lifetime);
    PERFORM core.enqueue_mail(v_user.email, 'password_reset', jsonb_build_object(
        'token', p_token, 'name', v_user.name,
        'valid_minutes', ceil(extract(epoch FROM p_lifetime) / 60)::integer));
    PERFORM core.on_auth_event('password_reset_requested', v_user.user_id, NULL, '{}');
END
$$;

-- Set a new password with a reset token (its SHA-256): the token and every other open
-- one of the account are spent, and every session of the account ends. Returns how many sessions ended. TA080 for an
-- unknown or used token, TA081 for an expired one, TA001 for a disabled account.
CREATE OR REPLACE FUNCTION auth.reset_password(p_token_hash bytea, p_password_hash text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_user_id uuid;
    v_expires_at timestamptz;
    v_count integer;
BEGIN
    -- spend it in one statement: of two requests racing with one token, one wins
    UPDATE core.password_resets AS r SET used_at = v_now
     WHERE r.token_hash = p_token_hash AND r.used_at IS NULL AND r.expires_at > v_now
    RETURNING r.user_id INTO v_user_id;
    IF v_user_id IS NULL THEN
        SELECT r.expires_at INTO v_expires_at FROM core.password_resets AS r
         WHERE r.token_hash = p_token_hash AND r.used_at IS NULL;
        IF FOUND THEN
            RAISE EXCEPTION 'the password reset token expired at %', v_expires_at USING
                ERRCODE = 'TA081', HINT = 'Ask for a new reset mail.';
        END IF;
        RAISE EXCEPTION 'no such password reset token, or it was used' USING
            ERRCODE = 'TA080', HINT = 'Ask for a new reset mail.';
    END IF;
    UPDATE core.password_resets AS r SET used_at = v_now
     WHERE r.user_id = v_user_id AND r.used_at IS NULL;
    UPDATE core.users AS u SET password_hash = p_password_hash
     WHERE u.user_id = v_user_id AND u.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this account cannot log in' USING ERRCODE = 'TA001';
    END IF;
    -- last: a write on the shards of every tenant of the user (fact 17)
    UPDATE core.sessions AS s SET revoked_at = v_now, revoked_reason = 'password_reset'
     WHERE s.user_id = v_user_id AND s.revoked_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM core.on_auth_event('password_reset', v_user_id, NULL, jsonb_build_object('sessions_revoked', v_count));
    RETURN v_count;
END
$$;

----------------------------------------------------------------------------------------
-- password change
----------------------------------------------------------------------------------------

-- Step 1 of a password change: the logged-in user's email and password hash, for the
-- API to verify the current password against (and to count a wrong one towards the
-- account's lockout, like a failed login).
CREATE OR REPLACE FUNCTION auth.begin_password_change()
RETURNS TABLE (user_id uuid, email text, password_hash text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT c.user_id INTO user_id FROM core.context_session() AS c;
    SELECT u.email, u.password_hash INTO email, password_hash FROM core.users AS u WHERE u.user_id = begin_password_change.user_id;
    RETURN NEXT;
END
$$;

-- Step 2, once the current password is proved: the new password hash, and every other
-- session of the user ends, in every tenant; the caller's own session goes on. Returns
-- how many sessions ended.
CREATE OR REPLACE FUNCTION auth.change_password(p_password_hash text)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_session record;
    v_user_id uuid;
    v_now timestamptz := now();
    v_count integer;
BEGIN
    SELECT * INTO v_session FROM core.context_session() AS c;
    v_user_id := v_session.user_id;
    UPDATE core.users AS u SET password_hash = p_password_hash
     WHERE u.user_id = v_user_id AND u.status = 'active';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'this account cannot log in' USING ERRCODE = 'TA001';
    END IF;
    -- the user asked for a reset and then remembered: the reset mails stop working too
    UPDATE core.password_resets AS r SET used_at = v_now WHERE r.user_id = v_user_id AND r.used_at IS NULL;
    UPDATE core.sessions AS s SET revoked_at = v_now, revoked_reason = 'password_changed'
     WHERE s.user_id = v_user_id AND s.revoked_at IS NULL
       AND (s.tenant_id, s.session_id) IS DISTINCT FROM (v_session.tenant_id, v_session.session_id);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    PERFORM core.on_auth_event('password_changed', v_user_id, v_session.tenant_id,
                               jsonb_build_object('sessions_revoked', v_count));
    RETURN v_count;
END
$$;

----------------------------------------------------------------------------------------
-- profile
----------------------------------------------------------------------------------------

-- Change the logged-in user's name (trimmed; 1 to 200 characters, else 23514 naming it).
-- A user is global: the name is the same in every tenant the user belongs to.
CREATE OR REPLACE FUNCTION auth.update_profile(p_name text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_name text := btrim(p_name);
    v_user_id uuid;
BEGIN
    SELECT c.user_id INTO v_user_id FROM core.context_session() AS c;
    IF v_name IS NULL OR length(v_name) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'a name is 1 to 200 characters' USING
            ERRCODE = '23514', COLUMN = 'name', CONSTRAINT = 'users_name_check';
    END IF;
    UPDATE core.users AS u SET name = v_name WHERE u.user_id = v_user_id;
END
$$;

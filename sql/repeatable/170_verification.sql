-- Email verification: an account proves its address with a single-use token mailed to
-- it (24 hours; only its SHA-256 is kept, in core.email_verifications). Sign-up
-- (auth.sign_up, 140_sessions.sql) issues the first token; auth.resend_verification
-- issues a new one (the older ones stop working); auth.verify_email spends one.
--
-- What an unverified account may do: log in and use its own tenant. What it may not:
-- join another tenant by invitation (TA003, 120_invitations.sql). And it is provisional:
-- a later sign-up of the same address that verifies it (or an invitation accepted as a
-- new account, whose token proves the mailbox) replaces it. The replaced account loses
-- the address, its password and its sessions at once and is disabled: a squatter who
-- signed up with someone else's address keeps nothing. (Its own tenant stays, with an
-- owner who can no longer log in.)
--
-- core.users and core.email_verifications are reference tables on Citus: every function
-- here writes them before anything that reads or writes several shards (the replaced
-- account's sessions, last), since a reference table cannot change after a multi-shard
-- read in a transaction (docs/citus.md, fact 17).

----------------------------------------------------------------------------------------
-- tokens
----------------------------------------------------------------------------------------

-- A new verification token for p_user_id proving p_email (the older open ones stop
-- working), and the verify_email mail that carries it. Callers are definer-rights
-- functions that have checked the account; no application role may call this.
CREATE OR REPLACE FUNCTION core.issue_email_verification(
    p_user_id uuid, p_email text, p_name text, p_token text, p_valid_for interval DEFAULT '24 hours'
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
BEGIN
    UPDATE core.email_verifications AS v SET used_at = v_now
     WHERE v.user_id = p_user_id AND v.used_at IS NULL;
    INSERT INTO core.email_verifications (token_hash, user_id, email, expires_at)
    VALUES (sha256(convert_to(p_token, 'UTF8')), p_user_id, p_email, v_now + p_valid_for);
    PERFORM core.enqueue_mail(p_email, 'verify_email', jsonb_build_object('token', p_token, 'name', p_name));
END
$$;

----------------------------------------------------------------------------------------
-- replacing an unverified account
----------------------------------------------------------------------------------------

-- Step 1 (reference-table writes): the unverified account p_user_id gives up its address
-- to p_replaced_by: no address, no password, disabled (auth.check_session refuses its
-- access tokens from now on), no open verification token.
CREATE OR REPLACE FUNCTION core.release_unverified_account(p_user_id uuid, p_replaced_by uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_email text;
BEGIN
    SELECT u.email INTO v_email FROM core.users AS u WHERE u.user_id = p_user_id;
    UPDATE core.users AS u SET email = NULL, password_hash = NULL, status = 'disabled'
     WHERE u.user_id = p_user_id AND u.email_verified_at IS NULL;
    UPDATE core.email_verifications AS v SET used_at = now()
     WHERE v.user_id = p_user_id AND v.used_at IS NULL;
    PERFORM core.on_auth_event('account_replaced', p_user_id, NULL,
                               jsonb_build_object('replaced_by', p_replaced_by, 'email', v_email));
END
$$;

-- Step 2 (last: it writes every shard): end the released account's sessions.
CREATE OR REPLACE FUNCTION core.revoke_released_account_sessions(p_user_id uuid)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.sessions AS s SET revoked_at = now(), revoked_reason = 'revoked'
     WHERE s.user_id = p_user_id AND s.revoked_at IS NULL;
END
$$;

----------------------------------------------------------------------------------------
-- entry points (no tenant context: definer rights, search_path pg_catalog then pg_temp)
----------------------------------------------------------------------------------------

-- Spend a verification token: the account now holds the address, verified. An
-- unverified account holding the same address is replaced (see the top of this file);
-- an address meanwhile verified by another account is 23505 users_email_key. TA070 for
-- an unknown or spent token (or a replaced account's), TA071 for an expired one.
CREATE OR REPLACE FUNCTION auth.verify_email(p_token_hash bytea)
RETURNS TABLE (user_id uuid, email text, email_verified_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_token core.email_verifications;
    v_holder core.users;
BEGIN
    -- spend it first: a token works once, even under concurrent attempts
    UPDATE core.email_verifications AS v SET used_at = v_now
     WHERE v.token_hash = p_token_hash AND v.used_at IS NULL AND v.expires_at > v_now
    RETURNING * INTO v_token;
    IF v_token.token_hash IS NULL THEN
        IF EXISTS (SELECT 1 FROM core.email_verifications AS v
                    WHERE v.token_hash = p_token_hash AND v.used_at IS NULL) THEN
            RAISE EXCEPTION 'the verification token has expired' USING
                ERRCODE = 'TA071', HINT = 'Ask for a new one: POST /v1/auth/verify-email/resend.';
        END IF;
        RAISE EXCEPTION 'no such verification token (or it was used)' USING ERRCODE = 'TA070';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM core.users AS u WHERE u.user_id = v_token.user_id AND u.status = 'active') THEN
        RAISE EXCEPTION 'no such verification token (or it was used)' USING ERRCODE = 'TA070';
    END IF;
    SELECT * INTO v_holder FROM core.users AS u
     WHERE lower(u.email) = lower(v_token.email) AND u.user_id <> v_token.user_id;
    IF v_holder.email_verified_at IS NOT NULL THEN
        RAISE EXCEPTION 'another account has verified the address "%"', v_token.email USING
            ERRCODE = '23505', CONSTRAINT = 'users_email_key', COLUMN = 'email';
    ELSIF v_holder.user_id IS NOT NULL THEN
        PERFORM core.release_unverified_account(v_holder.user_id, v_token.user_id);
    END IF;
    UPDATE core.users AS u SET email = v_token.email, email_verified_at = v_now
     WHERE u.user_id = v_token.user_id;
    UPDATE core.email_verifications AS v SET used_at = v_now
     WHERE v.user_id = v_token.user_id AND v.used_at IS NULL;
    IF v_holder.user_id IS NOT NULL THEN
        PERFORM core.revoke_released_account_sessions(v_holder.user_id);
    END IF;
    PERFORM core.on_auth_event('email_verified', v_token.user_id, NULL, jsonb_build_object('email', v_token.email));
    user_id := v_token.user_id;
    email := v_token.email;
    email_verified_at := v_now;
    RETURN NEXT;
END
$$;

-- Send a new verification token for the address p_email, to the newest unverified
-- account that holds or claims it; the older tokens stop working. Returns whether a mail
-- was queued: the API does not tell the caller, so nobody learns which addresses have
-- accounts. (Rate limited by the API's anonymous limit.)
CREATE OR REPLACE FUNCTION auth.resend_verification(p_email text, p_token text)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_user core.users;
    v_email text;
BEGIN
    SELECT * INTO v_user FROM core.users AS u
     WHERE u.status = 'active' AND u.email_verified_at IS NULL
       AND (lower(u.email) = lower(p_email)
            OR (u.email IS NULL AND EXISTS (SELECT 1 FROM core.email_verifications AS v
                                             WHERE v.user_id = u.user_id AND lower(v.email) = lower(p_email))))
     ORDER BY u.created_at DESC
     LIMIT 1;
    IF v_user.user_id IS NULL THEN
        RETURN false;
    END IF;
    v_email := COALESCE(v_user.email, (SELECT v.email FROM core.email_verifications AS v
                                        WHERE v.user_id = v_user.user_id AND lower(v.email) = lower(p_email)
                                        ORDER BY v.created_at DESC LIMIT 1));
    PERFORM core.issue_email_verification(v_user.user_id, v_email, v_user.name, p_token);
    RETURN true;
END
$$;

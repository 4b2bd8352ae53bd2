-- 0005 accounts: password reset tokens, the limits of a session, and mail that delivery
-- gave up on.
--
-- A session now ends at the first of three limits, each fixed when the session opens
-- (from the settings session_idle_minutes, session_max_hours, refresh_days):
--   idle      no request and no refresh for `idle_timeout` (last_seen_at + idle_timeout)
--   absolute  `absolute_expires_at`, the login's hard end, whatever the activity
--   refresh   `refresh_expires_at`, the lifetime of the session's newest refresh token
-- `expires_at` (0002) is kept equal to the earliest of the three by the functions that
-- open, refresh and use a session (140_sessions.sql), so every reader that asks
-- `expires_at > now()` applies all three limits.

----------------------------------------------------------------------------------------
-- password resets: single-use, short-lived tokens sent by mail (stored hashed)
----------------------------------------------------------------------------------------
-- Global like the users they belong to: a reference table on Citus. Resets are rare
-- next to requests (docs/citus.md, fact 21), and each request for one is capped per
-- account (180_accounts.sql).
CREATE TABLE core.password_resets (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES core.users (user_id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,  -- spent (or voided when another token of the user was used)
    CONSTRAINT password_resets_expire_after_creation CHECK (expires_at > created_at)
);
COMMENT ON TABLE core.password_resets IS
    'Password reset tokens (SHA-256 only): single-use, expire within the hour, at most a few per hour per user.';
CREATE INDEX password_resets_user_idx ON core.password_resets (user_id, created_at);
SELECT core.make_reference_table('core.password_resets');

----------------------------------------------------------------------------------------
-- sessions: idle timeout, absolute maximum and refresh lifetime
----------------------------------------------------------------------------------------
-- (one change per ALTER TABLE: Citus propagates DDL statements one at a time, fact 19)
ALTER TABLE core.sessions ADD COLUMN last_seen_at timestamptz;
ALTER TABLE core.sessions ADD COLUMN idle_timeout interval;
ALTER TABLE core.sessions ADD COLUMN absolute_expires_at timestamptz;
ALTER TABLE core.sessions ADD COLUMN refresh_expires_at timestamptz;

-- Sessions opened before this revision get the default limits (30 minutes idle, 10
-- hours at most; their refresh lifetime stays what it was): a stricter contract that
-- may end some of them at once, which is the point. (Run as the owner, with row level
-- security lifted while it runs: FORCE would hide every row from an owner that is not a
-- superuser; `tenantry db migrate` forces it again, policies/core_sessions.sql.)
ALTER TABLE core.sessions NO FORCE ROW LEVEL SECURITY;
-- (timestamptz + interval is STABLE, and Citus refuses STABLE functions over columns in
-- an UPDATE of a distributed table: the sums are done in UTC timestamps, which is
-- IMMUTABLE and exact for these fixed-length intervals; docs/citus.md, fact 14)
UPDATE core.sessions SET
    last_seen_at = last_refreshed_at,
    idle_timeout = interval '30 minutes',
    absolute_expires_at = LEAST(expires_at, ((created_at AT TIME ZONE 'UTC') + interval '10 hours') AT TIME ZONE 'UTC'),
    refresh_expires_at = expires_at;
UPDATE core.sessions SET
    expires_at = LEAST(absolute_expires_at, refresh_expires_at,
                       ((last_seen_at AT TIME ZONE 'UTC') + idle_timeout) AT TIME ZONE 'UTC');
ALTER TABLE core.sessions FORCE ROW LEVEL SECURITY;

ALTER TABLE core.sessions ALTER COLUMN last_seen_at SET DEFAULT now();
ALTER TABLE core.sessions ALTER COLUMN last_seen_at SET NOT NULL;
ALTER TABLE core.sessions ALTER COLUMN idle_timeout SET NOT NULL;
ALTER TABLE core.sessions ALTER COLUMN absolute_expires_at SET NOT NULL;
ALTER TABLE core.sessions ALTER COLUMN refresh_expires_at SET NOT NULL;
ALTER TABLE core.sessions
    ADD CONSTRAINT sessions_idle_timeout_positive CHECK (idle_timeout > interval '0');
-- expires_at is the earliest limit: never later than any of them
ALTER TABLE core.sessions
    ADD CONSTRAINT sessions_expiry_within_limits CHECK (
        expires_at <= absolute_expires_at AND expires_at <= refresh_expires_at
        AND expires_at <= last_seen_at + idle_timeout);

-- new reasons a session ends: the user's password was changed (other sessions) or reset (all)
ALTER TABLE core.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE core.sessions
    ADD CONSTRAINT sessions_revoked_reason_check CHECK (revoked_reason IN (
        'logout', 'revoked', 'revoked_all', 'refresh_reuse', 'password_changed', 'password_reset'));

----------------------------------------------------------------------------------------
-- mail outbox: messages given up (too many failed attempts, or refused for good)
----------------------------------------------------------------------------------------
ALTER TABLE core.mail_outbox ADD COLUMN given_up_at timestamptz;
ALTER TABLE core.mail_outbox
    ADD CONSTRAINT mail_outbox_sent_or_given_up CHECK (sent_at IS NULL OR given_up_at IS NULL);
-- what the deliverer scans: mail neither sent nor given up, whose next attempt is due
DROP INDEX core.mail_outbox_due_idx;
CREATE INDEX mail_outbox_due_idx ON core.mail_outbox (next_attempt_at) WHERE sent_at IS NULL AND given_up_at IS NULL;

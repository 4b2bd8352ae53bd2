-- 0005 accounts, undone.
DROP INDEX core.mail_outbox_due_idx;
CREATE INDEX mail_outbox_due_idx ON core.mail_outbox (next_attempt_at) WHERE sent_at IS NULL;
ALTER TABLE core.mail_outbox DROP CONSTRAINT mail_outbox_sent_or_given_up;
ALTER TABLE core.mail_outbox DROP COLUMN given_up_at;
ALTER TABLE core.sessions NO FORCE ROW LEVEL SECURITY;  -- the owner sees every row (see the up file)
UPDATE core.sessions SET revoked_reason = 'revoked_all' WHERE revoked_reason IN ('password_changed', 'password_reset');
ALTER TABLE core.sessions FORCE ROW LEVEL SECURITY;
ALTER TABLE core.sessions DROP CONSTRAINT sessions_revoked_reason_check;
ALTER TABLE core.sessions
    ADD CONSTRAINT sessions_revoked_reason_check CHECK (revoked_reason IN ('logout', 'revoked', 'revoked_all', 'refresh_reuse'));
ALTER TABLE core.sessions DROP CONSTRAINT sessions_expiry_within_limits;
ALTER TABLE core.sessions DROP CONSTRAINT sessions_idle_timeout_positive;
ALTER TABLE core.sessions DROP COLUMN refresh_expires_at;
ALTER TABLE core.sessions DROP COLUMN absolute_expires_at;
ALTER TABLE core.sessions DROP COLUMN idle_timeout;
ALTER TABLE core.sessions DROP COLUMN last_seen_at;
DROP TABLE core.password_resets CASCADE;

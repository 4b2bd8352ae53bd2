-- 0004 identity: email verification. An account proves its address with a single-use
-- token mailed to it (queued in core.mail_outbox, 0003): core.users.email_verified_at
-- records when, and core.email_verifications holds the tokens (their SHA-256 only,
-- expiring, single-use) with the address each one proves. The rules are in
-- sql/repeatable/170_verification.sql: an unverified account may use its own tenant but
-- join no other, and a verified sign-up of the same address replaces it.
--
-- For that, an account may be without an address: a sign-up of an address that an
-- unverified account holds waits for it (its token names the address) and takes it
-- when verified; the replaced account loses it. A verified account always has one.
--
-- Accounts made before this revision start unverified: nothing proved their address
-- (they verify through POST /v1/auth/verify-email/resend).
--
-- core.email_verifications is a reference table on Citus, like core.users: a global
-- identity's rows with no tenant. Verifications are rare (a sign-up, a resend), so the
-- cost of writing to every node (docs/citus.md, fact 21) is accepted, as for the mail
-- outbox. (One constraint per ALTER TABLE: docs/citus.md, fact 19.)

ALTER TABLE core.users ADD COLUMN email_verified_at timestamptz;
ALTER TABLE core.users ALTER COLUMN email DROP NOT NULL;
ALTER TABLE core.users
    ADD CONSTRAINT users_verified_has_email CHECK (email_verified_at IS NULL OR email IS NOT NULL);
COMMENT ON COLUMN core.users.email_verified_at IS
    'When the account proved its address (NULL: unverified; it may join no tenant by invitation).';

CREATE TABLE core.email_verifications (
    token_hash  bytea PRIMARY KEY CHECK (length(token_hash) = 32),
    user_id     uuid NOT NULL REFERENCES core.users (user_id),
    email       text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(email) <= 254),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz  -- set when verified, or when a newer token replaces it
);
COMMENT ON TABLE core.email_verifications IS
    'Email verification tokens (SHA-256 only): single-use, expiring; the address each one proves.';
CREATE INDEX email_verifications_user_idx ON core.email_verifications (user_id);
CREATE INDEX email_verifications_email_idx ON core.email_verifications (lower(email));
SELECT core.make_reference_table('core.email_verifications');

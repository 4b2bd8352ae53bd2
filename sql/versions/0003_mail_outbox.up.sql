-- 0003 mail outbox: mail the platform sends (email verification, invitations, password
-- resets) is written here in the same transaction as the change that causes it, and
-- delivered afterwards by `tenantry mail deliver` (later: a job), so a rolled-back
-- change sends nothing and a committed one is never lost.
--
-- Not a tenant table: a sign-up's verification mail has no tenant yet. It is a reference
-- table on Citus (written from the coordinator and from workers alike); mail is rare
-- next to requests, so the cost of writing to every node (docs/citus.md, fact 21) is
-- accepted here. A message's body data (which may hold a single-use token) is cleared
-- once it is delivered.

CREATE TABLE core.mail_outbox (
    mail_id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    to_address       text NOT NULL CHECK (to_address ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND length(to_address) <= 254),
    template         text NOT NULL CHECK (template ~ '^[a-z][a-z_]*$'),
    data             jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(data) = 'object'),
    created_at       timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    last_error       text
);
COMMENT ON TABLE core.mail_outbox IS
    'Mail to send, written in the transaction that causes it; delivered by tenantry mail deliver.';
-- what the deliverer scans: unsent mail whose next attempt is due
CREATE INDEX mail_outbox_due_idx ON core.mail_outbox (next_attempt_at) WHERE sent_at IS NULL;
SELECT core.make_reference_table('core.mail_outbox');

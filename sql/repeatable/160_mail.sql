-- Mail: the one way SQL queues a message. Callers are SECURITY DEFINER functions that
-- build the message from rows they have checked (an invitation, a verification or
-- reset token they created); no application role may queue mail directly, so a holder
-- of the API role's connection cannot send arbitrary mail to arbitrary addresses.

----------------------------------------------------------------------------------------
-- queueing
----------------------------------------------------------------------------------------

-- Queue one message; the deliverer renders `template` with `data` (see jobs/mail.py).
CREATE OR REPLACE FUNCTION core.enqueue_mail(p_to text, p_template text, p_data jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO core.mail_outbox (to_address, template, data)
    VALUES (p_to, p_template, COALESCE(p_data, '{}'::jsonb))
    RETURNING mail_id
$$;

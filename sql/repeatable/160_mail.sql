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

----------------------------------------------------------------------------------------
-- delivery: the worker role's functions (`tenantry mail deliver`, jobs/mail.py)
----------------------------------------------------------------------------------------
-- A message is claimed for one attempt, sent, then marked sent or failed, each step its
-- own short transaction: no transaction stays open while a mail server is talked to.
-- Delivery is at least once: a deliverer that dies between sending and marking leaves
-- the message to be sent again when its claim runs out.

-- Claim up to p_limit messages that are due, oldest first, for one delivery attempt.
-- Rows another deliverer is claiming are skipped (FOR UPDATE SKIP LOCKED), and a claimed
-- message is not due again for p_lease: long enough to send it and mark it.
CREATE OR REPLACE FUNCTION ops.claim_mail(p_limit integer DEFAULT 20, p_lease interval DEFAULT '5 minutes')
RETURNS TABLE (mail_id uuid, to_address text, template text, data jsonb, attempts integer, created_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
    v_ids uuid[] := '{}';
    v_id uuid;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 1000 THEN
        RAISE EXCEPTION 'a batch is 1 to 1000 messages, not %', p_limit USING ERRCODE = '22023', COLUMN = 'limit';
    END IF;
    IF NOT p_lease > interval '0' THEN
        RAISE EXCEPTION 'the lease must be a positive interval' USING ERRCODE = '22023', COLUMN = 'lease';
    END IF;
    FOR v_id IN
        SELECT m.mail_id FROM core.mail_outbox AS m
         WHERE m.sent_at IS NULL AND m.given_up_at IS NULL AND m.next_attempt_at <= v_now
         ORDER BY m.next_attempt_at, m.created_at
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        v_ids := v_ids || v_id;
    END LOOP;
    RETURN QUERY
        UPDATE core.mail_outbox AS m SET next_attempt_at = v_now + p_lease
         WHERE m.mail_id = ANY (v_ids)
        RETURNING m.mail_id, m.to_address, m.template, m.data, m.attempts, m.created_at;
END
$$;

-- A claimed message was delivered: it is done, and its data (which may hold a
-- single-use token) is cleared. False if it was not waiting (already marked).
CREATE OR REPLACE FUNCTION ops.mark_mail_sent(p_mail_id uuid)
RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := now();
BEGIN
    UPDATE core.mail_outbox AS m SET
        sent_at = v_now, attempts = m.attempts + 1, data = '{}'::jsonb, last_error = NULL
     WHERE m.mail_id = p_mail_id AND m.sent_at IS NULL AND m.given_up_at IS NULL;
    RETURN FOUND;
END
$$;

-- A delivery attempt failed with p_error. The message is tried again after a backoff
-- (1 minute after the first failure, doubling up to 6 hours), or given up after
-- p_max_attempts attempts, or at once when the failure is permanent (p_give_up: the
-- server refused the recipient): a given-up message (given_up_at, 0005) is never
-- claimed again, its data is cleared, and last_error says why. Returns nothing if the
-- message was not waiting.
CREATE OR REPLACE FUNCTION ops.mark_mail_failed(p_mail_id uuid, p_error text, p_give_up boolean DEFAULT false,
                                                p_max_attempts integer DEFAULT 8)
RETURNS TABLE (attempts integer, next_attempt_at timestamptz, given_up boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_mail core.mail_outbox;
    v_now timestamptz := now();
    v_next timestamptz;
    v_data jsonb;
    v_error text;
    v_given_up_at timestamptz;
BEGIN
    IF p_max_attempts IS NULL OR p_max_attempts < 1 THEN
        RAISE EXCEPTION 'max attempts must be at least 1' USING ERRCODE = '22023', COLUMN = 'max_attempts';
    END IF;
    SELECT * INTO v_mail FROM core.mail_outbox AS m
     WHERE m.mail_id = p_mail_id AND m.sent_at IS NULL AND m.given_up_at IS NULL
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    attempts := v_mail.attempts + 1;
    given_up := COALESCE(p_give_up, false) OR attempts >= p_max_attempts;
    -- computed here, not in the UPDATE (docs/citus.md, fact 14)
    v_next := CASE WHEN given_up THEN v_now
                   ELSE v_now + LEAST(interval '6 hours', interval '1 minute' * power(2, attempts - 1)) END;
    v_given_up_at := CASE WHEN given_up THEN v_now END;
    v_data := CASE WHEN given_up THEN '{}'::jsonb ELSE v_mail.data END;
    v_error := left(CASE WHEN given_up THEN format('gave up after %s attempt(s): ', attempts) ELSE '' END
                    || COALESCE(p_error, 'unknown error'), 2000);
    UPDATE core.mail_outbox AS m SET
        attempts = mark_mail_failed.attempts,
        next_attempt_at = v_next,
        given_up_at = v_given_up_at,
        data = v_data,
        last_error = v_error
     WHERE m.mail_id = p_mail_id;
    next_attempt_at := v_next;
    RETURN NEXT;
END
$$;

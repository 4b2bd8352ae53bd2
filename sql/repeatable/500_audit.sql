-- Audit: the immutable record of who changed what (tables: sql/versions/0010_audit.up.sql).
--
-- * Row changes: one generic AFTER INSERT/UPDATE/DELETE row trigger, core.audit_row_change,
--   attached by the loop at the end of this file to every tenant table but the ones
--   core.audit_excluded_tables() names with a reason. It writes one audit row in the
--   same transaction: the context's actor, request id and client address (SET LOCAL
--   app.*: a definer trigger on the shard sees them, docs/citus.md, fact 10), the row's
--   key, and the changed columns ({col: [old, new]}; the row for inserts and deletes).
--   Updates that change only bookkeeping columns (core.audit_ignored_columns) write
--   nothing. Secret columns (core.audit_redacts: hashes, secrets, tokens, passwords,
--   ciphertext; `tenantry db lint` checks every bytea column is one) are never copied:
--   an update shows "[redacted]" for them, an insert or delete leaves them out.
-- * Application events with no row change (login, failed login, lockout, session
--   revoked, export run, platform-admin actions): core.audit_event.
-- * Immutable: no role has UPDATE or TRUNCATE on the audit tables, only the owner keeps
--   DELETE (for the erase hook below), and core.refuse_audit_change raises TL001 for any
--   UPDATE, DELETE or TRUNCATE that gets past the privileges (the owner, a superuser).
--   The only removal is ops.drop_expired_audit_partitions (whole monthly partitions,
--   audited). Erase hook for GDPR (issue 14): a DELETE of a tenant's rows passes only in
--   a transaction that set `SET LOCAL tenantry.erasing_tenant = '<tenant id>'`, for
--   that tenant's rows, run as tenantry_owner (a definer function of the erase feature;
--   on Citus, with citus.propagate_set_commands = 'local', as the trigger runs on the
--   shards); the privileges and the immutability are in policies/core_audit_log.sql.
-- * Tamper evidence: ops.seal_audit seals each tenant's rows into a hash chain
--   (core.audit_seals), core.verify_audit recomputes it and names the first row or seal
--   that no longer matches. Ordering and the epoch lock: see 0010_audit.up.sql.

----------------------------------------------------------------------------------------
-- the rules: what is audited, what is never copied
----------------------------------------------------------------------------------------

-- The client address of the request (SET LOCAL app.client_ip by db/context.py), or NULL.
CREATE OR REPLACE FUNCTION core.current_client_ip()
RETURNS inet
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT NULLIF(pg_catalog.current_setting('app.client_ip', true), '')::pg_catalog.inet $$;

-- Whether a column holds a secret that the audit log never copies: its name says hash,
-- secret, token, password, ciphertext or private key. `tenantry db lint` checks that
-- every bytea column of an audited table is one (hashes and ciphertext are bytea).
CREATE OR REPLACE FUNCTION core.audit_redacts(p_column text)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT p_column ~ '(hash|secret|token|password|ciphertext|private_key)' $$;

-- Columns whose change alone is bookkeeping, not an event: timestamps and versions the
-- triggers raise, and an API key's use (written on every request it authenticates).
CREATE OR REPLACE FUNCTION core.audit_ignored_columns()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ARRAY['updated_at', 'row_version', 'last_used_at', 'last_used_ip', 'use_count', 'last_seen_at'] $$;

-- The tenant tables the row trigger is not attached to, each with the reason. Every
-- other tenant table is audited (the loop below; `tenantry db lint` checks it).
CREATE OR REPLACE FUNCTION core.audit_excluded_tables()
RETURNS TABLE (table_name text, reason text)
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    VALUES
        ('core.audit_log', 'the audit log itself'),
        ('core.audit_heads', 'the seal chain''s head (written by the sealer only)'),
        ('core.audit_seals', 'the seal chain (insert-only, verified by core.verify_audit)'),
        ('core.platform_admin_actions', 'recorded as admin.<action> events by its own trigger (core.audit_admin_action)'),
        ('core.sessions', 'touched on every request and refresh; login, logout and revocation are audited as events'),
        ('core.refresh_tokens', 'rotated on every refresh (bookkeeping of sessions); reuse is audited as an event'),
        ('core.idempotency_keys', 'request bookkeeping: stored responses of retried requests, swept after 24 hours'),
        ('core.quota_counters', 'bookkeeping moved by every counted write (the write itself is audited)'),
        ('core.quota_reservations', 'metering holds, high volume like usage events'),
        ('core.usage_events', 'usage metering: high volume, itself an insert-only record'),
        ('core.usage_event_ids', 'usage metering: de-duplication of event ids'),
        ('core.usage_pending', 'usage metering: the rollup queue'),
        ('core.usage_rollups', 'usage metering: aggregates of the events'),
        ('core.usage_rollup_values', 'usage metering: aggregates of the events'),
        ('core.outbox_events', 'webhooks: the outbox of events derived from audited changes'),
        ('core.webhook_deliveries', 'webhooks: delivery bookkeeping, one row per event and endpoint'),
        ('core.webhook_attempts', 'webhooks: delivery attempts, high volume')
$$;

-- The advisory lock key of a tenant's audit epoch (see 0010_audit.up.sql): writers hold
-- it shared until commit, the sealer exclusively.
CREATE OR REPLACE FUNCTION core.audit_lock_key(p_tenant_id uuid)
RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT hashtextextended('tenantry.audit:' || p_tenant_id::text, 0) $$;

----------------------------------------------------------------------------------------
-- writing audit rows
----------------------------------------------------------------------------------------

-- BEFORE INSERT on core.audit_log (it runs on the tenant's shard): take the tenant's
-- audit lock shared (held until commit, so a seal waits for this transaction) and stamp
-- the row with the tenant's open epoch; the tenant's head row is made by its first row.
-- Definer: it reads and creates the head whoever writes.
CREATE OR REPLACE FUNCTION core.stamp_audit_row()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_epoch bigint;
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock_shared(core.audit_lock_key(NEW.tenant_id));
    SELECT h.open_epoch INTO v_epoch FROM core.audit_heads AS h WHERE h.tenant_id = NEW.tenant_id;
    IF v_epoch IS NULL THEN
        INSERT INTO core.audit_heads (tenant_id) VALUES (NEW.tenant_id) ON CONFLICT DO NOTHING;
        SELECT h.open_epoch INTO v_epoch FROM core.audit_heads AS h WHERE h.tenant_id = NEW.tenant_id;
    END IF;
    NEW.epoch := v_epoch;
    RETURN NEW;
END
$$;

-- Record an application event (no row change) in the tenant's audit trail: p_action
-- like 'login', 'login_failed', 'audit.export'. The actor, request id and client address
-- come from the context unless given (an auth event before login names its user).
-- Invoker rights: the api role records its own tenant's events (RLS: INSERT only, for the
-- context's tenant); definer callers (auth.*, triggers) record any tenant's.
CREATE OR REPLACE FUNCTION core.audit_event(
    p_tenant_id uuid, p_action text, p_details jsonb DEFAULT NULL,
    p_actor_id uuid DEFAULT NULL, p_actor_type text DEFAULT NULL
)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- variables first: no function calls inside INSERT ... VALUES on Citus (fact 15)
    v_actor_id uuid := COALESCE(p_actor_id, core.current_actor_id());
    v_actor_type text := COALESCE(p_actor_type, core.current_actor_type());
    v_request_id text := core.current_request_id();
    v_ip inet := core.current_client_ip();
BEGIN
    INSERT INTO core.audit_log (tenant_id, actor_id, actor_type, request_id, ip, action, details)
    VALUES (p_tenant_id, v_actor_id, v_actor_type, v_request_id, v_ip, p_action, p_details);
END
$$;

-- AFTER INSERT OR UPDATE OR DELETE FOR EACH ROW on every audited tenant table. Its
-- arguments (set by the loop below from the catalog) are the table's key columns, its
-- secret columns and its name, so no row pays a catalog lookup. Definer: the api role has no
-- INSERT on the log beyond its own events; on the shard it sees the SET LOCAL context
-- (docs/citus.md, fact 10).
CREATE OR REPLACE FUNCTION core.audit_row_change()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_keys text[] := string_to_array(TG_ARGV[0], ',');
    v_secret text[] := COALESCE(string_to_array(NULLIF(TG_ARGV[1], ''), ','), '{}');
    v_new jsonb;
    v_old jsonb;
    v_row jsonb;
    v_changes jsonb;
    v_key jsonb;
    v_action text := lower(TG_OP);
    -- the table's name from the attach loop: on Citus the trigger fires on a shard, whose
    -- TG_TABLE_NAME is projects_102008
    v_table text := TG_ARGV[2];
    v_tenant uuid;
    v_actor_id uuid := core.current_actor_id();
    v_actor_type text := core.current_actor_type();
    v_request_id text := core.current_request_id();
    v_ip inet := core.current_client_ip();
BEGIN
    IF TG_OP = 'UPDATE' THEN
        v_new := to_jsonb(NEW);
        v_old := to_jsonb(OLD);
        SELECT jsonb_object_agg(n.key, CASE WHEN n.key = ANY (v_secret) THEN '"[redacted]"'::jsonb
                                            ELSE jsonb_build_array(o.value, n.value) END)
          INTO v_changes
          FROM jsonb_each(v_new) AS n
          JOIN jsonb_each(v_old) AS o ON o.key = n.key
         WHERE n.value IS DISTINCT FROM o.value AND n.key <> ALL (core.audit_ignored_columns());
        IF v_changes IS NULL THEN
            RETURN NULL;  -- only bookkeeping changed: no event
        END IF;
        v_row := v_new;
    ELSIF TG_OP = 'INSERT' THEN
        v_row := to_jsonb(NEW);
        v_changes := (v_row - v_secret) - 'tenant_id';
    ELSE
        v_row := to_jsonb(OLD);
        v_changes := (v_row - v_secret) - 'tenant_id';
    END IF;
    v_tenant := (v_row ->> 'tenant_id')::uuid;
    SELECT jsonb_object_agg(k, v_row -> k) INTO v_key FROM unnest(v_keys) AS k;
    INSERT INTO core.audit_log (tenant_id, actor_id, actor_type, request_id, ip, action, table_name, row_key, changes)
    VALUES (v_tenant, v_actor_id, v_actor_type, v_request_id, v_ip, v_action, v_table, v_key, v_changes);
    RETURN NULL;
END
$$;

-- AFTER INSERT on core.platform_admin_actions: a platform administrator's action is
-- audited in the tenant it was taken on, as admin.<action> (admin.suspend,
-- admin.set_plan, ...) with the administrator as the actor.
CREATE OR REPLACE FUNCTION core.audit_admin_action()
RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.audit_event(NEW.tenant_id, 'admin.' || NEW.action,
                             jsonb_build_object('action_id', NEW.action_id, 'details', NEW.details),
                             NEW.admin_user_id, 'platform_admin');
    RETURN NULL;
END
$$;

-- Authentication events (140_sessions.sql calls this hook): recorded in the event's
-- tenant, or, for an event of an account before login (failed login, lockout, password
-- reset), in every tenant the user belongs to. A failed login or lockout is by an
-- anonymous client (the user it names is in details); a login by the user.
-- Only these events: the others (email verification, reset requests) are followed by
-- writes to reference tables, which Citus refuses after this multi-shard read
-- (docs/citus.md, fact 17). auth.record_login_failure's outcome is committed although
-- the login is refused (the API commits, then answers), so the audit row is too.
CREATE OR REPLACE FUNCTION core.on_auth_event(p_event text, p_user_id uuid, p_tenant_id uuid, p_detail jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant uuid;
    v_details jsonb := COALESCE(p_detail, '{}'::jsonb) || jsonb_build_object('user_id', p_user_id);
    v_actor_type text := CASE WHEN p_event IN ('login_failed', 'account_locked', 'account_under_attack')
                              THEN 'anonymous' ELSE 'user' END;
    v_actor_id uuid := CASE WHEN v_actor_type = 'user' THEN p_user_id END;
BEGIN
    IF p_event NOT IN ('login', 'login_failed', 'account_locked', 'account_under_attack', 'refresh_reuse',
                       'session_revoked', 'password_changed', 'password_reset') THEN
        RETURN;
    END IF;
    IF p_tenant_id IS NOT NULL THEN
        PERFORM core.audit_event(p_tenant_id, p_event, v_details, v_actor_id, v_actor_type);
        RETURN;
    END IF;
    FOR v_tenant IN SELECT m.tenant_id FROM core.memberships AS m WHERE m.user_id = p_user_id ORDER BY 1 LOOP
        PERFORM core.audit_event(v_tenant, p_event, v_details, v_actor_id, v_actor_type);
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- immutability
----------------------------------------------------------------------------------------

-- BEFORE UPDATE OR DELETE (each row) and BEFORE TRUNCATE on the audit log, its
-- partitions and the seals: refuse with TL001, whoever asks. The one exception is the
-- erase hook (see the top of this file).
CREATE OR REPLACE FUNCTION core.refuse_audit_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_LEVEL = 'ROW' AND current_user = 'tenantry_owner' THEN
        IF OLD.tenant_id::text = current_setting('tenantry.erasing_tenant', true) THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'the audit log is immutable: % on % is refused', TG_OP, TG_TABLE_NAME USING
        ERRCODE = 'TL001',
        HINT = 'Audit rows are never changed or deleted; retention drops whole months (ops.drop_expired_audit_partitions).';
END
$$;

-- BEFORE UPDATE on core.audit_heads (on the tenant's shard): the sealer takes the
-- tenant's audit lock exclusively, so every transaction that wrote in the open epoch
-- has ended, and new writers wait until the seal commits.
CREATE OR REPLACE FUNCTION core.lock_audit_head()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_catalog.pg_advisory_xact_lock(core.audit_lock_key(NEW.tenant_id));
    RETURN NEW;
END
$$;

DROP TRIGGER IF EXISTS stamp_audit_row ON core.audit_log;
CREATE TRIGGER stamp_audit_row BEFORE INSERT ON core.audit_log
    FOR EACH ROW EXECUTE FUNCTION core.stamp_audit_row();
DROP TRIGGER IF EXISTS refuse_audit_change ON core.audit_log;
CREATE TRIGGER refuse_audit_change BEFORE UPDATE OR DELETE ON core.audit_log
    FOR EACH ROW EXECUTE FUNCTION core.refuse_audit_change();
DROP TRIGGER IF EXISTS refuse_audit_truncate ON core.audit_log;
CREATE TRIGGER refuse_audit_truncate BEFORE TRUNCATE ON core.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION core.refuse_audit_change();
DROP TRIGGER IF EXISTS refuse_audit_change ON core.audit_seals;
CREATE TRIGGER refuse_audit_change BEFORE UPDATE OR DELETE ON core.audit_seals
    FOR EACH ROW EXECUTE FUNCTION core.refuse_audit_change();
DROP TRIGGER IF EXISTS refuse_audit_truncate ON core.audit_seals;
CREATE TRIGGER refuse_audit_truncate BEFORE TRUNCATE ON core.audit_seals
    FOR EACH STATEMENT EXECUTE FUNCTION core.refuse_audit_change();
DROP TRIGGER IF EXISTS lock_audit_head ON core.audit_heads;
CREATE TRIGGER lock_audit_head BEFORE UPDATE ON core.audit_heads
    FOR EACH ROW EXECUTE FUNCTION core.lock_audit_head();
DROP TRIGGER IF EXISTS audit_admin_action ON core.platform_admin_actions;
CREATE TRIGGER audit_admin_action AFTER INSERT ON core.platform_admin_actions
    FOR EACH ROW EXECUTE FUNCTION core.audit_admin_action();

----------------------------------------------------------------------------------------
-- sealing: the per-tenant hash chain
----------------------------------------------------------------------------------------

-- The canonical text of an audit row: every column, NULLs told from empty text, times
-- as exact epoch seconds and jsonb in its normalized text, so the same row always gives
-- the same bytes whatever the session's TimeZone or DateStyle.
-- Columns, not the row type: on Citus a query over core.audit_log runs on its shards,
-- whose rows are of each shard's own type (core.audit_log_102982), not core.audit_log.
CREATE OR REPLACE FUNCTION core.audit_canonical(
    p_tenant_id uuid, p_audit_id bigint, p_epoch bigint, p_occurred_at timestamptz, p_actor_id uuid,
    p_actor_type text, p_request_id text, p_ip inet, p_action text, p_table_name text,
    p_row_key jsonb, p_changes jsonb, p_details jsonb
)
RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT concat_ws(',', quote_nullable(p_tenant_id::text), p_audit_id::text, p_epoch::text,
                     extract(epoch FROM p_occurred_at)::text, quote_nullable(p_actor_id::text),
                     quote_nullable(p_actor_type), quote_nullable(p_request_id),
                     quote_nullable(host(p_ip)), quote_nullable(p_action), quote_nullable(p_table_name),
                     quote_nullable(p_row_key::text), quote_nullable(p_changes::text),
                     quote_nullable(p_details::text))
$$;

-- A seal's hash: sha256(prev_hash || its header || the digests of its rows in order).
CREATE OR REPLACE FUNCTION core.audit_seal_hash(
    p_prev_hash bytea, p_tenant_id uuid, p_seal_no bigint, p_row_count integer, p_digests bytea
)
RETURNS bytea
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT sha256(COALESCE(p_prev_hash, ''::bytea)
                  || convert_to(format('tenantry.audit.seal|%s|%s|%s|', p_tenant_id, p_seal_no, p_row_count), 'UTF8')
                  || p_digests)
$$;

-- Seal one tenant: close its open epoch (the head's update takes the tenant's audit lock
-- exclusively: every transaction that wrote in it has ended), then seal the rows of
-- closed epochs after the last seal, in (epoch, audit_id) order, p_cap rows per seal, at
-- most p_max_rows in this call. Every statement names the tenant (router statements on
-- Citus); two sealers of one tenant queue on the head row, and the second continues
-- where the first ended (the head it updates is the first's committed one), so the chain
-- never forks. Returns the rows sealed.
CREATE OR REPLACE FUNCTION core.seal_audit_tenant(p_tenant_id uuid, p_max_rows integer, p_cap integer)
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_head core.audit_heads;
    v_now timestamptz := now();
    v_batch record;
    v_done integer := 0;
    v_hash bytea;
BEGIN
    UPDATE core.audit_heads AS h SET open_epoch = h.open_epoch + 1, updated_at = v_now
     WHERE h.tenant_id = p_tenant_id
    RETURNING h.* INTO v_head;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    WHILE v_done < p_max_rows LOOP
        SELECT count(*)::integer AS n,
               array_agg(s.audit_id ORDER BY s.epoch, s.audit_id) AS ids,
               string_agg(s.digest, ''::bytea ORDER BY s.epoch, s.audit_id) AS digests,
               (array_agg(s.epoch ORDER BY s.epoch, s.audit_id))[1] AS first_epoch,
               (array_agg(s.audit_id ORDER BY s.epoch, s.audit_id))[1] AS first_id,
               (array_agg(s.epoch ORDER BY s.epoch DESC, s.audit_id DESC))[1] AS last_epoch,
               (array_agg(s.audit_id ORDER BY s.epoch DESC, s.audit_id DESC))[1] AS last_id,
               min(s.occurred_at) AS min_at, max(s.occurred_at) AS max_at
          INTO v_batch
          FROM (SELECT a.epoch, a.audit_id, a.occurred_at,
                       sha256(convert_to(core.audit_canonical(a.tenant_id, a.audit_id, a.epoch, a.occurred_at, a.actor_id, a.actor_type, a.request_id, a.ip,
                                                           a.action, a.table_name, a.row_key, a.changes, a.details), 'UTF8')) AS digest
                  FROM core.audit_log AS a
                 WHERE a.tenant_id = p_tenant_id
                   AND (a.epoch, a.audit_id) > (v_head.sealed_epoch, v_head.sealed_audit_id)
                   AND a.epoch < v_head.open_epoch
                 ORDER BY a.epoch, a.audit_id
                 LIMIT LEAST(p_cap, p_max_rows - v_done)) AS s;
        EXIT WHEN v_batch.n = 0;
        v_hash := core.audit_seal_hash(v_head.last_hash, p_tenant_id, v_head.seal_no + 1, v_batch.n, v_batch.digests);
        INSERT INTO core.audit_seals (tenant_id, seal_no, first_epoch, first_audit_id, last_epoch, last_audit_id,
                                      row_count, audit_ids, digests, min_occurred_at, max_occurred_at,
                                      prev_hash, hash, sealed_at)
        VALUES (p_tenant_id, v_head.seal_no + 1, v_batch.first_epoch, v_batch.first_id, v_batch.last_epoch,
                v_batch.last_id, v_batch.n, v_batch.ids, v_batch.digests, v_batch.min_at, v_batch.max_at,
                v_head.last_hash, v_hash, v_now);
        UPDATE core.audit_heads AS h SET seal_no = v_head.seal_no + 1, sealed_epoch = v_batch.last_epoch,
               sealed_audit_id = v_batch.last_id, last_hash = v_hash, updated_at = v_now
         WHERE h.tenant_id = p_tenant_id
        RETURNING h.* INTO v_head;
        v_done := v_done + v_batch.n;
    END LOOP;
    RETURN v_done;
END
$$;

-- The sealing job (tenantry audit seal; the worker's seal_audit): every tenant with
-- unsealed rows (or only p_tenant_id), one after the other in this transaction, at most
-- p_max_rows rows each, p_cap rows per seal. A tenant whose writers hold its audit lock
-- past the lock timeout is skipped this time (busy) rather than making them wait: the
-- seal must never be what fails a request. The tenants are found by a multi-shard read
-- without locks; each seal then locks one tenant's head (Citus locks no rows in a
-- multi-shard query).
CREATE OR REPLACE FUNCTION ops.seal_audit(p_tenant_id uuid DEFAULT NULL, p_max_rows integer DEFAULT 100000,
                                          p_cap integer DEFAULT 1000)
RETURNS TABLE (tenant_id uuid, sealed integer, busy boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '500ms'
AS $$
DECLARE
    v_tenant uuid;
BEGIN
    IF p_max_rows IS NULL OR p_max_rows < 1 OR p_cap IS NULL OR p_cap NOT BETWEEN 1 AND 100000 THEN
        RAISE EXCEPTION 'a seal run takes at least 1 row per tenant and 1 to 100000 rows per seal' USING
            ERRCODE = '22023';
    END IF;
    FOR v_tenant IN
        SELECT h.tenant_id FROM core.audit_heads AS h
         WHERE (p_tenant_id IS NULL OR h.tenant_id = p_tenant_id)
           AND EXISTS (SELECT 1 FROM core.audit_log AS a
                        WHERE a.tenant_id = h.tenant_id
                          AND (a.epoch, a.audit_id) > (h.sealed_epoch, h.sealed_audit_id))
         ORDER BY 1
    LOOP
        tenant_id := v_tenant;
        busy := false;
        BEGIN
            sealed := core.seal_audit_tenant(v_tenant, p_max_rows, p_cap);
        EXCEPTION WHEN lock_not_available THEN
            sealed := 0;
            busy := true;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- verification
----------------------------------------------------------------------------------------

-- Recompute a tenant's chain: each seal follows the previous one (number and prev_hash),
-- its hash matches its content, and the rows in its range are exactly the ones it
-- sealed, unchanged. Returns one row: ok, or the first seal or row that no longer
-- matches (seal_no, audit_id and a sentence). Rows that retention dropped (older than the
-- oldest partition) are not missing. Definer (the worker's ops.verify_audit and the CLI).
CREATE OR REPLACE FUNCTION core.verify_audit(p_tenant_id uuid)
RETURNS TABLE (ok boolean, seal_no bigint, audit_id bigint, problem text, seals bigint, rows_checked bigint)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_seal core.audit_seals;
    v_prev_hash bytea;
    v_prev_epoch bigint := 0;
    v_prev_id bigint := 0;
    v_expected bigint := 1;
    v_horizon timestamptz;
    v_row record;
    v_head core.audit_heads;
BEGIN
    ok := true;
    seals := 0;
    rows_checked := 0;
    SELECT min(p.range_start) INTO v_horizon FROM core.audit_partitions() AS p;
    FOR v_seal IN SELECT * FROM core.audit_seals AS s WHERE s.tenant_id = p_tenant_id ORDER BY s.seal_no LOOP
        seal_no := v_seal.seal_no;
        IF v_seal.seal_no <> v_expected THEN
            ok := false; seal_no := v_expected;
            problem := format('seal %s is missing (the next seal is %s)', v_expected, v_seal.seal_no);
            RETURN NEXT; RETURN;
        END IF;
        IF v_seal.prev_hash IS DISTINCT FROM v_prev_hash THEN
            ok := false;
            problem := format('seal %s does not follow seal %s (its previous hash differs)', v_seal.seal_no, v_expected - 1);
            RETURN NEXT; RETURN;
        END IF;
        IF v_seal.hash IS DISTINCT FROM core.audit_seal_hash(v_seal.prev_hash, p_tenant_id, v_seal.seal_no,
                                                             v_seal.row_count, v_seal.digests)
           OR cardinality(v_seal.audit_ids) <> v_seal.row_count OR length(v_seal.digests) <> 32 * v_seal.row_count
           OR (v_seal.first_epoch, v_seal.first_audit_id) <= (v_prev_epoch, v_prev_id) THEN
            ok := false;
            problem := format('seal %s was altered (its hash does not match its content)', v_seal.seal_no);
            RETURN NEXT; RETURN;
        END IF;
        -- the rows of the seal's range against what it sealed, in chain order
        FOR v_row IN
            SELECT x.id AS sealed_id, x.digest AS sealed_digest, r.audit_id AS row_id, r.digest AS row_digest,
                   r.occurred_at
              FROM (SELECT i.id, substring(v_seal.digests FROM (i.ord::integer - 1) * 32 + 1 FOR 32) AS digest
                      FROM unnest(v_seal.audit_ids) WITH ORDINALITY AS i (id, ord)) AS x
              FULL JOIN (SELECT a.audit_id, a.epoch, a.occurred_at,
                                sha256(convert_to(core.audit_canonical(a.tenant_id, a.audit_id, a.epoch, a.occurred_at, a.actor_id, a.actor_type, a.request_id, a.ip,
                                                           a.action, a.table_name, a.row_key, a.changes, a.details), 'UTF8')) AS digest
                           FROM core.audit_log AS a
                          WHERE a.tenant_id = p_tenant_id
                            AND (a.epoch, a.audit_id) > (v_prev_epoch, v_prev_id)
                            AND (a.epoch, a.audit_id) <= (v_seal.last_epoch, v_seal.last_audit_id)) AS r
                     ON r.audit_id = x.id
             ORDER BY COALESCE(x.id, r.audit_id)
        LOOP
            IF v_row.row_id IS NULL THEN
                -- gone: dropped by retention only if the seal reaches before the oldest partition
                CONTINUE WHEN v_horizon IS NULL OR v_seal.min_occurred_at < v_horizon;
                ok := false; audit_id := v_row.sealed_id;
                problem := format('audit row %s of seal %s was deleted', v_row.sealed_id, v_seal.seal_no);
                RETURN NEXT; RETURN;
            ELSIF v_row.sealed_id IS NULL THEN
                ok := false; audit_id := v_row.row_id;
                problem := format('audit row %s is not in seal %s (added to a sealed range)', v_row.row_id, v_seal.seal_no);
                RETURN NEXT; RETURN;
            ELSIF v_row.row_digest <> v_row.sealed_digest THEN
                ok := false; audit_id := v_row.row_id;
                problem := format('audit row %s of seal %s was altered', v_row.row_id, v_seal.seal_no);
                RETURN NEXT; RETURN;
            END IF;
            rows_checked := rows_checked + 1;
        END LOOP;
        v_prev_hash := v_seal.hash;
        v_prev_epoch := v_seal.last_epoch;
        v_prev_id := v_seal.last_audit_id;
        v_expected := v_expected + 1;
        seals := seals + 1;
    END LOOP;
    seal_no := NULL;
    SELECT * INTO v_head FROM core.audit_heads AS h WHERE h.tenant_id = p_tenant_id;
    IF FOUND AND (v_head.seal_no <> v_expected - 1 OR v_head.last_hash IS DISTINCT FROM v_prev_hash) THEN
        ok := false; seal_no := v_head.seal_no;
        problem := format('the chain''s head names seal %s, but the last seal is %s', v_head.seal_no, v_expected - 1);
        RETURN NEXT; RETURN;
    END IF;
    problem := NULL;
    RETURN NEXT;
END
$$;

-- Verify every tenant's chain (or one): one row per tenant, ok or the first problem.
CREATE OR REPLACE FUNCTION ops.verify_audit(p_tenant_id uuid DEFAULT NULL)
RETURNS TABLE (tenant_id uuid, ok boolean, seal_no bigint, audit_id bigint, problem text, seals bigint,
               rows_checked bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant uuid;
BEGIN
    FOR v_tenant IN
        SELECT h.tenant_id FROM core.audit_heads AS h
         WHERE p_tenant_id IS NULL OR h.tenant_id = p_tenant_id
        UNION
        SELECT p_tenant_id WHERE p_tenant_id IS NOT NULL
        ORDER BY 1
    LOOP
        RETURN QUERY SELECT v_tenant, v.* FROM core.verify_audit(v_tenant) AS v;
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- partitions and retention
----------------------------------------------------------------------------------------

-- The partitions of core.audit_log with their ranges (from the catalog).
CREATE OR REPLACE FUNCTION core.audit_partitions()
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.oid::regclass::text,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$FROM \('([^']+)'\)$r$)::timestamptz,
           substring(pg_get_expr(c.relpartbound, c.oid) FROM $r$TO \('([^']+)'\)$r$)::timestamptz
      FROM pg_catalog.pg_inherits AS i
      JOIN pg_catalog.pg_class AS c ON c.oid = i.inhrelid
     WHERE i.inhparent = 'core.audit_log'::regclass
$$;

-- The longest audit retention of any plan: whole months older than it may go.
CREATE OR REPLACE FUNCTION core.audit_retention()
RETURNS interval
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT make_interval(days => COALESCE(max(p.audit_retention_days), 90)) FROM core.plans AS p $$;

-- Keep each audit partition closed: nobody truncates it or changes its rows (a partition
-- has privileges and statement triggers of its own; row triggers are inherited).
CREATE OR REPLACE FUNCTION core.protect_audit_partition(p_partition regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('REVOKE UPDATE, TRUNCATE ON %s FROM PUBLIC, tenantry_owner', p_partition);
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger AS t
                    WHERE t.tgrelid = p_partition AND t.tgname = 'refuse_audit_truncate') THEN
        EXECUTE format('CREATE TRIGGER refuse_audit_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION core.refuse_audit_change()', p_partition);
    END IF;
END
$$;

-- Monthly partitions (UTC) from this month to p_ahead from now, named as Citus names
-- them (audit_log_p2025m01); on Citus by create_time_partitions (docs/citus.md, fact 7).
-- Invoker: the migration runs it as itself (below); the job through
-- ops.maintain_audit_partitions, which also closes the new partitions' privileges.
CREATE OR REPLACE FUNCTION core.create_audit_partitions(p_ahead interval)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_from timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    v_to timestamptz := now() + p_ahead;
    v_month timestamptz;
    v_name text;
BEGIN
    IF p_ahead IS NULL OR p_ahead < interval '1 day' OR p_ahead > interval '10 years' THEN
        RAISE EXCEPTION 'partitions are made 1 day to 10 years ahead, not %', p_ahead USING
            ERRCODE = '22023', COLUMN = 'ahead';
    END IF;
    IF core.citus_enabled() THEN
        EXECUTE 'SELECT create_time_partitions($1, $2, $3, $4)'
            USING 'core.audit_log'::regclass, interval '1 month', v_to, v_from;
    ELSE
        FOR v_month IN SELECT g AT TIME ZONE 'UTC'
                         FROM generate_series(v_from AT TIME ZONE 'UTC', v_to AT TIME ZONE 'UTC', interval '1 month') AS g
        LOOP
            CONTINUE WHEN EXISTS (SELECT 1 FROM core.audit_partitions() AS p
                                   WHERE p.range_start <= v_month AND p.range_end > v_month);
            v_name := 'audit_log_p' || to_char(v_month AT TIME ZONE 'UTC', 'YYYY"m"MM');
            EXECUTE format('CREATE TABLE core.%I PARTITION OF core.audit_log FOR VALUES FROM (%L) TO (%L)',
                           v_name, v_month, ((v_month AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC');
        END LOOP;
    END IF;
END
$$;

-- The job's partition maintenance: core.create_audit_partitions, then the new
-- partitions' privileges closed. Definer: only the owner creates partitions. Returns
-- the partitions created.
CREATE OR REPLACE FUNCTION ops.maintain_audit_partitions(p_ahead interval DEFAULT interval '2 months')
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_before text[];
    v_name text;
BEGIN
    SELECT COALESCE(array_agg(p.partition_name), '{}') INTO v_before FROM core.audit_partitions() AS p;
    PERFORM core.create_audit_partitions(p_ahead);
    FOR v_name IN SELECT p.partition_name FROM core.audit_partitions() AS p WHERE p.partition_name <> ALL (v_before) LOOP
        PERFORM core.protect_audit_partition(v_name::regclass);
    END LOOP;
    RETURN QUERY SELECT p.* FROM core.audit_partitions() AS p WHERE p.partition_name <> ALL (v_before) ORDER BY 2;
END
$$;

-- Retention: drop the whole monthly partitions that ended before now minus the longest
-- audit retention of any plan (core.audit_retention(); p_retention overrides it, for
-- tests and operators: never shorter than 30 days). The only way audit rows go. Each
-- tenant that had rows in a dropped partition gets an 'audit.partition_dropped' event
-- (actor system) in the same transaction. Definer: only the owner drops partitions
-- (docs/citus.md, fact 13). Returns the partitions dropped and how many tenants each had.
CREATE OR REPLACE FUNCTION ops.drop_expired_audit_partitions(p_retention interval DEFAULT NULL)
RETURNS TABLE (partition_name text, range_start timestamptz, range_end timestamptz, tenants integer)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_retention interval := COALESCE(p_retention, core.audit_retention());
    v_cutoff timestamptz;
    v_part record;
    v_tenants uuid[];
    v_tenant uuid;
BEGIN
    IF v_retention < interval '30 days' THEN
        RAISE EXCEPTION 'the audit retention is at least 30 days, not %', v_retention USING
            ERRCODE = '22023', COLUMN = 'retention';
    END IF;
    v_cutoff := now() - v_retention;
    FOR v_part IN SELECT p.* FROM core.audit_partitions() AS p WHERE p.range_end <= v_cutoff ORDER BY p.range_start LOOP
        EXECUTE format('SELECT COALESCE(array_agg(DISTINCT a.tenant_id), ''{}'') FROM %s AS a', v_part.partition_name)
            INTO v_tenants;
        IF core.citus_enabled() THEN
            EXECUTE 'CALL drop_old_time_partitions($1, $2)' USING 'core.audit_log'::regclass, v_part.range_end;
        ELSE
            EXECUTE format('DROP TABLE %s', v_part.partition_name);
        END IF;
        FOREACH v_tenant IN ARRAY v_tenants LOOP
            PERFORM core.audit_event(v_tenant, 'audit.partition_dropped',
                                     jsonb_build_object('partition', v_part.partition_name,
                                                        'range_start', v_part.range_start,
                                                        'range_end', v_part.range_end,
                                                        'retention', v_retention::text),
                                     NULL, 'system');
        END LOOP;
        partition_name := v_part.partition_name;
        range_start := v_part.range_start;
        range_end := v_part.range_end;
        tenants := cardinality(v_tenants);
        RETURN NEXT;
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- reading: the tenant's audit trail
----------------------------------------------------------------------------------------

-- A page of the tenant's audit trail in (occurred_at, audit_id) order after the keyset
-- cursor, filtered by actor, action, table and time range [p_from, p_to). Only what the
-- plan's retention shows (core.plans.audit_retention_days: older rows may still be kept
-- for a plan with a longer one). Scope audit:read.
CREATE OR REPLACE FUNCTION api.list_audit(
    p_tenant_id uuid,
    p_actor_id uuid DEFAULT NULL,
    p_action text DEFAULT NULL,
    p_table text DEFAULT NULL,
    p_from timestamptz DEFAULT NULL,
    p_to timestamptz DEFAULT NULL,
    p_limit integer DEFAULT 50,
    p_after_occurred_at timestamptz DEFAULT NULL,
    p_after_id bigint DEFAULT NULL
)
RETURNS TABLE (audit_id bigint, occurred_at timestamptz, actor_id uuid, actor_type text, request_id text,
               ip inet, action text, table_name text, row_key jsonb, changes jsonb, details jsonb)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_since timestamptz;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'audit:read');
    PERFORM core.assert_page_size(p_limit);
    SELECT now() - make_interval(days => p.audit_retention_days) INTO v_since
      FROM core.tenants AS t JOIN core.plans AS p ON p.plan_id = t.plan_id
     WHERE t.tenant_id = p_tenant_id;
    v_since := GREATEST(v_since, p_from);
    RETURN QUERY
        SELECT a.audit_id, a.occurred_at, a.actor_id, a.actor_type, a.request_id, a.ip, a.action, a.table_name,
               a.row_key, a.changes, a.details
          FROM core.audit_log AS a
         WHERE a.tenant_id = p_tenant_id
           AND a.occurred_at >= v_since
           AND (p_to IS NULL OR a.occurred_at < p_to)
           AND (p_actor_id IS NULL OR a.actor_id = p_actor_id)
           AND (p_action IS NULL OR a.action = p_action)
           AND (p_table IS NULL OR a.table_name = p_table)
           AND (p_after_occurred_at IS NULL
                OR (a.occurred_at, a.audit_id) > (p_after_occurred_at, COALESCE(p_after_id, 0)))
         ORDER BY a.occurred_at, a.audit_id
         LIMIT p_limit;
END
$$;

-- The start of a CSV export of the audit trail (GET /v1/audit/export): plan feature
-- audit_export (TQ002), scope audit:read, and the export itself is an audited event
-- with its filters. The rows are then read page by page with api.list_audit.
CREATE OR REPLACE FUNCTION api.begin_audit_export(p_tenant_id uuid, p_filters jsonb DEFAULT '{}')
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'audit:read');
    PERFORM core.assert_plan_feature(p_tenant_id, 'audit_export');
    PERFORM core.audit_event(p_tenant_id, 'audit.export', jsonb_build_object('filters', COALESCE(p_filters, '{}')));
END
$$;

----------------------------------------------------------------------------------------
-- at migrate time: partitions, the row trigger on every audited table (the partitions'
-- closed privileges: policies/core_audit_log.sql, once the roles exist)
----------------------------------------------------------------------------------------

-- as the migration's role, in its transaction (through the definer function, Citus would
-- reach the shards DDL just touched as another user: fact 16)
SELECT core.create_audit_partitions(interval '2 months');

-- Attach core.audit_row_change to every tenant table (a tenant_id column, not a
-- `@reference` lookup, not a partition) that core.audit_excluded_tables() does not name;
-- re-made on every migrate, so its arguments (key and secret columns) follow the table.
DO $$
DECLARE
    v_table record;
BEGIN
    FOR v_table IN
        SELECT c.oid::regclass AS rel, n.nspname || '.' || c.relname AS qualified,
               (SELECT string_agg(a.attname, ',' ORDER BY array_position(x.indkey::int2[], a.attnum))
                  FROM pg_catalog.pg_index AS x
                  JOIN pg_catalog.pg_attribute AS a ON a.attrelid = x.indrelid AND a.attnum = ANY (x.indkey::int2[])
                 WHERE x.indrelid = c.oid AND x.indisprimary AND a.attname <> 'tenant_id') AS keys,
               (SELECT COALESCE(string_agg(a.attname, ',' ORDER BY a.attnum), '')
                  FROM pg_catalog.pg_attribute AS a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND core.audit_redacts(a.attname)) AS secrets
          FROM pg_catalog.pg_class AS c
          JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = 'core' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
           AND EXISTS (SELECT 1 FROM pg_catalog.pg_attribute AS a
                        WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped)
           AND COALESCE(obj_description(c.oid, 'pg_class'), '') NOT LIKE '@reference%'
           AND c.oid::regclass::text NOT IN (SELECT e.table_name FROM core.audit_excluded_tables() AS e)
         ORDER BY 1
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS audit_row_change ON %s', v_table.rel);
        EXECUTE format('CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE ON %s '
                       'FOR EACH ROW EXECUTE FUNCTION core.audit_row_change(%L, %L, %L)',
                       v_table.rel, COALESCE(v_table.keys, 'tenant_id'), v_table.secrets, v_table.qualified);
    END LOOP;
END
$$;

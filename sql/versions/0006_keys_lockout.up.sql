-- 0006 keys and lockout: API keys bounded by their member's current rights, task
-- assignees that must be members of the task's tenant, and login failures counted per
-- account and client outside the reference table core.users.
--
-- 1. core.api_keys.user_id: the member whose rights bound the key. A key acts with the
--    intersection of its scopes and that member's current role (core.api_key_scopes,
--    130_api_keys.sql); a key made by a key belongs to the same member. Existing keys
--    get it from created_by (following keys made by keys); a live key whose member has
--    left the tenant is revoked here, as removing a member now does (by trigger).
-- 2. core.tasks: FOREIGN KEY (tenant_id, assignee_id) -> core.memberships. Citus refuses
--    ON DELETE SET NULL on a foreign key that includes the distribution column, even
--    PostgreSQL 15's `SET NULL (assignee_id)` spelling (docs/citus.md, fact 23), so the
--    key is NO ACTION and a trigger unassigns a leaving member's tasks
--    (core.unassign_member_tasks, 210_tasks.sql). Existing assignees that are not
--    members of the task's tenant are cleared first.
-- 3. core.login_failures: failed logins per (account, client) and per account, keyed by
--    a hash of the email so unknown emails are counted exactly like known ones (the
--    answer must not tell them apart). Written on every failed login, so it is a
--    distributed table (on the account hash), not a column of the reference table
--    core.users (docs/citus.md, fact 21). core.users keeps its old lockout columns
--    (failed_logins, first_failed_at, locked_until) for auth.open_session, which still
--    reads them; nothing writes them any more.
--
-- The data fixes run as the owner: row level security is lifted from the two tables
-- while they run (FORCE would hide every row from an owner that is not a superuser),
-- and the tasks' guard_tenant_writes trigger, which would refuse the fix in a
-- suspended tenant, is dropped; `tenantry db migrate` re-creates both (210_tasks.sql,
-- policies/) in the same transaction.

----------------------------------------------------------------------------------------
-- 1. API keys: the member whose rights bound the key
----------------------------------------------------------------------------------------
ALTER TABLE core.api_keys ADD COLUMN user_id uuid;
COMMENT ON COLUMN core.api_keys.user_id IS
    'The member whose current role bounds the key: its creator, or the member of the key that made it.';
ALTER TABLE core.api_keys NO FORCE ROW LEVEL SECURITY;

-- made by a user (a member now, or one who left): that user
UPDATE core.api_keys AS k SET user_id = k.created_by
 WHERE NOT EXISTS (SELECT 1 FROM core.api_keys AS p WHERE p.tenant_id = k.tenant_id AND p.key_id = k.created_by);

-- made by a key: the member of that key, following chains of keys made by keys
DO $$
DECLARE
    v_count integer;
BEGIN
    LOOP
        UPDATE core.api_keys AS k SET user_id = p.user_id
          FROM core.api_keys AS p
         WHERE p.tenant_id = k.tenant_id AND p.key_id = k.created_by
           AND k.user_id IS NULL AND p.user_id IS NOT NULL;
        GET DIAGNOSTICS v_count = ROW_COUNT;
        EXIT WHEN v_count = 0;
    END LOOP;
END
$$;

-- (nothing should be left; whatever is left has no member and is revoked below)
UPDATE core.api_keys SET user_id = created_by WHERE user_id IS NULL;

-- a live key of someone who is no longer a member stops now
UPDATE core.api_keys AS k SET revoked_at = now()
 WHERE k.revoked_at IS NULL
   AND NOT EXISTS (SELECT 1 FROM core.memberships AS m WHERE m.tenant_id = k.tenant_id AND m.user_id = k.user_id);

ALTER TABLE core.api_keys FORCE ROW LEVEL SECURITY;
ALTER TABLE core.api_keys ALTER COLUMN user_id SET NOT NULL;
-- a member's live keys, revoked when the member leaves
CREATE INDEX api_keys_user_idx ON core.api_keys (tenant_id, user_id) WHERE revoked_at IS NULL;

----------------------------------------------------------------------------------------
-- 2. tasks: the assignee is a member of the task's tenant
----------------------------------------------------------------------------------------
DROP TRIGGER IF EXISTS guard_tenant_writes ON core.tasks;
ALTER TABLE core.tasks NO FORCE ROW LEVEL SECURITY;
UPDATE core.tasks AS t SET assignee_id = NULL
 WHERE t.assignee_id IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM core.memberships AS m WHERE m.tenant_id = t.tenant_id AND m.user_id = t.assignee_id);
ALTER TABLE core.tasks FORCE ROW LEVEL SECURITY;
ALTER TABLE core.tasks
    ADD CONSTRAINT tasks_assignee_member_fkey FOREIGN KEY (tenant_id, assignee_id)
        REFERENCES core.memberships (tenant_id, user_id);

----------------------------------------------------------------------------------------
-- 3. login failures, per account and client
----------------------------------------------------------------------------------------
CREATE TABLE core.login_failures (
    -- SHA-256 (hex) of the lower-cased email: known and unknown emails alike
    account       text NOT NULL CHECK (account ~ '^[0-9a-f]{64}$'),
    -- the client's address (an IPv6 client's /64), or '*' for the account as a whole
    client        text NOT NULL CHECK (length(client) BETWEEN 1 AND 64),
    failures      integer NOT NULL CHECK (failures >= 0),
    window_start  timestamptz NOT NULL,
    locked_until  timestamptz,
    PRIMARY KEY (account, client)
);
COMMENT ON TABLE core.login_failures IS
    '@distributed-by account Failed logins per (account, client) and per account (client *), for the lockout.';
DO $$
BEGIN
    -- its own colocation group: not tenant data (docs/citus.md, fact 21)
    IF core.citus_enabled() THEN
        EXECUTE format('SELECT create_distributed_table(%L, %L, colocate_with => %L)',
                       'core.login_failures', 'account', 'none');
    END IF;
END
$$;

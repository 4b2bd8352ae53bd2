-- Roles of the application. Login roles without passwords here: `tenantry db migrate`
-- sets them after this file (TENANTRY_APP_ROLE_PASSWORD when given, else a generated
-- password per role kept in the state folder). Roles are cluster-wide, so they are
-- created only if missing and never dropped by a downgrade.
--
--   tenantry_owner           owns every object of the project's schemas (90_ownership.sql);
--                            SECURITY DEFINER functions run as it. Not a superuser.
--   tenantry_api             the API: EXECUTE on api.*, a few table rights, RLS applies
--   tenantry_worker          Dramatiq jobs: EXECUTE on ops.* (cross-tenant, narrow)
--   tenantry_analyst         analysts and BI tools: SELECT on analytics.* only
--   tenantry_platform_admin  platform operators: EXECUTE on admin.*
--
-- None of the four application roles may bypass RLS. The superuser (or whichever role
-- runs the migration) only bootstraps: it runs the DDL and hands every object to
-- tenantry_owner at the end of each migrate, in the same transaction.

----------------------------------------------------------------------------------------
-- tenantry_owner
----------------------------------------------------------------------------------------
-- NOSUPERUSER: a definer function that can be tricked into running a caller's code
-- gives away the owner's rights, not the whole server's.
-- BYPASSRLS: FORCE ROW LEVEL SECURITY holds a table's owner to the policies, and the
-- definer functions that work across tenants (sign-up, login, session checks, admin.*,
-- analytics) must see every tenant's rows, as they did when the superuser owned them.
-- Policies for the owner instead would each read USING (true) on every table: the same
-- rights, more places to get wrong. The application roles stay NOBYPASSRLS (lint).
-- LOGIN without a password: nobody can authenticate as it where passwords are required
-- (the embedded server), but on Citus the coordinator opens the owner's own connections
-- to the workers, for definer functions reading distributed tables and for moving the
-- shards it owns, and a NOLOGIN owner fails there ("role ... is not permitted to log
-- in": docs/citus.md, fact 22). Give those node-to-node connections credentials as for
-- any role (pg_dist_authinfo) on a cluster that requires passwords.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'tenantry_owner') THEN
        CREATE ROLE tenantry_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS;
    ELSIF EXISTS (
        SELECT 1 FROM pg_catalog.pg_roles
         WHERE rolname = 'tenantry_owner'
           AND (rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR NOT rolbypassrls)
    ) THEN
        -- alter only what differs (roles are cluster-wide: see below)
        ALTER ROLE tenantry_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS;
    END IF;
END
$$;

----------------------------------------------------------------------------------------
-- the application's login roles
----------------------------------------------------------------------------------------

DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['tenantry_api', 'tenantry_worker', 'tenantry_analyst', 'tenantry_platform_admin']
    LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS', v_role);
        END IF;
        -- roles are cluster-wide: alter only what differs, so that migrations of two
        -- databases on one server do not collide on the same role row
        -- ("tuple concurrently updated")
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_role AND (rolsuper OR rolbypassrls)) THEN
            EXECUTE format('ALTER ROLE %I NOSUPERUSER NOBYPASSRLS', v_role);
        END IF;
        -- On Citus, SET LOCAL app.* must reach the workers for RLS on the shards
        -- (docs/citus.md, fact 1).
        IF core.citus_enabled() AND NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_db_role_setting AS s JOIN pg_catalog.pg_roles AS r ON r.oid = s.setrole
             WHERE r.rolname = v_role AND s.setdatabase = 0
               AND 'citus.propagate_set_commands=local' = ANY (s.setconfig)
        ) THEN
            EXECUTE format('ALTER ROLE %I SET citus.propagate_set_commands = %L', v_role, 'local');
        END IF;
    END LOOP;
END
$$;

----------------------------------------------------------------------------------------
-- timeouts per role (docs/operations.md)
----------------------------------------------------------------------------------------
-- One tenant's long lock or slow statement must not hold every tenant's requests: each
-- role's sessions end a statement, a wait for a lock and an idle open transaction after
-- a bound of their own. The API's are short (a request is a few milliseconds of SQL; the
-- API answers 409 lock_timeout, 503 statement_timeout or idle_in_transaction_timeout,
-- with Retry-After); the worker's, the platform admin's and the analyst's longer (jobs
-- set a shorter statement_timeout per actor themselves: jobs/runtime.py). tenantry_owner
-- gets none: migrations and DBA work run as long as they must (and the definer functions
-- it owns run in the caller's session, under the caller's timeouts). Settings apply to
-- sessions opened after this file ran. On Citus, ALTER ROLE ... SET propagates to the
-- workers as for citus.propagate_set_commands above, and the coordinator's connections
-- to them log in as the same role, so the bounds hold on the shards too.
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT * FROM (VALUES
            ('tenantry_api',            'statement_timeout',                   '5s'),
            ('tenantry_api',            'lock_timeout',                        '2s'),
            ('tenantry_api',            'idle_in_transaction_session_timeout', '15s'),
            ('tenantry_platform_admin', 'statement_timeout',                   '30s'),
            ('tenantry_platform_admin', 'lock_timeout',                        '5s'),
            ('tenantry_platform_admin', 'idle_in_transaction_session_timeout', '60s'),
            ('tenantry_worker',         'statement_timeout',                   '5min'),
            ('tenantry_worker',         'lock_timeout',                        '30s'),
            ('tenantry_worker',         'idle_in_transaction_session_timeout', '5min'),
            ('tenantry_analyst',        'statement_timeout',                   '2min'),
            ('tenantry_analyst',        'lock_timeout',                        '5s'),
            ('tenantry_analyst',        'idle_in_transaction_session_timeout', '5min')
        ) AS t (role_name, setting, value)
    LOOP
        -- roles are cluster-wide: set only what differs (see above)
        IF NOT EXISTS (
            SELECT 1 FROM pg_catalog.pg_db_role_setting AS s JOIN pg_catalog.pg_roles AS r ON r.oid = s.setrole
             WHERE r.rolname = v.role_name AND s.setdatabase = 0
               AND v.setting || '=' || v.value = ANY (s.setconfig)
        ) THEN
            EXECUTE format('ALTER ROLE %I SET %I = %L', v.role_name, v.setting, v.value);
        END IF;
    END LOOP;
END
$$;

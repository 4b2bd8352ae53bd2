-- Roles of the application. Login roles without passwords here: `tenantry db migrate`
-- sets TENANTRY_APP_ROLE_PASSWORD on them when it is given. Roles are cluster-wide, so
-- they are created only if missing and never dropped by a downgrade.
--
--   tenantry_api             the API: EXECUTE on api.*, a few table rights, RLS applies
--   tenantry_worker          Dramatiq jobs: EXECUTE on ops.* (cross-tenant, narrow)
--   tenantry_analyst         analysts and BI tools: SELECT on analytics.* only
--   tenantry_platform_admin  platform operators: EXECUTE on admin.*
--
-- None may bypass RLS; the owner (the role that runs migrations) owns every object.

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

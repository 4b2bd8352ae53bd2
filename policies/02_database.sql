-- The database itself: no application role may create temporary objects.
--
-- A temporary table, type or domain lives in the session's pg_temp schema, which
-- PostgreSQL searches first for relations and types unless the search_path names it.
-- A caller who could create one named `uuid` or `timestamptz`, with a CHECK that calls
-- its own function, would have that function run inside any SECURITY DEFINER function
-- that names the type unqualified -- with the owner's rights. Definer functions set
-- `search_path = pg_catalog, pg_temp` (temp explicitly last, as the PostgreSQL manual
-- advises; `tenantry db lint` checks it) and qualify table names; revoking TEMPORARY
-- closes the door as well. Every new database grants TEMPORARY to PUBLIC by default.
--
-- The database owner (the bootstrapping superuser) keeps it, and tenantry_owner gets it:
-- REFRESH MATERIALIZED VIEW CONCURRENTLY (ops.refresh_analytics, a definer function run
-- as tenantry_owner) diffs through temporary tables it creates and drops itself. No
-- caller can become tenantry_owner, so this opens no door to callers' temporary objects
-- (`tenantry db lint` checks the application roles).
--
-- CREATE DATABASE ... TEMPLATE does not copy a database's privileges: a clone of a
-- migrated database needs this file applied again (db/migrate.py,
-- apply_database_privileges). Only when something must change: the pg_database row is
-- shared by every migration of this database.
DO $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM pg_catalog.pg_database AS d,
                      LATERAL pg_catalog.aclexplode(COALESCE(d.datacl, pg_catalog.acldefault('d', d.datdba))) AS a
         WHERE d.datname = pg_catalog.current_database()
           AND a.privilege_type = 'TEMPORARY' AND a.grantee <> d.datdba
           AND a.grantee <> 'tenantry_owner'::regrole
    ) OR NOT pg_catalog.has_database_privilege('tenantry_owner', pg_catalog.current_database(), 'TEMPORARY') THEN
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC', pg_catalog.current_database());
        EXECUTE format('REVOKE TEMPORARY ON DATABASE %I FROM %s', pg_catalog.current_database(),
                       'tenantry_api, tenantry_worker, tenantry_analyst, tenantry_platform_admin');
        EXECUTE format('GRANT TEMPORARY ON DATABASE %I TO tenantry_owner', pg_catalog.current_database());
    END IF;
END
$$;

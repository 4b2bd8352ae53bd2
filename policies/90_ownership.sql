-- Ownership: every object of the project's schemas belongs to tenantry_owner (a
-- NOSUPERUSER role, 00_roles.sql), never to the superuser that runs the migration, so
-- SECURITY DEFINER functions and views run with the owner's rights only.
--
-- Runs on every migrate, after every file that creates objects (the interface functions
-- are re-created each time, by the migrating role; core.* are replaced in place and keep
-- their owner), in the migration's transaction: nothing is ever committed owned by the
-- superuser. It changes only what another role owns. One ALTER ... OWNER statement per
-- object: on Citus each one is propagated to the workers, for distributed tables (and
-- their shards), distributed functions and schemas (docs/citus.md, fact 19).
--
-- Skipped: objects of extensions, indexes (they follow their table), sequences owned by
-- a column (they follow their table), the row types of tables and arrays (they follow
-- their table or element type).
DO $$
DECLARE
    v_schemas text[] := ARRAY['core', 'api', 'auth', 'admin', 'ops', 'analytics', 'audit', 'usage', 'billing'];
    v_owner oid := 'tenantry_owner'::regrole;
    v_statement text;
BEGIN
    FOR v_statement IN
        SELECT format('ALTER SCHEMA %I OWNER TO tenantry_owner', n.nspname)
          FROM pg_catalog.pg_namespace AS n
         WHERE n.nspname = ANY (v_schemas) AND n.nspowner <> v_owner
        UNION ALL
        SELECT format('ALTER %s %I.%I OWNER TO tenantry_owner',
                      CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                                     WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE'
                                     WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
                      n.nspname, c.relname)
          FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY (v_schemas) AND c.relowner <> v_owner
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                            WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                              AND (d.deptype = 'e' OR (c.relkind = 'S' AND d.deptype IN ('a', 'i'))))
        UNION ALL
        SELECT format('ALTER %s %s OWNER TO tenantry_owner',
                      CASE p.prokind WHEN 'p' THEN 'PROCEDURE' WHEN 'a' THEN 'AGGREGATE' ELSE 'FUNCTION' END,
                      p.oid::regprocedure)
          FROM pg_catalog.pg_proc AS p JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY (v_schemas) AND p.proowner <> v_owner
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                            WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
        UNION ALL
        SELECT format('ALTER %s %s OWNER TO tenantry_owner',
                      CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, t.oid::regtype)
          FROM pg_catalog.pg_type AS t JOIN pg_catalog.pg_namespace AS n ON n.oid = t.typnamespace
         WHERE n.nspname = ANY (v_schemas) AND t.typowner <> v_owner
           AND t.typtype IN ('d', 'e', 'r')
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend AS d
                            WHERE d.classid = 'pg_catalog.pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')
    LOOP
        EXECUTE v_statement;
    END LOOP;
END
$$;

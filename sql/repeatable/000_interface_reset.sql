-- The interface schemas (api, auth, admin, ops, analytics) hold only functions and
-- views that the repeatable files declare. They are dropped here and re-created by the
-- files after this one, so a removed or re-signatured function cannot linger (CREATE OR
-- REPLACE cannot change a function's result columns). Nothing depends on them but their
-- own views and grants, which are re-created too. Functions in core are used by
-- triggers and policies, so they are replaced in place instead.
DO $$
DECLARE
    v_function regprocedure;
BEGIN
    FOR v_function IN
        SELECT p.oid::regprocedure FROM pg_catalog.pg_proc AS p
         WHERE p.pronamespace::regnamespace::text IN ('api', 'auth', 'admin', 'ops', 'analytics')
    LOOP
        EXECUTE format('DROP FUNCTION %s CASCADE', v_function);
    END LOOP;
END
$$;

-- Policy files are declarative: each first drops every policy on its table, then
-- creates the ones it lists, so a policy renamed or removed in a file does not linger.

-- Drop all row-level security policies of a table.
CREATE OR REPLACE FUNCTION core.drop_policies(p_table regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_policy name;
BEGIN
    FOR v_policy IN SELECT polname FROM pg_catalog.pg_policy WHERE polrelid = p_table LOOP
        EXECUTE format('DROP POLICY %I ON %s', v_policy, p_table);
    END LOOP;
END
$$;

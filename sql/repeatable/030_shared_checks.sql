-- Shared checks: the errors and input checks every feature's functions raise the same
-- way. Not found is P0002 with one message shape; an invalid input is 22023
-- (invalid_parameter_value) with the offending field in the error's COLUMN, which the
-- API reports as the field. Page sizes have one documented maximum, here.

----------------------------------------------------------------------------------------
-- not found
----------------------------------------------------------------------------------------

-- Raise P0002 '<what> <id> not found', with the request field in COLUMN when given.
-- Another tenant's object is reported exactly like a missing one (no existence leak).
CREATE OR REPLACE FUNCTION core.raise_not_found(p_what text, p_id anyelement, p_column text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- two forms: RAISE refuses an option whose value is NULL
    IF p_column IS NULL THEN
        RAISE EXCEPTION '% % not found', p_what, p_id USING ERRCODE = 'P0002';
    END IF;
    RAISE EXCEPTION '% % not found', p_what, p_id USING ERRCODE = 'P0002', COLUMN = p_column;
END
$$;

-- Raise TN020: a conditional change (If-Match, If-Unmodified-Since) found the row, but
-- not at the version the client sent (040_timestamps.sql).
CREATE OR REPLACE FUNCTION core.raise_changed(p_what text, p_id anyelement)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION '% % has changed since the version you sent', p_what, p_id USING
        ERRCODE = 'TN020',
        HINT = 'Read it again for its current ETag, re-apply your change, and send it with If-Match.';
END
$$;

----------------------------------------------------------------------------------------
-- changeable fields
----------------------------------------------------------------------------------------

-- Raise 22023 naming the first key of p_changes that is not in p_allowed.
CREATE OR REPLACE FUNCTION core.assert_known_fields(p_changes jsonb, p_allowed text[], p_entity text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text;
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION 'changes must be a JSON object' USING ERRCODE = '22023';
    END IF;
    SELECT key INTO v_unknown FROM jsonb_object_keys(p_changes) AS key
     WHERE key <> ALL (p_allowed) ORDER BY key LIMIT 1;
    IF v_unknown IS NOT NULL THEN
        RAISE EXCEPTION '% is not a field of a % that can be changed', v_unknown, p_entity USING
            ERRCODE = '22023',
            COLUMN = v_unknown,
            HINT = format('Changeable fields: %s.', array_to_string(p_allowed, ', '));
    END IF;
END
$$;

----------------------------------------------------------------------------------------
-- page size
----------------------------------------------------------------------------------------

-- The largest page a list returns to a client: 200 rows. The one maximum of the
-- project; the API's `limit` parameter allows the same (sql/README.md, "Pagination").
CREATE OR REPLACE FUNCTION core.max_page_size()
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 200 $$;

-- Raise 22023 unless p_limit is between 1 and core.max_page_size() + 1: a caller may
-- fetch one row past a full page to learn whether another page follows (the API asks
-- for limit + 1 rows and returns limit).
CREATE OR REPLACE FUNCTION core.assert_page_size(p_limit integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_max integer := core.max_page_size() + 1;
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND v_max THEN
        RAISE EXCEPTION 'limit must be between 1 and %, not %', v_max, p_limit USING
            ERRCODE = '22023', COLUMN = 'limit',
            HINT = format('A page holds up to %s rows; one more may be asked for, to learn whether another page follows.',
                          core.max_page_size());
    END IF;
END
$$;

----------------------------------------------------------------------------------------
-- query filters
----------------------------------------------------------------------------------------

-- Raise TP001 (the API's 400 invalid_parameter, COLUMN p_parameter) when p_value fails a
-- CHECK constraint on p_table's column p_column alone: a list filtered on a value no row
-- can hold (`status=bogus`) is the client's mistake, not an empty page. The allowed
-- values stay written once, in the constraint: its own expression (from the catalog) is
-- evaluated on the value, which is passed as a parameter, never spliced into the SQL.
-- A value that is not even of the column's type fails too; NULL (no filter) passes.
CREATE OR REPLACE FUNCTION core.assert_column_allows(
    p_table regclass, p_column text, p_value text, p_parameter text DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_check record;
    v_ok boolean;
    v_parameter text := coalesce(p_parameter, p_column);
BEGIN
    IF p_value IS NULL THEN
        RETURN;
    END IF;
    FOR v_check IN
        SELECT pg_catalog.pg_get_expr(c.conbin, c.conrelid) AS expression,
               pg_catalog.format_type(a.atttypid, a.atttypmod) AS type
          FROM pg_catalog.pg_constraint AS c
          JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
         WHERE c.conrelid = p_table AND c.contype = 'c' AND pg_catalog.cardinality(c.conkey) = 1
           AND a.attname = p_column
    LOOP
        BEGIN
            EXECUTE format('SELECT %s FROM (SELECT $1::%s AS %I) AS v', v_check.expression, v_check.type, p_column)
               INTO v_ok USING p_value;
        EXCEPTION WHEN data_exception THEN
            v_ok := false;  -- not a value of the column's type at all
        END;
        IF v_ok IS FALSE THEN  -- as a CHECK judges: only false refuses
            RAISE EXCEPTION '% is not a possible %', p_value, v_parameter USING
                ERRCODE = 'TP001', COLUMN = v_parameter;
        END IF;
    END LOOP;
END
$$;

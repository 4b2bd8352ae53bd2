-- Input checks shared by the api.* functions. Each raises 22023 (invalid_parameter_value)
-- with the offending field in the error's COLUMN, which the API reports as the field.

-- Raise 22023 naming the first key of p_changes that is not in p_allowed.
CREATE OR REPLACE FUNCTION core.assert_known_fields(p_changes jsonb, p_allowed text[], p_entity text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
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

-- Raise 22023 unless p_limit is a page size between 1 and 500.
CREATE OR REPLACE FUNCTION core.assert_page_size(p_limit integer)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = ''
AS $$
BEGIN
    IF p_limit IS NULL OR p_limit NOT BETWEEN 1 AND 500 THEN
        RAISE EXCEPTION 'limit must be between 1 and 500, not %', p_limit USING
            ERRCODE = '22023', COLUMN = 'limit';
    END IF;
END
$$;

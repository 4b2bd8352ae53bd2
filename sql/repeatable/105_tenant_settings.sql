-- Tenant settings: owners and admins (the scope tenant:manage) change their tenant's
-- name and settings. The settings are a JSON object of known keys, each checked here:
--
--   timezone               a time zone PostgreSQL knows by name, e.g. 'Europe/Berlin'
--   locale                 a language tag: 'en', 'de-DE'
--   week_start             'monday', 'sunday' or 'saturday'
--   default_task_priority  a task priority: 'low', 'normal', 'high' or 'urgent'
--
-- A change merges into the current settings, and a key set to null is removed. An
-- unknown key or a bad value is 22023 naming it (`settings.<key>`) in COLUMN. Only
-- definer-rights functions write core.tenants (the api role reads its own row).

----------------------------------------------------------------------------------------
-- validation
----------------------------------------------------------------------------------------

-- The keys a tenant's settings may hold.
CREATE OR REPLACE FUNCTION core.tenant_setting_keys()
RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT ARRAY['default_task_priority', 'locale', 'timezone', 'week_start'] $$;

-- p_current with p_changes merged in (null removes a key), every changed key checked.
CREATE OR REPLACE FUNCTION core.merge_tenant_settings(p_current jsonb, p_changes jsonb)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_result jsonb := COALESCE(p_current, '{}');
    v_key text;
    v_value jsonb;
    v_text text;
    v_valid boolean;
BEGIN
    IF p_changes IS NULL OR jsonb_typeof(p_changes) <> 'object' THEN
        RAISE EXCEPTION 'settings must be a JSON object' USING ERRCODE = '22023', COLUMN = 'settings';
    END IF;
    FOR v_key, v_value IN SELECT e.key, e.value FROM jsonb_each(p_changes) AS e ORDER BY e.key LOOP
        IF NOT v_key = ANY (core.tenant_setting_keys()) THEN
            RAISE EXCEPTION '% is not a tenant setting', v_key USING
                ERRCODE = '22023', COLUMN = 'settings.' || v_key,
                HINT = format('Settings: %s.', array_to_string(core.tenant_setting_keys(), ', '));
        END IF;
        IF jsonb_typeof(v_value) = 'null' THEN
            v_result := v_result - v_key;
            CONTINUE;
        END IF;
        v_text := CASE WHEN jsonb_typeof(v_value) = 'string' THEN v_value #>> '{}' END;
        v_valid := CASE v_key
            WHEN 'timezone' THEN EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names AS z WHERE z.name = v_text)
            WHEN 'locale' THEN v_text ~ '^[a-z]{2,3}(-[A-Z]{2})?$'
            WHEN 'week_start' THEN v_text IN ('monday', 'sunday', 'saturday')
            WHEN 'default_task_priority' THEN v_text IN ('low', 'normal', 'high', 'urgent')
        END;
        IF v_valid IS NOT TRUE THEN
            RAISE EXCEPTION 'settings.% cannot be %', v_key, left(v_value::text, 100) USING
                ERRCODE = '22023', COLUMN = 'settings.' || v_key,
                HINT = CASE v_key
                    WHEN 'timezone' THEN 'A time zone name such as Europe/Berlin or UTC.'
                    WHEN 'locale' THEN 'A language tag such as en or de-DE.'
                    WHEN 'week_start' THEN 'monday, sunday or saturday.'
                    ELSE 'low, normal, high or urgent.'
                END;
        END IF;
        v_result := v_result || jsonb_build_object(v_key, v_text);
    END LOOP;
    RETURN v_result;
END
$$;

----------------------------------------------------------------------------------------
-- the change
----------------------------------------------------------------------------------------

-- Change the calling tenant's name and/or settings (p_changes: {"name", "settings"}).
-- Needs tenant:manage (owners and admins); a suspended tenant cannot (TN001).
-- p_if_match (row versions) and p_if_unmodified_since make the change conditional
-- (040_timestamps.sql): checked on the row locked FOR UPDATE (the latest version, since
-- the lock waits for a concurrent change to commit), so the check and the change are
-- atomic; a tenant that changed since is TN020.
CREATE OR REPLACE FUNCTION api.update_tenant(
    p_tenant_id uuid,
    p_changes jsonb,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.tenants
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tenant core.tenants;
    v_name text;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'tenant:manage');
    PERFORM core.assert_tenant_allows(p_tenant_id, true);
    PERFORM core.assert_known_fields(p_changes, ARRAY['name', 'settings'], 'tenant');
    SELECT * INTO v_tenant FROM core.tenants AS t WHERE t.tenant_id = p_tenant_id FOR UPDATE;
    IF (p_if_match IS NOT NULL AND NOT v_tenant.row_version = ANY (p_if_match))
       OR (v_before IS NOT NULL AND v_tenant.updated_at >= v_before) THEN
        PERFORM core.raise_changed('tenant', p_tenant_id);
    END IF;
    IF p_changes ? 'name' THEN
        v_name := CASE WHEN jsonb_typeof(p_changes -> 'name') = 'string' THEN btrim(p_changes ->> 'name') END;
        IF v_name IS NULL OR length(v_name) NOT BETWEEN 1 AND 200 THEN
            RAISE EXCEPTION 'a tenant name is 1 to 200 characters' USING
                ERRCODE = '23514', COLUMN = 'name', CONSTRAINT = 'tenants_name_check';
        END IF;
        v_tenant.name := v_name;
    END IF;
    IF p_changes ? 'settings' THEN
        v_tenant.settings := core.merge_tenant_settings(v_tenant.settings, p_changes -> 'settings');
    END IF;
    UPDATE core.tenants AS t SET name = v_tenant.name, settings = v_tenant.settings
     WHERE t.tenant_id = p_tenant_id
    RETURNING * INTO v_tenant;
    RETURN v_tenant;
END
$$;

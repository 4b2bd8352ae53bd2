-- Projects of the calling tenant: create, read, list, change and soft-delete, the last
-- cascading to the project's live tasks. Not found (or another tenant's) is P0002, so a
-- caller cannot tell the two apart; duplicate live names are 23505 on
-- projects_live_name_key; a field the function does not know is 22023 naming it. Rows
-- are never hard-deleted by the API; the api role has no DELETE privilege.

----------------------------------------------------------------------------------------
-- duplicate names
----------------------------------------------------------------------------------------

-- Unique violations are re-raised with the constraint and column named: on Citus the
-- server's own error names the shard's index (projects_live_name_key_102204) and
-- carries no constraint field, and the API needs one stable name for its error.

-- Raise the stable duplicate-name error (23505, projects_live_name_key, column name).
CREATE OR REPLACE FUNCTION core.raise_duplicate_project_name(p_name text)
RETURNS void
LANGUAGE plpgsql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'a live project named "%" already exists', p_name USING
        ERRCODE = '23505',
        CONSTRAINT = 'projects_live_name_key',
        COLUMN = 'name',
        HINT = 'Project names are unique (ignoring case) among the tenant''s live projects.';
END
$$;

----------------------------------------------------------------------------------------
-- projects
----------------------------------------------------------------------------------------

-- Create a project; created_by is the context's actor.
CREATE OR REPLACE FUNCTION api.create_project(p_tenant_id uuid, p_name text, p_description text DEFAULT '')
RETURNS core.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_project core.projects;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    INSERT INTO core.projects (tenant_id, name, description, created_by)
    VALUES (p_tenant_id, p_name, COALESCE(p_description, ''), core.current_actor_id())
    RETURNING * INTO v_project;
    RETURN v_project;
EXCEPTION WHEN unique_violation THEN
    PERFORM core.raise_duplicate_project_name(p_name);
END
$$;

-- One live project, or P0002.
CREATE OR REPLACE FUNCTION api.get_project(p_tenant_id uuid, p_project_id uuid)
RETURNS core.projects
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_project core.projects;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:read');
    SELECT * INTO v_project FROM core.projects
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('project', p_project_id);
    END IF;
    RETURN v_project;
END
$$;

-- A page of projects in (created_at, project_id) order, after the given keyset cursor.
CREATE OR REPLACE FUNCTION api.list_projects(
    p_tenant_id uuid,
    p_limit integer DEFAULT 50,
    p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL,
    p_include_deleted boolean DEFAULT false
)
RETURNS SETOF core.projects
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:read');
    PERFORM core.assert_page_size(p_limit);
    RETURN QUERY
        SELECT * FROM core.projects
         WHERE tenant_id = p_tenant_id
           AND (p_include_deleted OR deleted_at IS NULL)
           AND (p_after_created_at IS NULL
                OR (created_at, project_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY created_at, project_id
         LIMIT p_limit;
END
$$;

-- Change name and/or description of a live project: p_changes holds the new values.
-- p_if_match (row versions) and p_if_unmodified_since make the change conditional
-- (040_timestamps.sql): a live project that changed since is TN020, a missing one P0002
-- (a missing resource is not found whatever the preconditions, RFC 9110, 13.2.1).
CREATE OR REPLACE FUNCTION api.update_project(
    p_tenant_id uuid,
    p_project_id uuid,
    p_changes jsonb,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_project core.projects;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    PERFORM core.assert_known_fields(p_changes, ARRAY['name', 'description'], 'project');
    UPDATE core.projects SET
        name        = CASE WHEN p_changes ? 'name' THEN p_changes ->> 'name' ELSE name END,
        description = CASE WHEN p_changes ? 'description' THEN p_changes ->> 'description' ELSE description END
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_project;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.projects
             WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL
        ) THEN
            PERFORM core.raise_changed('project', p_project_id);
        END IF;
        PERFORM core.raise_not_found('project', p_project_id);
    END IF;
    RETURN v_project;
EXCEPTION WHEN unique_violation THEN
    PERFORM core.raise_duplicate_project_name(p_changes ->> 'name');
END
$$;

-- Soft-delete a live project and (by trigger) its live tasks; conditional like
-- api.update_project.
CREATE OR REPLACE FUNCTION api.delete_project(
    p_tenant_id uuid,
    p_project_id uuid,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.projects
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_project core.projects;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    UPDATE core.projects SET deleted_at = now()
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_project;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.projects
             WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL
        ) THEN
            PERFORM core.raise_changed('project', p_project_id);
        END IF;
        PERFORM core.raise_not_found('project', p_project_id);
    END IF;
    RETURN v_project;
END
$$;

----------------------------------------------------------------------------------------
-- soft delete
----------------------------------------------------------------------------------------

-- Row trigger on core.projects: cascade the soft delete to the project's live tasks.
CREATE OR REPLACE FUNCTION core.cascade_project_soft_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.tasks
       SET deleted_at = NEW.deleted_at
     WHERE tenant_id = NEW.tenant_id
       AND project_id = NEW.project_id
       AND deleted_at IS NULL;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER cascade_project_soft_delete
    AFTER UPDATE OF deleted_at ON core.projects
    FOR EACH ROW
    WHEN (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL)
    EXECUTE FUNCTION core.cascade_project_soft_delete();

----------------------------------------------------------------------------------------
-- tenant status and timestamps
----------------------------------------------------------------------------------------

-- no writes by a suspended or deleted tenant (core.guard_tenant_writes, 100_tenants.sql)
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- stamp updated_at (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.projects
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

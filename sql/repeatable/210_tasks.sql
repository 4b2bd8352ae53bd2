-- Tasks of the calling tenant, in its projects. Same error contract as projects: P0002
-- not found (including another tenant's task or project), 22023 bad field, 23514 a
-- value out of range (status, priority, title length), TN010 a deleted project: no live
-- task may belong to one (soft-deleting a project soft-deletes its tasks,
-- 200_projects.sql). The assignee is a member of the task's tenant (the foreign key
-- tasks_assignee_member_fkey, 23503 otherwise, another tenant's user included); a member
-- who leaves is unassigned from the tenant's tasks.

----------------------------------------------------------------------------------------
-- tasks
----------------------------------------------------------------------------------------

-- Create a task in a live project of the tenant.
CREATE OR REPLACE FUNCTION api.create_task(
    p_tenant_id uuid,
    p_project_id uuid,
    p_title text,
    p_description text DEFAULT '',
    p_status text DEFAULT 'todo',
    p_priority text DEFAULT 'normal',
    p_assignee_id uuid DEFAULT NULL,
    p_due_date date DEFAULT NULL
)
RETURNS core.tasks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task core.tasks;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    -- one error for "no such project" and "another tenant's project" (no existence leak)
    PERFORM 1 FROM core.projects
     WHERE tenant_id = p_tenant_id AND project_id = p_project_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('project', p_project_id);
    END IF;
    INSERT INTO core.tasks (tenant_id, project_id, title, description, status, priority,
                            assignee_id, due_date, created_by)
    VALUES (p_tenant_id, p_project_id, p_title, COALESCE(p_description, ''),
            COALESCE(p_status, 'todo'), COALESCE(p_priority, 'normal'),
            p_assignee_id, p_due_date, core.current_actor_id())
    RETURNING * INTO v_task;
    RETURN v_task;
END
$$;

-- One live task, or P0002.
CREATE OR REPLACE FUNCTION api.get_task(p_tenant_id uuid, p_task_id uuid)
RETURNS core.tasks
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task core.tasks;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:read');
    SELECT * INTO v_task FROM core.tasks
     WHERE tenant_id = p_tenant_id AND task_id = p_task_id AND deleted_at IS NULL;
    IF NOT FOUND THEN
        PERFORM core.raise_not_found('task', p_task_id);
    END IF;
    RETURN v_task;
END
$$;

-- A page of tasks in (created_at, task_id) order, filtered by project, status and
-- assignee when given, after the given keyset cursor. A status no task can have (the
-- CHECK on core.tasks.status says which) is TP001 naming `status`, not an empty page.
CREATE OR REPLACE FUNCTION api.list_tasks(
    p_tenant_id uuid,
    p_project_id uuid DEFAULT NULL,
    p_status text DEFAULT NULL,
    p_assignee_id uuid DEFAULT NULL,
    p_limit integer DEFAULT 50,
    p_after_created_at timestamptz DEFAULT NULL,
    p_after_id uuid DEFAULT NULL,
    p_include_deleted boolean DEFAULT false
)
RETURNS SETOF core.tasks
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:read');
    PERFORM core.assert_page_size(p_limit);
    PERFORM core.assert_column_allows('core.tasks', 'status', p_status);
    RETURN QUERY
        SELECT * FROM core.tasks
         WHERE tenant_id = p_tenant_id
           AND (p_project_id IS NULL OR project_id = p_project_id)
           AND (p_status IS NULL OR status = p_status)
           AND (p_assignee_id IS NULL OR assignee_id = p_assignee_id)
           AND (p_include_deleted OR deleted_at IS NULL)
           AND (p_after_created_at IS NULL
                OR (created_at, task_id) > (p_after_created_at, COALESCE(p_after_id, '00000000-0000-0000-0000-000000000000')))
         ORDER BY created_at, task_id
         LIMIT p_limit;
END
$$;

-- Change fields of a live task: p_changes holds the new values (null clears the
-- optional fields assignee_id and due_date). Moving to another project needs a live
-- project of the same tenant. Typed values are parsed before the UPDATE (Citus allows
-- only IMMUTABLE expressions in an UPDATE's CASE, and text::date is not: docs/citus.md,
-- fact 14), and a value that does not parse is 22023 naming its field. p_if_match (row
-- versions) and p_if_unmodified_since make the change conditional (040_timestamps.sql):
-- a live task that changed since is TN020, a missing one P0002.
CREATE OR REPLACE FUNCTION api.update_task(
    p_tenant_id uuid,
    p_task_id uuid,
    p_changes jsonb,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.tasks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task core.tasks;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
    v_field text;
    v_assignee_id uuid;
    v_due_date date;
    v_project_id uuid;
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    PERFORM core.assert_known_fields(
        p_changes,
        ARRAY['title', 'description', 'status', 'priority', 'assignee_id', 'due_date', 'project_id'],
        'task');
    BEGIN
        v_field := 'assignee_id'; v_assignee_id := (p_changes ->> 'assignee_id')::uuid;
        v_field := 'due_date';    v_due_date := (p_changes ->> 'due_date')::date;
        v_field := 'project_id';  v_project_id := (p_changes ->> 'project_id')::uuid;
    EXCEPTION WHEN data_exception THEN
        RAISE EXCEPTION '% is not a valid %', p_changes ->> v_field, v_field USING
            ERRCODE = '22023', COLUMN = v_field;
    END;
    IF p_changes ? 'project_id' THEN
        PERFORM 1 FROM core.projects
         WHERE tenant_id = p_tenant_id AND project_id = v_project_id AND deleted_at IS NULL;
        IF NOT FOUND THEN
            PERFORM core.raise_not_found('project', v_project_id);
        END IF;
    END IF;
    UPDATE core.tasks SET
        title       = CASE WHEN p_changes ? 'title' THEN p_changes ->> 'title' ELSE title END,
        description = CASE WHEN p_changes ? 'description' THEN p_changes ->> 'description' ELSE description END,
        status      = CASE WHEN p_changes ? 'status' THEN p_changes ->> 'status' ELSE status END,
        priority    = CASE WHEN p_changes ? 'priority' THEN p_changes ->> 'priority' ELSE priority END,
        assignee_id = CASE WHEN p_changes ? 'assignee_id' THEN v_assignee_id ELSE assignee_id END,
        due_date    = CASE WHEN p_changes ? 'due_date' THEN v_due_date ELSE due_date END,
        project_id  = CASE WHEN p_changes ? 'project_id' THEN v_project_id ELSE project_id END
     WHERE tenant_id = p_tenant_id AND task_id = p_task_id AND deleted_at IS NULL
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_task;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.tasks
             WHERE tenant_id = p_tenant_id AND task_id = p_task_id AND deleted_at IS NULL
        ) THEN
            PERFORM core.raise_changed('task', p_task_id);
        END IF;
        PERFORM core.raise_not_found('task', p_task_id);
    END IF;
    RETURN v_task;
END
$$;

-- Soft-delete a live task; conditional like api.update_task.
CREATE OR REPLACE FUNCTION api.delete_task(
    p_tenant_id uuid,
    p_task_id uuid,
    p_if_match bigint[] DEFAULT NULL,
    p_if_unmodified_since timestamptz DEFAULT NULL
)
RETURNS core.tasks
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_task core.tasks;
    v_before timestamptz := p_if_unmodified_since + interval '1 second';
BEGIN
    PERFORM core.assert_tenant_context(p_tenant_id, 'projects:write');
    UPDATE core.tasks SET deleted_at = now()
     WHERE tenant_id = p_tenant_id AND task_id = p_task_id AND deleted_at IS NULL
       AND (p_if_match IS NULL OR row_version = ANY (p_if_match))
       AND (v_before IS NULL OR updated_at < v_before)
    RETURNING * INTO v_task;
    IF NOT FOUND THEN
        IF (p_if_match IS NOT NULL OR v_before IS NOT NULL) AND EXISTS (
            SELECT 1 FROM core.tasks
             WHERE tenant_id = p_tenant_id AND task_id = p_task_id AND deleted_at IS NULL
        ) THEN
            PERFORM core.raise_changed('task', p_task_id);
        END IF;
        PERFORM core.raise_not_found('task', p_task_id);
    END IF;
    RETURN v_task;
END
$$;

----------------------------------------------------------------------------------------
-- soft delete
----------------------------------------------------------------------------------------

-- Row trigger on core.tasks: a live task needs a live project. A task that becomes live
-- in a project (created, moved in, or undeleted) locks the project's row FOR SHARE and
-- reads deleted_at under the lock. That closes the race with a concurrent soft delete
-- (api.delete_project): a delete that came first makes the lock wait for its commit and
-- the check then sees the deleted project (TN010); a task that came first makes the
-- delete's UPDATE wait for the task's commit, and the cascade
-- (core.cascade_project_soft_delete), a new statement with a new snapshot, then finds the
-- committed task and deletes it too. FOR SHARE, not FOR KEY SHARE: only FOR SHARE
-- conflicts with the delete's UPDATE of a non-key column. It needs the UPDATE privilege
-- and the UPDATE policy on core.projects, which the api role has for its own tenant. On
-- Citus the trigger runs on the shard's node, where the lock is taken (docs/citus.md,
-- fact 25). A change that keeps a live task in its project takes no lock: the cascade's
-- UPDATE of that task row serializes with it already.
CREATE OR REPLACE FUNCTION core.guard_task_project_live()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_deleted_at timestamptz;
BEGIN
    IF NEW.deleted_at IS NOT NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.deleted_at IS NULL AND OLD.project_id = NEW.project_id THEN
        RETURN NEW;
    END IF;
    SELECT p.deleted_at INTO v_deleted_at FROM core.projects AS p
     WHERE p.tenant_id = NEW.tenant_id AND p.project_id = NEW.project_id
       FOR SHARE;
    IF v_deleted_at IS NOT NULL THEN
        RAISE EXCEPTION 'project % is deleted', NEW.project_id USING
            ERRCODE = 'TN010',
            HINT = 'Tasks can only be added to or moved into live projects.';
    END IF;
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER guard_task_project_live
    BEFORE INSERT OR UPDATE OF project_id, deleted_at ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.guard_task_project_live();

----------------------------------------------------------------------------------------
-- assignees
----------------------------------------------------------------------------------------

-- Row trigger on core.memberships: a leaving member's tasks in the tenant (deleted ones
-- too) become unassigned, before the row goes (the foreign key from core.tasks is
-- checked at the end of the DELETE). Not ON DELETE SET NULL (assignee_id): Citus refuses
-- SET NULL on a foreign key that includes the distribution column (docs/citus.md,
-- fact 23). Invoker rights: the api role changes its own tenant's tasks through RLS.
CREATE OR REPLACE FUNCTION core.unassign_member_tasks()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE core.tasks SET assignee_id = NULL
     WHERE tenant_id = OLD.tenant_id AND assignee_id = OLD.user_id;
    RETURN OLD;
END
$$;

CREATE OR REPLACE TRIGGER unassign_member_tasks
    BEFORE DELETE ON core.memberships
    FOR EACH ROW EXECUTE FUNCTION core.unassign_member_tasks();

----------------------------------------------------------------------------------------
-- tenant status and timestamps
----------------------------------------------------------------------------------------

-- no writes by a suspended or deleted tenant (core.guard_tenant_writes, 100_tenants.sql)
CREATE OR REPLACE TRIGGER guard_tenant_writes
    BEFORE INSERT OR UPDATE OR DELETE ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.guard_tenant_writes();

-- stamp updated_at (040_timestamps.sql)
CREATE OR REPLACE TRIGGER touch_updated_at
    BEFORE UPDATE ON core.tasks
    FOR EACH ROW EXECUTE FUNCTION core.touch_updated_at();

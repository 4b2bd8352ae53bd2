-- Soft delete: deleting a project deletes its live tasks at the same instant, and no
-- live task may belong to a deleted project (TN010). Rows are never hard-deleted by the
-- API; the api role has no DELETE privilege.

-- Row trigger on core.projects: cascade the soft delete to the project's live tasks.
CREATE OR REPLACE FUNCTION core.cascade_project_soft_delete()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
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

-- Row trigger on core.tasks: a live task needs a live project.
CREATE OR REPLACE FUNCTION core.guard_task_project_live()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = ''
AS $$
BEGIN
    IF NEW.deleted_at IS NULL AND EXISTS (
        SELECT 1 FROM core.projects
         WHERE tenant_id = NEW.tenant_id AND project_id = NEW.project_id AND deleted_at IS NOT NULL
    ) THEN
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

"""/v1/projects and /v1/tasks: the tenant's workload, one api.* function per call."""

from __future__ import annotations

import falcon
from psycopg.types.json import Jsonb

from api import models
from api.resources.base import (as_uuid, body, cursor_param, limit_param, page, principal, row, rows,
                                shape, uuid_param)
from api.spec import operation

PAGE_QUERY = {"limit": "Page size, 1-200 (default 50)", "cursor": "next_cursor of the previous page"}


def _include_deleted(req: falcon.Request) -> bool:
    return req.get_param_as_bool("include_deleted", default=False)


class ProjectsResource:
    @operation(summary="List projects (keyset pagination, oldest first)", scope="projects:read",
               response=models.ProjectPage, paginated=True,
               query=PAGE_QUERY | {"include_deleted": "Also soft-deleted projects (true/false)"})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_id = cursor_param(req)
        found = rows(req, "SELECT * FROM api.list_projects(%s, %s, %s, %s, %s)",
                     (principal(req).tenant_id, limit + 1, after, after_id, _include_deleted(req)))
        resp.media = page(found, limit, "project_id", models.Project)

    @operation(summary="Create a project", scope="projects:write", body=models.ProjectCreate,
               response=models.Project, status=201, idempotent_post=True, errors=(409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ProjectCreate)
        created = row(req, "SELECT * FROM api.create_project(%s, %s, %s)",
                      (principal(req).tenant_id, data.name, data.description))
        resp.media = shape(models.Project, created)
        resp.status = 201


class ProjectResource:
    @operation(summary="Get a project", scope="projects:read", response=models.Project, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        found = row(req, "SELECT * FROM api.get_project(%s, %s)",
                    (principal(req).tenant_id, as_uuid(project_id, "project")))
        resp.media = shape(models.Project, found)

    @operation(summary="Change a project's name or description", scope="projects:write",
               body=models.ProjectChange, response=models.Project, errors=(404, 409, 422))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        changes = body(req, models.ProjectChange).model_dump(mode="json", exclude_unset=True)
        found = row(req, "SELECT * FROM api.update_project(%s, %s, %s)",
                    (principal(req).tenant_id, as_uuid(project_id, "project"), Jsonb(changes)))
        resp.media = shape(models.Project, found)

    @operation(summary="Soft-delete a project and its live tasks", scope="projects:write",
               response=models.Project, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: str) -> None:
        found = row(req, "SELECT * FROM api.delete_project(%s, %s)",
                    (principal(req).tenant_id, as_uuid(project_id, "project")))
        resp.media = shape(models.Project, found)


class TasksResource:
    @operation(summary="List tasks, filtered by project, status and assignee (keyset pagination)",
               scope="projects:read", response=models.TaskPage, paginated=True,
               query=PAGE_QUERY | {"project_id": "Only this project's tasks", "status": "Only this status",
                                   "assignee_id": "Only this assignee's tasks",
                                   "include_deleted": "Also soft-deleted tasks (true/false)"})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_id = cursor_param(req)
        found = rows(req, "SELECT * FROM api.list_tasks(%s, %s, %s, %s, %s, %s, %s, %s)", (
            principal(req).tenant_id, uuid_param(req, "project_id"), req.get_param("status"),
            uuid_param(req, "assignee_id"), limit + 1, after, after_id, _include_deleted(req)))
        resp.media = page(found, limit, "task_id", models.Task)

    @operation(summary="Create a task in a live project", scope="projects:write", body=models.TaskCreate,
               response=models.Task, status=201, idempotent_post=True, errors=(404, 409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.TaskCreate)
        created = row(req, "SELECT * FROM api.create_task(%s, %s, %s, %s, %s, %s, %s, %s)", (
            principal(req).tenant_id, data.project_id, data.title, data.description, data.status,
            data.priority, data.assignee_id, data.due_date))
        resp.media = shape(models.Task, created)
        resp.status = 201


class TaskResource:
    @operation(summary="Get a task", scope="projects:read", response=models.Task, errors=(404,))
    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        found = row(req, "SELECT * FROM api.get_task(%s, %s)", (principal(req).tenant_id, as_uuid(task_id, "task")))
        resp.media = shape(models.Task, found)

    @operation(summary="Change a task (null clears assignee_id or due_date)", scope="projects:write",
               body=models.TaskChange, response=models.Task, errors=(404, 409, 422))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        changes = body(req, models.TaskChange).model_dump(mode="json", exclude_unset=True)
        found = row(req, "SELECT * FROM api.update_task(%s, %s, %s)",
                    (principal(req).tenant_id, as_uuid(task_id, "task"), Jsonb(changes)))
        resp.media = shape(models.Task, found)

    @operation(summary="Soft-delete a task", scope="projects:write", response=models.Task, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: str) -> None:
        found = row(req, "SELECT * FROM api.delete_task(%s, %s)",
                    (principal(req).tenant_id, as_uuid(task_id, "task")))
        resp.media = shape(models.Task, found)


class TenantResource:
    @operation(summary="The caller's tenant", scope="tenant:read", response=models.Tenant)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shape(models.Tenant, row(req, "SELECT * FROM api.get_tenant(%s)", (principal(req).tenant_id,)))

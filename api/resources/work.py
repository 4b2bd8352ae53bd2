"""/v1/projects and /v1/tasks: the tenant's workload, one api.* function per call."""

from __future__ import annotations

import uuid

import falcon
from psycopg.types.json import Jsonb

from api import models
from api.resources.base import (
    PAGE_QUERY,
    body,
    bool_param,
    call_one,
    list_page,
    preconditions,
    represent,
    uuid_param,
)
from api.spec import operation


def _include_deleted(req: falcon.Request) -> bool:
    return bool_param(req, "include_deleted")


class ProjectsResource:
    @operation(
        summary="List projects (keyset pagination, oldest first)",
        scope="projects:read",
        function="api.list_projects",
        response=models.ProjectPage,
        paginated=True,
        query=PAGE_QUERY | {"include_deleted": "Also soft-deleted projects (true/false)"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list_page(req, models.Project, "project_id", include_deleted=_include_deleted(req))

    @operation(
        summary="Create a project",
        scope="projects:write",
        function="api.create_project",
        body=models.ProjectCreate,
        response=models.Project,
        status=201,
        idempotent_post=True,
        conditional=True,
        errors=(409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ProjectCreate)
        represent(req, resp, models.Project, call_one(req, **data.model_dump()), status=201)


class ProjectResource:
    @operation(
        summary="Get a project",
        scope="projects:read",
        function="api.get_project",
        response=models.Project,
        conditional=True,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, project_id: uuid.UUID) -> None:
        represent(req, resp, models.Project, call_one(req, project_id=project_id))

    @operation(
        summary="Change a project's name or description",
        scope="projects:write",
        function="api.update_project",
        body=models.ProjectChange,
        response=models.Project,
        conditional=True,
        errors=(404, 409, 422),
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, project_id: uuid.UUID) -> None:
        changes = body(req, models.ProjectChange).model_dump(mode="json", exclude_unset=True)
        found = call_one(req, project_id=project_id, changes=Jsonb(changes), **preconditions(req))
        represent(req, resp, models.Project, found)

    @operation(
        summary="Soft-delete a project and its live tasks",
        scope="projects:write",
        function="api.delete_project",
        response=models.Project,
        conditional=True,
        errors=(404,),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, project_id: uuid.UUID) -> None:
        represent(req, resp, models.Project, call_one(req, project_id=project_id, **preconditions(req)))


class TasksResource:
    @operation(
        summary="List tasks, filtered by project, status and assignee (keyset pagination)",
        scope="projects:read",
        function="api.list_tasks",
        response=models.TaskPage,
        paginated=True,
        query=PAGE_QUERY
        | {
            "project_id": "Only this project's tasks",
            "status": "Only this status",
            "assignee_id": "Only this assignee's tasks",
            "include_deleted": "Also soft-deleted tasks (true/false)",
        },
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list_page(
            req,
            models.Task,
            "task_id",
            project_id=uuid_param(req, "project_id"),
            status=req.get_param("status"),  # api.list_tasks refuses a status no task can have (TP001)
            assignee_id=uuid_param(req, "assignee_id"),
            include_deleted=_include_deleted(req),
        )

    @operation(
        summary="Create a task in a live project",
        scope="projects:write",
        function="api.create_task",
        body=models.TaskCreate,
        response=models.Task,
        status=201,
        idempotent_post=True,
        conditional=True,
        errors=(404, 409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.TaskCreate)
        represent(req, resp, models.Task, call_one(req, **data.model_dump()), status=201)


class TaskResource:
    @operation(
        summary="Get a task",
        scope="projects:read",
        function="api.get_task",
        response=models.Task,
        conditional=True,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, task_id: uuid.UUID) -> None:
        represent(req, resp, models.Task, call_one(req, task_id=task_id))

    @operation(
        summary="Change a task (null clears assignee_id or due_date)",
        scope="projects:write",
        function="api.update_task",
        body=models.TaskChange,
        response=models.Task,
        conditional=True,
        errors=(404, 409, 422),
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, task_id: uuid.UUID) -> None:
        changes = body(req, models.TaskChange).model_dump(mode="json", exclude_unset=True)
        represent(req, resp, models.Task, call_one(req, task_id=task_id, changes=Jsonb(changes), **preconditions(req)))

    @operation(
        summary="Soft-delete a task",
        scope="projects:write",
        function="api.delete_task",
        response=models.Task,
        conditional=True,
        errors=(404,),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, task_id: uuid.UUID) -> None:
        represent(req, resp, models.Task, call_one(req, task_id=task_id, **preconditions(req)))


class TenantResource:
    @operation(
        summary="The caller's tenant",
        scope="tenant:read",
        function="api.get_tenant",
        response=models.Tenant,
        conditional=True,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        represent(req, resp, models.Tenant, call_one(req))

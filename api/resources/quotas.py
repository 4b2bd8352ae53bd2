"""/v1/quotas: the tenant's limits and usage, metered reservations, restoring soft-deleted
projects and tasks (which takes their quota slot again), and the platform admin's plan
changes and quota overrides. The rules are the database's (sql/repeatable/070_quotas.sql):
an exceeded limit is TQ001, answered as 403 `quota_exceeded` with the resource,
`current`, `limit`, `plan` and an upgrade (api/errors.py reads them from the error).
"""

from __future__ import annotations

import datetime as dt
import uuid

import falcon

from api import models
from api.resources.base import body, call_one, shape
from api.spec import operation


def _reservation(row: dict) -> dict:
    return shape(models.Reservation, row | {"key": row["reservation_key"]})


class QuotasResource:
    @operation(
        summary="The tenant's quotas: per resource usage, limit, remaining, warning and over_limit; plan and features",
        scope="tenant:read",
        function="api.get_quotas",
        response=models.Quotas,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = call_one(req)["get_quotas"]


class ReservationsResource:
    @operation(
        summary="Reserve metered units before work (idempotent by key; over a blocking limit: 403 quota_exceeded)",
        scope="usage:write",
        function="api.reserve_quota",
        renamed={"ttl_seconds": "ttl"},
        body=models.ReservationCreate,
        response=models.Reservation,
        status=201,
        errors=(403, 409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ReservationCreate)
        row = call_one(
            req, key=data.key, resource=data.resource, units=data.units, ttl=dt.timedelta(seconds=data.ttl_seconds)
        )
        resp.media = _reservation(row)
        resp.status = 201


class ReservationConfirmResource:
    @operation(
        summary="Confirm a reservation with the units really used (idempotent); the rest is released",
        scope="usage:write",
        function="api.confirm_reservation",
        body=models.ReservationConfirm,
        response=models.Reservation,
        errors=(404, 409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        data = body(req, models.ReservationConfirm)
        resp.media = _reservation(call_one(req, key=key, actual_units=data.actual_units))


class ReservationReleaseResource:
    @operation(
        summary="Release a held reservation (idempotent)",
        scope="usage:write",
        function="api.release_reservation",
        response=models.Reservation,
        errors=(404, 409),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, key: str) -> None:
        resp.media = _reservation(call_one(req, key=key))


class ProjectRestoreResource:
    @operation(
        summary="Restore a soft-deleted project with the tasks deleted along with it (takes their quota slots)",
        scope="projects:write",
        function="api.restore_project",
        response=models.Project,
        errors=(403, 404, 409),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, project_id: uuid.UUID) -> None:
        resp.media = shape(models.Project, call_one(req, project_id=project_id))


class TaskRestoreResource:
    @operation(
        summary="Restore a soft-deleted task (its project must be live; takes its quota slot)",
        scope="projects:write",
        function="api.restore_task",
        response=models.Task,
        errors=(403, 404, 409),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, task_id: uuid.UUID) -> None:
        resp.media = shape(models.Task, call_one(req, task_id=task_id))


class AdminTenantQuotasResource:
    @operation(
        summary="A tenant's quotas, as its members see them",
        auth="admin",
        function="admin.get_tenant_quotas",
        response=models.Quotas,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        resp.media = call_one(req, tenant_id=tenant_id)["get_tenant_quotas"]


class AdminTenantQuotaResource:
    @operation(
        summary="Override a tenant's limit for one resource (null: unlimited); below usage it is over quota",
        auth="admin",
        function=("admin.set_quota_override", "admin.get_tenant_quotas"),
        renamed={"limit": "max_value"},
        body=models.QuotaOverride,
        response=models.Quotas,
        errors=(404, 422),
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID, resource: str) -> None:
        data = body(req, models.QuotaOverride)
        call_one(req, "admin.set_quota_override", tenant_id=tenant_id, resource=resource, max_value=data.limit)
        resp.media = call_one(req, "admin.get_tenant_quotas", tenant_id=tenant_id)["get_tenant_quotas"]

    @operation(
        summary="Remove a tenant's override: the plan's limit applies again",
        auth="admin",
        function=("admin.clear_quota_override", "admin.get_tenant_quotas"),
        response=models.Quotas,
        errors=(404,),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID, resource: str) -> None:
        call_one(req, "admin.clear_quota_override", tenant_id=tenant_id, resource=resource)
        resp.media = call_one(req, "admin.get_tenant_quotas", tenant_id=tenant_id)["get_tenant_quotas"]


class AdminTenantPlanResource:
    @operation(
        summary="Put a tenant on another plan (a downgrade below its usage is allowed: it is over quota, "
        "and creates are refused until it is under the limits)",
        auth="admin",
        function="admin.set_tenant_plan",
        renamed={"plan": "plan_id"},
        body=models.PlanChange,
        response=models.Tenant,
        errors=(404, 422),
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        data = body(req, models.PlanChange)
        resp.media = shape(models.Tenant, call_one(req, tenant_id=tenant_id, plan_id=data.plan))

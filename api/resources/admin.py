"""/v1/admin/tenants: platform administration across tenants.

The pipeline opens these requests' one transaction on the platform-admin role, with the
administrator as the context's actor; the session is checked there like any other (and
must be a platform administrator's), and admin.* records who did it (and refuses anyone
else: TA060).
"""

from __future__ import annotations

import uuid

import falcon

from api import models
from api.resources.base import PAGE_QUERY, body, call, call_one, limit_param, shape
from api.spec import operation


class AdminTenantsResource:
    @operation(
        summary="List tenants in slug order",
        auth="admin",
        function="admin.list_tenants",
        response=models.TenantPage,
        paginated=True,
        query=PAGE_QUERY
        | {"status": "Only tenants of this status", "cursor": "next_cursor of the previous page (a slug)"},
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        found = call(req, status=req.get_param("status"), limit=limit + 1, after_slug=req.get_param("cursor"))
        more = len(found) > limit
        items = found[:limit]
        resp.media = {
            "items": [shape(models.Tenant, t) for t in items],
            "next_cursor": items[-1]["slug"] if more else None,
        }

    @operation(
        summary="Create a tenant with an existing user as its owner",
        auth="admin",
        function="admin.create_tenant",
        renamed={"plan": "plan_id"},
        body=models.TenantCreate,
        response=models.Tenant,
        status=201,
        errors=(404, 409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.TenantCreate)
        created = call_one(req, slug=data.slug, name=data.name, plan_id=data.plan, owner_user_id=data.owner_user_id)
        resp.media = shape(models.Tenant, created)
        resp.status = 201


def _set_status(req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID, status: str) -> None:
    resp.media = shape(models.Tenant, call_one(req, tenant_id=tenant_id, status=status))


class AdminTenantResource:
    @operation(
        summary="Delete a tenant (final: it can neither read nor write again)",
        auth="admin",
        function="admin.set_tenant_status",
        response=models.Tenant,
        errors=(404, 409),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        _set_status(req, resp, tenant_id, "deleted")


class AdminTenantSuspendResource:
    @operation(
        summary="Suspend a tenant (it can read, not write)",
        auth="admin",
        function="admin.set_tenant_status",
        response=models.Tenant,
        errors=(404, 409),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        _set_status(req, resp, tenant_id, "suspended")


class AdminTenantReactivateResource:
    @operation(
        summary="Reactivate a suspended tenant",
        auth="admin",
        function="admin.set_tenant_status",
        response=models.Tenant,
        errors=(404, 409),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        _set_status(req, resp, tenant_id, "active")


class AdminTenantActionsResource:
    @operation(
        summary="What platform administrators did to a tenant, newest first",
        auth="admin",
        function="admin.list_tenant_actions",
        response=models.AdminActions,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        found = call(req, tenant_id=tenant_id)
        resp.media = {"items": [shape(models.AdminAction, a) for a in found]}

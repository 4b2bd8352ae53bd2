"""/v1/admin/tenants: platform administration across tenants.

The pipeline opens these requests' one transaction on the platform-admin role, with the
administrator as the context's actor; the session is checked there like any other (and
must be a platform administrator's), and admin.* records who did it (and refuses anyone
else: TA060).
"""

from __future__ import annotations

import falcon

from api import models
from api.resources.base import as_uuid, body, limit_param, row, rows, shape
from api.spec import operation


class AdminTenantsResource:
    @operation(summary="List tenants in slug order", auth="admin", response=models.TenantPage,
               query={"status": "Only tenants of this status", "limit": "Page size, 1-200",
                      "cursor": "next_cursor of the previous page (a slug)"})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        found = rows(req, "SELECT * FROM admin.list_tenants(%s, %s, %s)",
                     (req.get_param("status"), limit + 1, req.get_param("cursor")))
        more = len(found) > limit
        items = found[:limit]
        resp.media = {"items": [shape(models.Tenant, t) for t in items],
                      "next_cursor": items[-1]["slug"] if more else None}

    @operation(summary="Create a tenant with an existing user as its owner", auth="admin",
               body=models.TenantCreate, response=models.Tenant, status=201, errors=(404, 409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.TenantCreate)
        created = row(req, "SELECT * FROM admin.create_tenant(%s, %s, %s, %s)",
                      (data.slug, data.name, data.plan, data.owner_user_id))
        resp.media = shape(models.Tenant, created)
        resp.status = 201


def _set_status(req: falcon.Request, resp: falcon.Response, tenant_id: str, status: str) -> None:
    found = row(req, "SELECT * FROM admin.set_tenant_status(%s, %s)", (as_uuid(tenant_id, "tenant"), status))
    resp.media = shape(models.Tenant, found)


class AdminTenantResource:
    @operation(summary="Delete a tenant (final: it can neither read nor write again)", auth="admin",
               response=models.Tenant, errors=(404, 409))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(req, resp, tenant_id, "deleted")


class AdminTenantSuspendResource:
    @operation(summary="Suspend a tenant (it can read, not write)", auth="admin", response=models.Tenant,
               errors=(404, 409))
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(req, resp, tenant_id, "suspended")


class AdminTenantReactivateResource:
    @operation(summary="Reactivate a suspended tenant", auth="admin", response=models.Tenant, errors=(404, 409))
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(req, resp, tenant_id, "active")


class AdminTenantActionsResource:
    @operation(summary="What platform administrators did to a tenant, newest first", auth="admin",
               response=models.AdminActions)
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        found = rows(req, "SELECT * FROM admin.list_tenant_actions(%s)", (as_uuid(tenant_id, "tenant"),))
        resp.media = {"items": [shape(models.AdminAction, a) for a in found]}

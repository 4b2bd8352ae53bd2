"""/v1/admin/tenants: platform administration across tenants.

The caller's session is checked like any other (and must be a platform administrator's);
the call itself runs on the platform-admin role's pool, with the administrator as the
context's actor, so admin.* records who did it (and refuses anyone else: TA060).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import falcon
import psycopg
from psycopg.rows import dict_row

from api import models
from api.resources.base import as_uuid, body, limit_param, principal, shape
from api.spec import operation
from db.context import tenant_transaction


class AdminDatabase:
    def __init__(self, pool) -> None:
        self.pool = pool

    @contextmanager
    def transaction(self, req: falcon.Request) -> Iterator[psycopg.Connection]:
        with tenant_transaction(self.pool, None, actor_id=principal(req).actor_id, actor_type="platform_admin",
                                request_id=req.context.request_id) as conn:
            conn.row_factory = dict_row
            yield conn


class AdminTenantsResource:
    def __init__(self, db: AdminDatabase) -> None:
        self.db = db

    @operation(summary="List tenants in slug order", auth="admin", response=models.TenantPage,
               query={"status": "Only tenants of this status", "limit": "Page size, 1-200",
                      "cursor": "next_cursor of the previous page (a slug)"})
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        with self.db.transaction(req) as conn:
            found = conn.execute("SELECT * FROM admin.list_tenants(%s, %s, %s)",
                                 (req.get_param("status"), limit + 1, req.get_param("cursor"))).fetchall()
        more = len(found) > limit
        items = found[:limit]
        resp.media = {"items": [shape(models.Tenant, t) for t in items],
                      "next_cursor": items[-1]["slug"] if more else None}

    @operation(summary="Create a tenant with an existing user as its owner", auth="admin",
               body=models.TenantCreate, response=models.Tenant, status=201, errors=(404, 409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.TenantCreate)
        with self.db.transaction(req) as conn:
            created = conn.execute("SELECT * FROM admin.create_tenant(%s, %s, %s, %s)",
                                   (data.slug, data.name, data.plan, data.owner_user_id)).fetchone()
        resp.media = shape(models.Tenant, created)
        resp.status = 201


def _set_status(db: AdminDatabase, req: falcon.Request, resp: falcon.Response, tenant_id: str, status: str) -> None:
    with db.transaction(req) as conn:
        found = conn.execute("SELECT * FROM admin.set_tenant_status(%s, %s)",
                             (as_uuid(tenant_id, "tenant"), status)).fetchone()
    resp.media = shape(models.Tenant, found)


class AdminTenantResource:
    def __init__(self, db: AdminDatabase) -> None:
        self.db = db

    @operation(summary="Delete a tenant (final: it can neither read nor write again)", auth="admin",
               response=models.Tenant, errors=(404, 409))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(self.db, req, resp, tenant_id, "deleted")


class AdminTenantSuspendResource:
    def __init__(self, db: AdminDatabase) -> None:
        self.db = db

    @operation(summary="Suspend a tenant (it can read, not write)", auth="admin", response=models.Tenant,
               errors=(404, 409))
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(self.db, req, resp, tenant_id, "suspended")


class AdminTenantReactivateResource:
    def __init__(self, db: AdminDatabase) -> None:
        self.db = db

    @operation(summary="Reactivate a suspended tenant", auth="admin", response=models.Tenant, errors=(404, 409))
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        _set_status(self.db, req, resp, tenant_id, "active")


class AdminTenantActionsResource:
    def __init__(self, db: AdminDatabase) -> None:
        self.db = db

    @operation(summary="What platform administrators did to a tenant, newest first", auth="admin",
               response=models.AdminActions)
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: str) -> None:
        with self.db.transaction(req) as conn:
            found = conn.execute("SELECT * FROM admin.list_tenant_actions(%s)",
                                 (as_uuid(tenant_id, "tenant"),)).fetchall()
        resp.media = {"items": [shape(models.AdminAction, a) for a in found]}

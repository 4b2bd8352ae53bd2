"""Small helpers shared by the tests: calling api.* functions as the tenant's owner, and
checking the HTTP API's problem answers."""

from __future__ import annotations

import re
import uuid
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from db.context import Context, transaction


def call(pool: ConnectionPool, tenant_id: uuid.UUID | None, function: str, *args: Any, **kwargs: Any) -> list[dict]:
    """Call api.<function>(tenant_id, *args, name => value...) in one tenant transaction.

    Returns the rows. The tenant argument and the context are the same tenant unless
    `as_tenant` is given (the context), to test mismatches. The actor is the context
    tenant's owner (see tests.conftest.OWNERS).
    """
    context = kwargs.pop("as_tenant", tenant_id)
    named = ", ".join(f"{name} => %({name})s" for name in kwargs)
    positional = ", ".join(["%s"] * (len(args) + 1))
    params: Any
    if kwargs:
        placeholders = ", ".join(f"%(a{i})s" for i in range(len(args) + 1))
        params = {f"a{i}": v for i, v in enumerate((tenant_id, *args))} | kwargs
        query = f"SELECT * FROM api.{function}({placeholders}{', ' + named})"
    else:
        params = (tenant_id, *args)
        query = f"SELECT * FROM api.{function}({positional})"
    with owner_transaction(pool, context) as conn:
        with conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)
            return cur.fetchall()


def owner_transaction(pool: ConnectionPool, tenant_id: uuid.UUID | None, **context: Any):
    """A tenant transaction acting as the tenant's owner (no actor without a tenant)."""
    from tests.conftest import OWNERS

    actor = OWNERS.get(tenant_id) if tenant_id else None
    return transaction(pool, Context(tenant_id, actor, "user" if actor else None, **context))


def one(pool: ConnectionPool, tenant_id: uuid.UUID | None, function: str, *args: Any, **kwargs: Any) -> dict:
    rows = call(pool, tenant_id, function, *args, **kwargs)
    assert len(rows) == 1, rows
    return rows[0]


# -- the HTTP API ---------------------------------------------------------------------------

PROBLEM_FIELDS = {"type", "title", "status", "code", "detail", "instance", "request_id"}
#: what must never reach a client: traceback text, source paths, driver internals
LEAK = re.compile(r"Traceback|File \"|site-packages|psycopg|\.py\b|line \d+, in ")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def no_leak(resp) -> None:
    assert not LEAK.search(resp.text), f"internal detail in the body: {resp.text}"


def problem(resp, status: int, code: str, field: str | None = None) -> dict:
    """Assert `resp` is an application/problem+json answer with this status and code."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body = resp.json()
    assert PROBLEM_FIELDS <= body.keys(), body
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"/problems/{code}"
    assert body["instance"] == resp.request.url.path
    assert body["request_id"] == resp.headers["X-Request-ID"]
    if field is not None:
        assert body.get("field") == field, body
    no_leak(resp)
    return body

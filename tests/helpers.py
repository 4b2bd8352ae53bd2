"""Small helpers for calling api.* functions the way the API will: as the tenant's owner."""

from __future__ import annotations

import uuid
from typing import Any

from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from db.context import tenant_transaction


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
    return tenant_transaction(pool, tenant_id, actor_id=actor, actor_type="user" if actor else None, **context)


def one(pool: ConnectionPool, tenant_id: uuid.UUID | None, function: str, *args: Any, **kwargs: Any) -> dict:
    rows = call(pool, tenant_id, function, *args, **kwargs)
    assert len(rows) == 1, rows
    return rows[0]

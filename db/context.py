"""Connection pools and the per-transaction tenant context.

Every tenant-scoped unit of work is one transaction that starts with SET LOCAL of the
app.* settings the database reads (core.current_tenant_id() and friends). SET LOCAL,
not set_config(): only SET statements reach the Citus workers (architecture fact 8).
SET takes no bind parameters, so each value is validated here, then composed as a
quoted literal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from db.settings import Settings

ACTOR_TYPES = frozenset({"user", "api_key", "system", "platform_admin"})
MAX_REQUEST_ID_LENGTH = 200


class ContextError(ValueError):
    """A context value is malformed; nothing was sent to the database."""


def open_pool(url: str, settings: Settings, name: str) -> ConnectionPool:
    """A pool of connections to `url` (one role), opened and checked."""
    pool = ConnectionPool(
        url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        name=name,
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


def _as_uuid(value: uuid.UUID | str | None, name: str) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ContextError(f"{name} must be a UUID, not {value!r}") from None


def context_statement(
    tenant_id: uuid.UUID | str | None,
    *,
    actor_id: uuid.UUID | str | None = None,
    actor_type: str | None = None,
    request_id: str | None = None,
) -> sql.Composed | None:
    """The SET LOCAL statements for a context, values validated and quoted; None if empty."""
    values: dict[str, str | None] = {
        "app.tenant_id": str(_as_uuid(tenant_id, "tenant_id") or "") or None,
        "app.actor_id": str(_as_uuid(actor_id, "actor_id") or "") or None,
        "app.actor_type": actor_type,
        "app.request_id": request_id,
    }
    if actor_type is not None and actor_type not in ACTOR_TYPES:
        raise ContextError(f"actor_type must be one of {sorted(ACTOR_TYPES)}, not {actor_type!r}")
    if request_id is not None and (
        len(request_id) > MAX_REQUEST_ID_LENGTH or not request_id.isprintable() or not request_id.isascii()
    ):
        raise ContextError(f"request_id must be printable ASCII of at most {MAX_REQUEST_ID_LENGTH} characters")
    statements = [
        sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value))
        for name, value in values.items()
        if value is not None
    ]
    return sql.SQL("; ").join(statements) if statements else None


@contextmanager
def tenant_transaction(
    pool: ConnectionPool,
    tenant_id: uuid.UUID | str | None,
    *,
    actor_id: uuid.UUID | str | None = None,
    actor_type: str | None = None,
    request_id: str | None = None,
) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection, with the tenant context set.

    Commits when the block ends, rolls back if it raises. The context vanishes with the
    transaction, so the pooled connection goes back clean. tenant_id=None opens a
    transaction without a tenant, which sees no tenant rows (fail closed).
    """
    statement = context_statement(tenant_id, actor_id=actor_id, actor_type=actor_type, request_id=request_id)
    with pool.connection() as conn:
        with conn.transaction():
            if statement is not None:
                conn.execute(statement)
            yield conn

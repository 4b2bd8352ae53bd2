"""The one way into the database: a `Context` and `Database.transaction(context)`.

Every unit of work -- an API request, a CLI command, a job, a test -- is one transaction
on a pooled connection of one role, that starts with SET LOCAL of the app.* settings
the database reads (core.current_tenant_id() and friends). SET LOCAL, not set_config():
only SET statements reach the Citus workers (docs/citus.md, fact 8). SET takes no bind
parameters, so each value is validated when the Context is made, then composed as a
quoted literal.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from db import dsn
from db.settings import API_ROLE, Settings

ActorType = Literal["user", "api_key", "system", "platform_admin"]
ACTOR_TYPES = frozenset(get_args(ActorType))
MAX_REQUEST_ID_LENGTH = 200


class ContextError(ValueError):
    """A context value is malformed; nothing was sent to the database."""


def _as_uuid(value: uuid.UUID | str | None, name: str) -> uuid.UUID | None:
    if value is None or isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ContextError(f"{name} must be a UUID, not {value!r}") from None


@dataclass(frozen=True)
class Context:
    """Who acts, for which tenant, in which request (and user session), as which database role.

    No tenant means no tenant rows (fail closed). Values are checked here, so a
    malformed one never reaches SQL.
    """

    tenant_id: uuid.UUID | None = None
    actor_id: uuid.UUID | None = None
    actor_type: ActorType | None = None
    request_id: str | None = None
    role: str = field(default=API_ROLE)
    #: the user's session (from their access token): the after-login auth.* functions
    #: act for the user of this session only (core.context_session)
    session_id: uuid.UUID | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenant_id", _as_uuid(self.tenant_id, "tenant_id"))
        object.__setattr__(self, "actor_id", _as_uuid(self.actor_id, "actor_id"))
        object.__setattr__(self, "session_id", _as_uuid(self.session_id, "session_id"))
        if self.actor_type is not None and self.actor_type not in ACTOR_TYPES:
            raise ContextError(f"actor_type must be one of {sorted(ACTOR_TYPES)}, not {self.actor_type!r}")
        rid = self.request_id
        if rid is not None and (len(rid) > MAX_REQUEST_ID_LENGTH or not rid.isprintable() or not rid.isascii()):
            raise ContextError(f"request_id must be printable ASCII of at most {MAX_REQUEST_ID_LENGTH} characters")

    def statement(self) -> sql.Composed | None:
        """The SET LOCAL statements for this context, values quoted; None if empty."""
        values = {
            "app.tenant_id": self.tenant_id and str(self.tenant_id),
            "app.actor_id": self.actor_id and str(self.actor_id),
            "app.actor_type": self.actor_type,
            "app.request_id": self.request_id,
            "app.session_id": self.session_id and str(self.session_id),
        }
        statements = [
            sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value))
            for name, value in values.items()
            if value is not None
        ]
        return sql.SQL("; ").join(statements) if statements else None


@contextmanager
def transaction(pool: ConnectionPool, context: Context) -> Iterator[psycopg.Connection]:
    """One transaction on a connection of `pool`, with the context set first.

    Commits when the block ends, rolls back if it raises (raise psycopg.Rollback to
    roll back quietly). The pool's own context manager returns the connection on every
    path, broken or not, and the context vanishes with the transaction. `pool` must be
    a pool of `context.role` (Database.transaction picks it).
    """
    statement = context.statement()
    with pool.connection() as conn, conn.transaction():
        if statement is not None:
            conn.execute(statement)
        yield conn


class Database:
    """A connection pool per role, opened on first use, and the one way to use them."""

    def __init__(self, settings: Settings, *, dict_rows: bool = False, name: str = "tenantry") -> None:
        self.settings = settings
        self.dict_rows = dict_rows
        self.name = name
        self._pools: dict[str, ConnectionPool] = {}

    def pool(self, role: str = API_ROLE) -> ConnectionPool:
        """The pool of `role` (opened and checked the first time)."""
        if role not in self._pools:
            kwargs: dict[str, Any] = {"row_factory": dict_row} if self.dict_rows else {}
            pool: ConnectionPool = ConnectionPool(
                dsn.role_url(self.settings, role),
                min_size=self.settings.pool_min_size,
                max_size=self.settings.pool_max_size,
                kwargs=kwargs,
                name=f"{self.name}-{role}",
                open=False,
            )
            pool.open(wait=True, timeout=30)
            self._pools[role] = pool
        return self._pools[role]

    def transaction(self, context: Context) -> AbstractContextManager[psycopg.Connection]:
        """One transaction as `context.role`, with the context set first (see `transaction`)."""
        return transaction(self.pool(context.role), context)

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

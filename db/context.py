"""The one way into the database: a `Context` and `Database.transaction(context)`.

Every unit of work -- an API request, a CLI command, a job, a test -- is one transaction
on a pooled connection of one role, that starts with SET LOCAL of the app.* settings
the database reads (core.current_tenant_id() and friends). SET LOCAL, not set_config():
only SET statements reach the Citus workers (docs/citus.md, fact 8). SET takes no bind
parameters, so each value is validated when the Context is made, then composed as a
quoted literal.

Faults (docs/operations.md). A restart of the server breaks every idle pooled connection:
the first one found broken has the pool test and replace all of them at once (`_connection`),
so the request goes on with a new one instead of failing. While the server cannot be
reached, `Database.transaction` raises at once (a direct connection attempt, refused in
milliseconds, instead of waiting for the pool each time) until a probe gets through
again; `unavailable(exc)` tells those errors from a statement's own.
"""

from __future__ import annotations

import math
import select
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
def transaction(
    pool: ConnectionPool, context: Context, *, probe: Callable[[], None] | None = None
) -> Iterator[psycopg.Connection]:
    """One transaction on a connection of `pool`, with the context set first.

    Commits when the block ends, rolls back if it raises (raise psycopg.Rollback to
    roll back quietly). The pool's own context manager returns the connection on every
    path, broken or not, and the context vanishes with the transaction. `pool` must be
    a pool of `context.role` (Database.transaction picks it). `probe` is called when an
    idle connection turns out dead, before another is waited for (see `_connection`).
    """
    statement = context.statement()
    with _connection(pool, probe) as conn, conn.transaction():
        if statement is not None:
            conn.execute(statement)
        yield conn


#: SQLSTATEs that say the server is not there (rather than that a statement failed):
#: class 08 (connection exceptions), admin_shutdown, crash_shutdown, cannot_connect_now
UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})


def unavailable(exc: BaseException) -> bool:
    """Whether `exc` means the database cannot be reached now: no pooled connection in
    time, a connection refused or lost (no SQLSTATE), class 08, or a server shutting down
    or starting. A statement's own error (a constraint, a timeout) is not one."""
    if isinstance(exc, PoolTimeout):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith("08") or state in UNAVAILABLE_SQLSTATES


def _closed_by_server(conn: psycopg.Connection) -> bool:
    """Whether an idle connection was closed by the server: a healthy idle connection has
    nothing to read, one the server ended (a restart, an admin's pg_terminate_backend) has
    its goodbye or end-of-file waiting. A readable socket gets the real test, a round trip;
    a quiet one costs no round trip at all."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
        if not readable:
            return False
        ConnectionPool.check_connection(conn)
    except (psycopg.Error, OSError, ValueError):
        return True
    return False


@contextmanager
def _connection(pool: ConnectionPool, probe: Callable[[], None] | None = None) -> Iterator[psycopg.Connection]:
    """A working connection of `pool`, returned to it on every path (its own context manager).

    After a restart of the server every idle connection is dead. Handing them out would
    fail one request per dead connection; the pool's own `check` callback would sleep a
    second and more between them. The first one found dead has the pool test all its idle
    connections at once and replace the broken ones (`pool.check()`); then another one is
    taken. `probe` first raises if the server is down (rather than waiting for the pool).
    """
    with pool.connection() as conn:
        if not _closed_by_server(conn):
            yield conn
            return
    if probe is not None:
        probe()
    pool.check()
    with pool.connection() as conn:
        yield conn


class Database:
    """A connection pool per role, opened on first use, and the one way to use them."""

    def __init__(self, settings: Settings, *, dict_rows: bool = False, name: str = "tenantry") -> None:
        self.settings = settings
        self.dict_rows = dict_rows
        self.name = name
        self._pools: dict[str, ConnectionPool] = {}
        #: roles whose server could not be reached by the last transaction (see `transaction`)
        self._unreachable: set[str] = set()
        self._lock = threading.Lock()

    def _conninfo(self, role: str) -> tuple[str, int]:
        """The role's DSN and the connect timeout to use with it: the DSN's own, else
        `pool_timeout` (at least 2 s, libpq's minimum), so that a server that does not
        answer at all (a host gone, a firewall dropping packets) fails as fast as one that refuses."""
        url = dsn.role_url(self.settings, role)
        given = conninfo_to_dict(url).get("connect_timeout")
        return url, int(given) if given else max(2, math.ceil(self.settings.pool_timeout))

    def pool(self, role: str = API_ROLE) -> ConnectionPool:
        """The pool of `role` (opened and checked the first time).

        A request waits `pool_timeout` for a connection at most. A connection that failed
        is retried with backoff for as long again, then given up, which frees its place in
        the pool (psycopg_pool's default is 5 minutes of retries 1, 2, 4 ... 128 s apart,
        each holding a place: after a few restarts a pool had no place left for a working
        connection, and requests waited 30 s for a 500)."""
        with self._lock:
            if role not in self._pools:
                url, connect_timeout = self._conninfo(role)
                kwargs: dict[str, Any] = {"connect_timeout": connect_timeout}
                if self.dict_rows:
                    kwargs["row_factory"] = dict_row
                pool: ConnectionPool = ConnectionPool(
                    url,
                    min_size=self.settings.pool_min_size,
                    max_size=self.settings.pool_max_size,
                    kwargs=kwargs,
                    name=f"{self.name}-{role}",
                    timeout=self.settings.pool_timeout,
                    reconnect_timeout=self.settings.pool_timeout,
                    open=False,
                )
                pool.open(wait=True, timeout=30)
                self._pools[role] = pool
            return self._pools[role]

    def transaction(self, context: Context) -> AbstractContextManager[psycopg.Connection]:
        """One transaction as `context.role`, with the context set first (see `transaction`).

        While the role's server is known to be unreachable, a direct connection attempt
        comes first and raises at once if it still is (an OperationalError `unavailable`
        says so), rather than every request waiting `pool_timeout` for the pool."""
        return self._transaction(context)

    @contextmanager
    def _transaction(self, context: Context) -> Iterator[psycopg.Connection]:
        role = context.role
        if role in self._unreachable:
            self._probe(role)
        try:
            with transaction(self.pool(role), context, probe=lambda: self._probe(role)) as conn:
                yield conn
        except psycopg.OperationalError as exc:  # PoolTimeout is one too
            if unavailable(exc):
                self._unreachable.add(role)
            raise
        self._unreachable.discard(role)

    def _probe(self, role: str) -> None:
        """Connect once, outside the pool: raises the OperationalError if the server still
        cannot be reached; otherwise the role is reachable again."""
        url, connect_timeout = self._conninfo(role)
        psycopg.connect(url, connect_timeout=connect_timeout).close()
        self._unreachable.discard(role)

    def ping(self, role: str = API_ROLE) -> None:
        """Raise if the database cannot run `SELECT 1` for `role` now (for /ready)."""
        with self.transaction(Context(role=role)) as conn:
            conn.execute("SELECT 1")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

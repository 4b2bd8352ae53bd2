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

Round trips (issue 10). Each round trip to the server costs the API worker's CPU (psycopg
and the system calls) as well as time, so a transaction opens in ONE string: `BEGIN; SET
LOCAL app.* = ...` sent as a simple query (SET LOCAL, not set_config(): fact 8). With
`deferred=True` even that is held back (`Connection.hold`) and sent with the transaction's
first statement, and the API sends its last one with `COMMIT` (`Connection.execute_last`):
a GET is then one round trip, BEGIN to COMMIT.
"""

from __future__ import annotations

import ipaddress
import math
import select
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, get_args

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from db import dsn
from db.settings import API_ROLE, Settings

ActorType = Literal["user", "api_key", "system", "platform_admin"]
ACTOR_TYPES = frozenset(get_args(ActorType))
MAX_REQUEST_ID_LENGTH = 200


class ContextError(ValueError):
    """A context value is malformed; nothing was sent to the database."""


@lru_cache(maxsize=4096)  # once per client address, not once per request (issue 10's profile)
def _canonical_ip(text: str) -> str:
    return str(ipaddress.ip_address(text))


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
    #: the client's address as the API resolved it (the audit log records it: app.client_ip)
    client_ip: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "tenant_id", _as_uuid(self.tenant_id, "tenant_id"))
        object.__setattr__(self, "actor_id", _as_uuid(self.actor_id, "actor_id"))
        object.__setattr__(self, "session_id", _as_uuid(self.session_id, "session_id"))
        if self.actor_type is not None and self.actor_type not in ACTOR_TYPES:
            raise ContextError(f"actor_type must be one of {sorted(ACTOR_TYPES)}, not {self.actor_type!r}")
        rid = self.request_id
        if rid is not None and (len(rid) > MAX_REQUEST_ID_LENGTH or not rid.isprintable() or not rid.isascii()):
            raise ContextError(f"request_id must be printable ASCII of at most {MAX_REQUEST_ID_LENGTH} characters")
        if self.client_ip is not None:
            try:
                object.__setattr__(self, "client_ip", _canonical_ip(self.client_ip))
            except ValueError:
                raise ContextError(f"client_ip must be an IP address, not {self.client_ip!r}") from None

    def statement(self) -> sql.Composed | None:
        """The SET LOCAL statements for this context, values quoted; None if empty."""
        statements = self._set_local()
        return sql.SQL("; ").join(statements) if statements else None

    def _values(self) -> dict[str, str | None]:
        return {
            "app.tenant_id": str(self.tenant_id) if self.tenant_id else None,
            "app.actor_id": str(self.actor_id) if self.actor_id else None,
            "app.actor_type": self.actor_type,
            "app.request_id": self.request_id,
            "app.session_id": str(self.session_id) if self.session_id else None,
            "app.client_ip": self.client_ip,
        }

    def _set_local(self) -> list[sql.Composed]:
        return [
            sql.SQL("SET LOCAL {} = {}").format(sql.SQL(name), sql.Literal(value))
            for name, value in self._values().items()
            if value is not None
        ]

    def opening(self, conn: psycopg.Connection) -> tuple[str, int]:
        """`BEGIN` and the context's settings, as one simple-query string for `conn`, and
        how many statements it holds (the same values as `statement`).

        On a connection known to be to PostgreSQL without Citus (`Connection.plain_postgres`,
        learnt when the pool connects) the settings go as ONE `SELECT set_config(name, value, true), ...`, which
        is what SET LOCAL does, in one statement instead of six: each statement of the
        folded string is a result psycopg walks through and the server parses and runs
        (the opening was a third of a GET's statements). Elsewhere (Citus, plain psycopg
        connections) they go as SET LOCAL, the only form that reaches the Citus workers
        (docs/citus.md, fact 8).

        Built as text, once per request: composing psycopg.sql objects cost more than the
        rest of the opening. Values that cannot hold a quote or a backslash (`_literal`)
        go between quotes as they are; any other is quoted by psycopg, for this connection."""
        settings = [(name, _literal(value, conn)) for name, value in self._values().items() if value is not None]
        if not settings:
            return "BEGIN", 1
        if getattr(conn, "plain_postgres", False):
            calls = ", ".join(f"pg_catalog.set_config('{name}', {literal}, true)" for name, literal in settings)
            return f"BEGIN; SELECT {calls}", 2
        parts = ["BEGIN", *(f"SET LOCAL {name} = {literal}" for name, literal in settings)]
        return "; ".join(parts), len(parts)


def _literal(value: str, conn: psycopg.Connection) -> str:
    """`value` as an SQL string literal. Context values are printable ASCII (checked in
    Context.__post_init__: ids are canonical UUIDs, the client's address went through
    ipaddress); one without a quote or a backslash is the same text between quotes
    (under standard_conforming_strings or not), which saves psycopg's quoting per request."""
    if "'" not in value and "\\" not in value and value.isascii() and value.isprintable():
        return f"'{value}'"
    return sql.Literal(value).as_string(conn)


#: a statement as psycopg takes it (no template strings: the opening is folded as text)
Statement = str | bytes | sql.SQL | sql.Composed

#: what to run right after the opening, in its round trip, and who gets its rows
FirstStatement = tuple[str, Callable[[list[Any]], None]]


class Connection(psycopg.Connection[Any]):
    """psycopg's connection, able to send a transaction's opening with its first statement.

    `hold(opening)` keeps the opening (`BEGIN; SET LOCAL ...`, and optionally a first
    statement whose rows go to a callback) unsent; the next `execute` sends it and the
    statement together, as one simple query (a ClientCursor binds the parameters: a
    simple query cannot carry bind parameters, and only a simple query may hold several
    statements), and returns the cursor at the statement's result. Every other way in
    (`cursor`, `transaction`, `pipeline`) sends the opening first, on its own, so no
    statement can run outside the transaction or without its context.
    `execute_last(...)` also appends COMMIT: the transaction ends with that statement,
    and a statement after it is refused (it would run without the context).
    """

    _held: str | None = None
    _held_count = 0  # statements in _held (their results come before the caller's)
    _opening: str = ""  # the opening alone (BEGIN; SET LOCAL ...), for the unfolded path
    _first: FirstStatement | None = None
    _ended = False  # the transaction was committed by execute_last
    #: whether statements go folded into one simple query with the opening. Not on Citus
    #: (the pool's configure sets it): a coordinator that delegates a distributed call to
    #: a worker sends the whole query string there, so a folded call ran twice
    #: (docs/citus.md, fact 33); there the opening goes alone (SET LOCAL only, safe), then
    #: each statement with its own parameters.
    fold = True
    #: whether the server is known to be PostgreSQL without Citus (the pool's configure
    #: learns it): only then may the context go as set_config(), which does not reach
    #: Citus workers (fact 8). Unknown means SET LOCAL, which is right everywhere.
    plain_postgres = False

    def hold(self, opening: tuple[str, int], first: FirstStatement | None = None) -> None:
        """Send `opening` (text and number of statements: Context.opening) and `first`
        with the next statement instead of now."""
        text, count = opening
        self._opening = text
        if first is not None:
            text, count = f"{text}; {first[0]}", count + 1
        self._held, self._held_count, self._first, self._ended = text, count, first, False

    @property
    def holding(self) -> bool:
        """Whether the opening is still unsent (no statement ran in the transaction yet)."""
        return self._held is not None

    def release(self) -> None:
        """Forget what is held and the end of the transaction (the transaction is over)."""
        self._held, self._first, self._ended = None, None, False

    def flush(self) -> None:
        """Send the held opening now, on its own (nothing if nothing is held)."""
        if self._held is not None:
            self._send(None, None, commit=False)

    def execute(  # type: ignore[override]  # psycopg's signature, minus template strings
        self, query: Statement, params: Any = None, *, prepare: bool | None = None, binary: bool = False
    ) -> psycopg.Cursor[Any]:
        if self._held is not None and not binary:
            return self._send(query, params, commit=False)
        self._refuse_after_end()
        return super().execute(query, params, prepare=prepare, binary=binary)

    def execute_last(self, query: Statement, params: Any = None) -> psycopg.Cursor[Any]:
        """`execute`, and COMMIT in the same round trip: the transaction's last statement
        (with a held opening, BEGIN to COMMIT in one). Outside a transaction block it is a
        plain `execute`."""
        self._refuse_after_end()
        if self._held is None and self.info.transaction_status != TransactionStatus.INTRANS:
            return self.execute(query, params)
        return self._send(query, params, commit=True)

    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        self.flush()
        self._refuse_after_end()
        return super().cursor(*args, **kwargs)

    @contextmanager
    def transaction(self, savepoint_name: str | None = None, force_rollback: bool = False) -> Iterator[Any]:
        self.flush()
        self._refuse_after_end()
        with super().transaction(savepoint_name, force_rollback) as tx:
            yield tx

    @contextmanager
    def pipeline(self) -> Iterator[Any]:
        self.flush()
        self._refuse_after_end()
        with super().pipeline() as p:
            yield p

    def _refuse_after_end(self) -> None:
        if self._ended:
            raise psycopg.ProgrammingError("the transaction was committed with its last statement (execute_last)")

    def _send(self, query: Statement | None, params: Any, *, commit: bool) -> psycopg.Cursor[Any]:
        if not self.fold:
            return self._send_unfolded(query, params, commit=commit)
        held, count, first = self._held, self._held_count, self._first
        if held is None:  # execute_last in an open transaction: the statement and COMMIT
            held, count, first = "", 0, None
        self._held, self._first = None, None
        cur = psycopg.ClientCursor(self, row_factory=self.row_factory)
        parts = [held] if held else []
        if query is not None:
            # the caller's statement bound on its own (its text is constant, so psycopg's
            # parse of it is cached), then sent with the opening, which is never parsed
            text = query.as_string(self) if isinstance(query, sql.Composable) else query
            if isinstance(text, bytes):
                text = text.decode()
            parts.append(cur.mogrify(text, params) if params is not None else text)
        if commit:
            parts.append("COMMIT")
        cur.execute("; ".join(parts).encode())  # bytes, no parameters: sent as it is
        first_rows: list[Any] = []
        for n in range(count if query is not None else count - 1):
            if first is not None and n == count - 1:
                first_rows = cur.fetchall()
            cur.nextset()
        if query is None and first is not None:
            first_rows = cur.fetchall()
        self._ended = commit
        if first is not None:
            first[1](first_rows)
        return cur

    def _send_unfolded(self, query: Statement | None, params: Any, *, commit: bool) -> psycopg.Cursor[Any]:
        """`_send` one statement per round trip (Citus): the opening, the first statement,
        the caller's, then COMMIT."""
        held, first = self._held, self._first
        self._held, self._first = None, None
        if held is not None:
            super().execute(self._opening.encode())
            if first is not None:
                first[1](super().execute(first[0].encode()).fetchall())
        cur = super().execute(query, params) if query is not None else self.cursor()
        if commit:
            super().execute(b"COMMIT")
            self._ended = True
        return cur


def configure_connection(conn: psycopg.Connection[Any]) -> None:
    """Configure a new pooled connection: whether it may fold statements and send the
    context as set_config() (on plain PostgreSQL; not on Citus, facts 8 and 33). Every
    pool of `Connection`s takes it (`Database`, and benchmarks that build their own)."""
    if isinstance(conn, Connection):
        plain = conn.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'").fetchone() is None
        conn.fold = conn.plain_postgres = plain
        conn.commit()


@contextmanager
def transaction(
    pool: ConnectionPool[Any],
    context: Context,
    *,
    probe: Callable[[], None] | None = None,
    deferred: bool = False,
    first: FirstStatement | None = None,
) -> Iterator[Any]:
    """One transaction on a connection of `pool`, with the context set first.

    Commits when the block ends, rolls back if it raises (raise psycopg.Rollback to
    roll back quietly). The pool's own context manager returns the connection on every
    path, broken or not, and the context vanishes with the transaction. `pool` must be
    a pool of `context.role` (Database.transaction picks it). `probe` is called when an
    idle connection turns out dead, before another is waited for (see `_connection`).

    The transaction is ours, not psycopg's: the connection is in autocommit mode while
    we hold it, and `BEGIN; SET LOCAL ...` goes as one string (one round trip instead
    of two). With `deferred`, not even that is sent until the first statement, which
    carries it (`Connection.hold`); a block that runs no statement costs no round trip.
    `first` runs right after the opening, in the same round trip, and its rows go to the
    callback (the API's session check).
    """
    with _connection(pool, probe) as conn:
        ours = isinstance(conn, Connection)
        if not ours and (deferred or first is not None):
            raise TypeError("deferred needs a pool of db.context.Connection connections (Database.pool makes them)")
        conn.autocommit = True  # no implicit BEGIN of psycopg's: the opening says BEGIN
        try:
            if isinstance(conn, Connection):
                conn.hold(context.opening(conn), first)
                if not deferred:
                    conn.flush()
            else:  # a plain psycopg pool (a test's or a benchmark's own): the opening now
                conn.execute(context.opening(conn)[0])
            yield conn
        except psycopg.Rollback:
            _end(conn, commit=False)
        except BaseException:
            _end(conn, commit=False)
            raise
        else:
            _end(conn, commit=True)


def _end(conn: psycopg.Connection, *, commit: bool) -> None:
    """COMMIT or ROLLBACK whatever was sent (nothing if nothing was, or if execute_last
    committed), then give the connection back as the pool lent it (not autocommit)."""
    if isinstance(conn, Connection):
        conn.release()
    try:
        status = conn.info.transaction_status
        if status == TransactionStatus.INTRANS and commit:
            conn.commit()
        elif status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
            conn.rollback()
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.autocommit = False


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
def _connection(pool: ConnectionPool[Any], probe: Callable[[], None] | None = None) -> Iterator[psycopg.Connection]:
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
                    connection_class=Connection,
                    configure=configure_connection,
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

    def transaction(
        self, context: Context, *, deferred: bool = False, first: FirstStatement | None = None
    ) -> AbstractContextManager[Connection]:
        """One transaction as `context.role`, with the context set first (see `transaction`;
        `deferred` and `first` are its options: the API sends the opening with its call).

        While the role's server is known to be unreachable, a direct connection attempt
        comes first and raises at once if it still is (an OperationalError `unavailable`
        says so), rather than every request waiting `pool_timeout` for the pool."""
        return self._transaction(context, deferred, first)

    @contextmanager
    def _transaction(self, context: Context, deferred: bool, first: FirstStatement | None) -> Iterator[Connection]:
        role = context.role
        if role in self._unreachable:
            self._probe(role)
        try:
            with transaction(
                self.pool(role), context, probe=lambda: self._probe(role), deferred=deferred, first=first
            ) as conn:
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
        with self.transaction(Context(role=role), deferred=True) as conn:
            conn.execute_last("SELECT 1")

    def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

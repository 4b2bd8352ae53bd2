"""Fixtures: a migrated database, role pools, tenants, Redis and the API.

By default the suite runs on the embedded server. pytest-postgresql's noproc fixture
(`migrated_template`) makes a template database and migrates it once per session; the
session's database is a clone of it, and `scratch_database` gives a test databases of its
own (empty, or another clone). All are named `tenantry_test_<pid>...`, so concurrent
sessions on one server never collide, and dropped at the end. If a test session started
the embedded server, the last session to end stops it (unless another client uses it);
a server that was already running is left running.

With TENANTRY_TEST_DSN the suite runs against that server instead (e.g. a Citus
coordinator: `tenantry citus dev-cluster up`), after removing the project's objects there
and migrating from zero: a template would not clone Citus shards.
"""

from __future__ import annotations

import fcntl
import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy.engine import URL, make_url

from db import migrate
from db.context import Context, Database
from db.local.embedded import embedded_server
from db.local.postgres import LocalServer, free_port
from db.local.redis import LocalRedis
from db.settings import ANALYST_ROLE, API_ROLE, PLATFORM_ADMIN_ROLE, Settings, get_settings
from tests.helpers import OWNERS, TEST_PASSWORD_HASH, Account, NewTenant, Outbox, SignUp, start_api

TEST_DSN = os.environ.get("TENANTRY_TEST_DSN")

#: the session's database; its template and scratch databases are named after it
SESSION_DATABASE = f"tenantry_test_{os.getpid()}"

hypothesis_settings.register_profile("default", deadline=None)
hypothesis_settings.load_profile("default")


# -- databases ----------------------------------------------------------------------------


def database_url(server_url: str, name: str) -> str:
    """The URL of database `name` on the server of `server_url`."""
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def janitor(server_url: str, name: str, template: str | None = None) -> DatabaseJanitor:
    """pytest-postgresql's janitor of database `name` (a clone of `template` if given)."""
    server = {key: str(value) for key, value in conninfo_to_dict(server_url).items() if value is not None}
    return DatabaseJanitor(
        user=server.get("user", "postgres"),
        password=server.get("password"),
        host=server.get("host", "127.0.0.1"),
        port=server.get("port", "5432"),
        dbname=name,
        template_dbname=template,
        maintenance_dbname=server.get("dbname", "postgres"),
    )


def reset_project_objects(url: str) -> None:
    """Remove everything the project created in a database (roles stay: cluster-wide)."""
    with psycopg.connect(url, autocommit=True) as conn:
        has_alembic = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]
    if has_alembic:
        migrate.downgrade(url, "base")
    with psycopg.connect(url, autocommit=True) as conn:
        for schema in ("analytics", "admin", "ops", "auth", "api", "core"):
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.execute("DROP TABLE IF EXISTS public.alembic_version")


def drop_databases_of_this_pid(server_url: str) -> None:
    """Drop what an earlier session with our pid left behind (it crashed): the janitor
    refuses to create a database that exists."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s",
                (SESSION_DATABASE, SESSION_DATABASE.replace("_", r"\_") + r"\_%"),
            )
        ]
        for name in names:
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@contextmanager
def migrations_one_at_a_time(server_url: str) -> Iterator[None]:
    """Hold an advisory lock (in the server URL's database, the same for every session)
    while migrating: roles are cluster-wide, and two sessions running policies/00_roles.sql
    at once fail with "tuple concurrently updated"."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(hashtext('tenantry tests: migrations'))")
        yield


def start_time(server_url: str) -> str:
    """When the server started: tells one run of the server from the next."""
    with psycopg.connect(server_url) as conn:
        return str(conn.execute("SELECT pg_postmaster_start_time()").fetchone()[0])


def other_clients(server_url: str) -> int:
    """How many other clients are connected (a demo, `tenantry serve`, a psql)."""
    with psycopg.connect(server_url) as conn:
        return conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]


@dataclass(frozen=True)
class ServerAddress:
    """What pytest-postgresql's noproc factory reads from the fixture it `depends_on`."""

    host: str
    port: int
    user: str = "postgres"
    password: str | None = None
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None  # the template itself is made as CREATE DATABASE makes any


@pytest.fixture(scope="session")
def embedded_postgres() -> Iterator[LocalServer]:
    """The embedded server, started by the product's own code (db.local.embedded).

    Not pytest-postgresql's `postgresql_proc`: that runs initdb and pg_ctl as the
    current user, and PostgreSQL refuses to run as root (CI runs as root), while
    LocalServer runs it as a system user then. One path for root and non-root.

    Test sessions stop what they started: the last session to end stops the server if
    a test session started it (and no other client is connected). Every session holds a
    shared lock on a file in the state folder while it runs, so a session knows whether
    it is the last; a second lock makes starting and stopping one at a time; and a
    marker file holds the start time of the server a test session started.
    """
    server = embedded_server(get_settings())
    state = server.home.parent
    state.mkdir(parents=True, exist_ok=True)
    marker = state / "embedded.started-by-tests"
    with (
        (state / "embedded.start-stop.lock").open("a") as start_stop,
        (state / "embedded.test-sessions.lock").open("a") as sessions,
    ):
        fcntl.flock(start_stop, fcntl.LOCK_EX)
        if server.start():
            marker.write_text(start_time(server.url()))
        fcntl.flock(sessions, fcntl.LOCK_SH)
        fcntl.flock(start_stop, fcntl.LOCK_UN)
        drop_databases_of_this_pid(server.url())
        yield server
        fcntl.flock(sessions, fcntl.LOCK_UN)
        fcntl.flock(start_stop, fcntl.LOCK_EX)
        try:
            fcntl.flock(sessions, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # not the last session (closing the files releases the locks)
        started_by_tests = marker.exists() and marker.read_text() == start_time(server.url())
        if started_by_tests and not other_clients(server.url()):
            server.stop()
            marker.unlink()


@pytest.fixture(scope="session")
def embedded_address(embedded_postgres: LocalServer) -> ServerAddress:
    return ServerAddress(host=embedded_postgres.host, port=embedded_postgres.port, password=embedded_postgres.password)


def migrate_template(host: str, port: int, user: str, dbname: str, password: str | None = None, **_: object) -> None:
    """pytest-postgresql's `load` hook: migrate the template from zero, once per session."""
    server = URL.create("postgresql", username=user, password=password, host=host, port=port, database="postgres")
    with migrations_one_at_a_time(server.render_as_string(hide_password=False)):
        migrate.migrate(server.set(database=dbname).render_as_string(hide_password=False))


#: a NoopExecutor whose `template_dbname` (<session database>_tmpl) is migrated to head
migrated_template = factories.postgresql_noproc(
    depends_on="embedded_address", dbname=SESSION_DATABASE, load=[migrate_template]
)


@pytest.fixture(scope="session")
def server_url(request: pytest.FixtureRequest) -> str:
    """A URL of the server under test (any database on it)."""
    if TEST_DSN:
        return TEST_DSN
    return request.getfixturevalue("embedded_postgres").url()


@pytest.fixture(scope="session")
def owner_url(request: pytest.FixtureRequest, server_url: str) -> Iterator[str]:
    """Owner DSN of a database migrated to head: a clone of the template, or on
    TENANTRY_TEST_DSN that server's database, reset and migrated from zero."""
    if TEST_DSN:
        with migrations_one_at_a_time(server_url):
            reset_project_objects(server_url)
            migrate.migrate(server_url)
        yield server_url
        return
    template: NoopExecutor = request.getfixturevalue("migrated_template")
    with janitor(server_url, SESSION_DATABASE, template.template_dbname):
        url = database_url(server_url, SESSION_DATABASE)
        migrate.apply_database_privileges(url)  # a clone gets default privileges, not its template's
        yield url


ScratchDatabase = Callable[..., str]


@pytest.fixture
def scratch_database(request: pytest.FixtureRequest, server_url: str) -> Iterator[ScratchDatabase]:
    """Make databases of this test's own, dropped after it: `scratch_database("x")` is
    empty, `scratch_database("x", migrated=True)` a pristine clone of the migrated
    template (on TENANTRY_TEST_DSN: migrated from zero, templates do not clone shards).

    The test may migrate them: it runs holding the migrations lock (taken after the
    template exists, whose migration takes that lock on a connection of its own)."""
    template = None if TEST_DSN else request.getfixturevalue("migrated_template").template_dbname
    made: list[DatabaseJanitor] = []

    def make(suffix: str, migrated: bool = False) -> str:
        name = f"{SESSION_DATABASE}_{re.sub(r'[^a-z0-9_]', '_', suffix.lower())}"[:63]
        made.append(janitor(server_url, name, template if migrated else None))
        made[-1].init()
        url = database_url(server_url, name)
        if migrated and TEST_DSN:
            migrate.migrate(url)
        return url

    with migrations_one_at_a_time(server_url):
        yield make
    for database in made:
        database.drop()


@pytest.fixture(scope="session")
def is_citus(owner_url: str) -> bool:
    with psycopg.connect(owner_url) as conn:
        return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')").fetchone()[0]


@pytest.fixture(scope="session")
def test_settings(owner_url: str) -> Settings:
    return Settings(database_url=owner_url)


@pytest.fixture(scope="session")
def database(test_settings: Settings) -> Iterator[Database]:
    """The application's way in: one pool per role, `database.transaction(Context(...))`."""
    db = Database(test_settings, name="tests")
    yield db
    db.close()


@pytest.fixture(scope="session")
def api_pool(database: Database) -> ConnectionPool:
    return database.pool(API_ROLE)


@pytest.fixture(scope="session")
def admin_pool(database: Database) -> ConnectionPool:
    return database.pool(PLATFORM_ADMIN_ROLE)


@pytest.fixture(scope="session")
def analyst_pool(database: Database) -> ConnectionPool:
    return database.pool(ANALYST_ROLE)


@pytest.fixture
def owner(owner_url: str) -> Iterator[psycopg.Connection[dict[str, Any]]]:
    with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


@pytest.fixture(scope="session")
def platform_admin(owner_url: str) -> uuid.UUID:
    """A platform administrator (made by the owner: no API creates one)."""
    with psycopg.connect(owner_url) as conn:
        return conn.execute(
            "INSERT INTO core.users (email, name, password_hash, is_platform_admin)"
            " VALUES (%s, 'Platform Admin', %s, true) RETURNING user_id",
            (f"admin-{uuid.uuid4().hex[:8]}@tenantry.test", TEST_PASSWORD_HASH),
        ).fetchone()[0]


@pytest.fixture(scope="session")
def as_admin(database: Database, platform_admin: uuid.UUID):
    """Open a platform-admin transaction: `with as_admin() as conn: ...`."""

    def open_transaction(**context):
        return database.transaction(
            Context(actor_id=platform_admin, actor_type="platform_admin", role=PLATFORM_ADMIN_ROLE, **context)
        )

    return open_transaction


def set_plan(owner_url: str, tenant_id: uuid.UUID | str, plan: str) -> None:
    """Put a tenant on `plan` as the database owner. Sign-up always starts on the free plan
    (paid plans come from billing or a platform administrator); tests that need another
    plan's limits set it here, after signing up."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (plan, tenant_id))


@pytest.fixture(scope="session")
def new_tenant(api_pool: ConnectionPool, as_admin, owner_url: str) -> NewTenant:
    """Sign up a tenant (a new user as its owner) through auth.sign_up, put it on `plan`
    (as the owner: sign-up itself always gives the free plan); return its id."""

    def create(plan: str = "pro", status: str = "active") -> uuid.UUID:
        slug = f"t-{uuid.uuid4().hex[:12]}"
        with api_pool.connection() as conn:
            row = conn.execute(
                "SELECT user_id, tenant_id FROM auth.sign_up(%s, %s, %s, %s, %s, %s)",
                (
                    f"{slug}@tenantry.test",
                    f"Owner of {slug}",
                    TEST_PASSWORD_HASH,
                    slug,
                    f"Tenant {slug}",
                    f"vfy_{uuid.uuid4().hex}",
                ),
            ).fetchone()
        assert row is not None
        user_id, tenant_id = row
        OWNERS[tenant_id] = user_id
        if plan != "free":
            set_plan(owner_url, tenant_id, plan)
        if status != "active":
            with as_admin() as conn:
                conn.execute("SELECT admin.set_tenant_status(%s, %s)", (tenant_id, status))
        return tenant_id

    return create


# -- mail ---------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Any]:
    """A real SMTP server on loopback that keeps what it receives (tests/mailbox.py);
    `mailbox.deliver(database, test_settings)` runs one delivery pass of the outbox to it."""
    from tests.mailbox import Mailbox

    box = Mailbox().start()
    yield box
    box.stop()


# -- Redis and the HTTP API ---------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the API's rate limits."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server.url()
    server.stop()


@pytest.fixture(scope="session")
def api_url(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_api(owner_url, redis_url, tmp_path_factory.mktemp("api"))
    yield url
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="session")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
def outbox(owner_url: str) -> Outbox:
    """The queued mail (core.mail_outbox): where tests find verification and invitation tokens."""
    return Outbox(owner_url)


@pytest.fixture(scope="session")
def sign_up(http: httpx.Client, outbox: Outbox, owner_url: str) -> SignUp:
    """Sign up a new user and tenant over HTTP, as a person does: the sign-up, then the
    token of the verify_email mail sent to /v1/auth/verify-email (`verified=False` skips
    that). The tenant is then put on `plan` by the database owner (set_plan): sign-up
    always gives the free plan, and 'enterprise' (the default) spares tests its low
    rate limit."""

    def create(plan: str = "enterprise", verified: bool = True) -> Account:
        tag = uuid.uuid4().hex[:12]
        email, password = f"u-{tag}@tenantry.test", "password-" + tag
        resp = http.post(
            "/v1/signup",
            json={
                "email": email,
                "name": f"User {tag}",
                "password": password,
                "tenant_slug": f"s-{tag}",
                "tenant_name": f"Tenant {tag}",
            },
        )
        assert resp.status_code == 201, resp.text
        body = resp.json()
        if verified:
            checked = http.post("/v1/auth/verify-email", json={"token": outbox.token(email, "verify_email")})
            assert checked.status_code == 200, checked.text
        if plan != "free":
            set_plan(owner_url, body["tenant_id"], plan)
        return Account(email, password, body["tenant_id"], body["user_id"], body["access_token"], body["refresh_token"])

    return create

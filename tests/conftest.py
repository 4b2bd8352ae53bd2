"""Fixtures: a migrated database, role pools and tenants.

By default the suite runs on the embedded server, in a database of its own
(`tenantry_test`, created afresh each run). With TENANTRY_TEST_DSN it runs against that
server instead (e.g. a Citus coordinator: `tenantry citus dev-cluster up`), after
removing the project's objects there and migrating from zero.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import psycopg
import pytest
from hypothesis import settings as hypothesis_settings
from psycopg import sql
from psycopg.rows import dict_row
from argon2 import PasswordHasher
from psycopg_pool import ConnectionPool
from sqlalchemy.engine import make_url

from api.server import spawn
from db import migrate
from db.context import Context, Database
from db.local.embedded import embedded_server
from db.local.redis import LocalRedis
from db.settings import API_ROLE, ANALYST_ROLE, PLATFORM_ADMIN_ROLE, Settings, get_settings

#: one database per test session, so concurrent sessions on one server never collide
TEST_DATABASE = f"tenantry_test_{os.getpid()}"

hypothesis_settings.register_profile("default", deadline=None)
hypothesis_settings.load_profile("default")


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


def fresh_database(server_url: str, name: str) -> str:
    """(Re)create database `name` on the server of `server_url`; return its URL."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A URL of the server under test (any database on it)."""
    if dsn := os.environ.get("TENANTRY_TEST_DSN"):
        yield dsn
        return
    # left running afterwards: other test sessions may be using it (.ci/run stops it)
    server = embedded_server(get_settings())
    server.start()
    yield server.url("postgres")


@pytest.fixture(scope="session")
def owner_url(server_url: str) -> Iterator[str]:
    """Owner DSN of a database migrated from zero to head."""
    if os.environ.get("TENANTRY_TEST_DSN"):
        reset_project_objects(server_url)
        migrate.migrate(server_url)
        yield server_url
        return
    url = fresh_database(server_url, TEST_DATABASE)
    migrate.migrate(url)
    yield url
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(TEST_DATABASE)))


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
def owner(owner_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(owner_url, autocommit=True, row_factory=dict_row) as conn:
        yield conn


NewTenant = Callable[..., uuid.UUID]

#: One argon2id hash for every test user (hashing is deliberately slow).
TEST_PASSWORD = "correct horse battery staple"
TEST_PASSWORD_HASH = PasswordHasher().hash(TEST_PASSWORD)

#: tenant id -> the user who signed it up (its owner), for acting as that tenant.
OWNERS: dict[uuid.UUID, uuid.UUID] = {}


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
        return database.transaction(Context(actor_id=platform_admin, actor_type="platform_admin",
                                            role=PLATFORM_ADMIN_ROLE, **context))

    return open_transaction


@pytest.fixture(scope="session")
def new_tenant(api_pool: ConnectionPool, as_admin) -> NewTenant:
    """Sign up a tenant (a new user as its owner) through auth.sign_up; return its id."""

    def create(plan: str = "pro", status: str = "active") -> uuid.UUID:
        slug = f"t-{uuid.uuid4().hex[:12]}"
        with api_pool.connection() as conn:
            user_id, tenant_id = conn.execute(
                "SELECT user_id, tenant_id FROM auth.sign_up(%s, %s, %s, %s, %s, %s)",
                (f"{slug}@tenantry.test", f"Owner of {slug}", TEST_PASSWORD_HASH, slug, f"Tenant {slug}", plan),
            ).fetchone()
        OWNERS[tenant_id] = user_id
        if status != "active":
            with as_admin() as conn:
                conn.execute("SELECT admin.set_tenant_status(%s, %s)", (tenant_id, status))
        return tenant_id

    return create


# -- the HTTP API -------------------------------------------------------------------------

#: The access-token key of the API under test, so tests can forge tokens (expired ones).
TEST_JWT_SECRET = "test-secret-" + "x" * 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server on a free loopback port, for the API's rate limits."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    yield server.url()
    server.stop()


def start_api(owner_url: str, redis_url: str, state_dir, **env: str) -> tuple[subprocess.Popen, str]:
    """`tenantry serve` in a subprocess (real gunicorn, real HTTP); returns it and its URL."""
    return spawn({
        "TENANTRY_DATABASE_URL": owner_url, "TENANTRY_REDIS_URL": redis_url,
        "TENANTRY_JWT_SECRET": TEST_JWT_SECRET, "TENANTRY_STATE_DIR": str(state_dir),
        "TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
    } | env, free_port(), state_dir / "api.log")


@pytest.fixture(scope="session")
def api_url(owner_url: str, redis_url: str, tmp_path_factory) -> Iterator[str]:
    process, url = start_api(owner_url, redis_url, tmp_path_factory.mktemp("api"))
    yield url
    process.terminate()
    process.wait(timeout=15)


@pytest.fixture(scope="session")
def http(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


@dataclass
class Account:
    """A signed-up user and their tenant, as the API returned them."""

    email: str
    password: str
    tenant_id: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


SignUp = Callable[..., Account]


@pytest.fixture(scope="session")
def sign_up(http: httpx.Client) -> SignUp:
    """Sign up a new user and tenant over HTTP (plan 'enterprise' by default: no low limits)."""

    def create(plan: str = "enterprise") -> Account:
        tag = uuid.uuid4().hex[:12]
        email, password = f"u-{tag}@tenantry.test", "password-" + tag
        resp = http.post("/v1/signup", json={"email": email, "name": f"User {tag}", "password": password,
                                             "tenant_slug": f"s-{tag}", "tenant_name": f"Tenant {tag}",
                                             "plan": plan})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return Account(email, password, body["tenant_id"], body["user_id"], body["access_token"],
                       body["refresh_token"])

    return create

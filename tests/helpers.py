"""What the tests share, in one importable module (conftest.py holds only fixtures):
test credentials, the owners of the tenants the fixtures sign up, starting the API,
calling api.* functions as a tenant's owner, and checking the HTTP API's problem answers.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from argon2 import PasswordHasher
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from api.server import spawn
from db.context import Context, transaction
from db.dsn import role_environment
from db.local.postgres import free_port
from db.settings import Settings

#: One argon2id hash for every test user (hashing is deliberately slow).
TEST_PASSWORD = "correct horse battery staple"
TEST_PASSWORD_HASH = PasswordHasher().hash(TEST_PASSWORD)

#: tenant id -> the user who signed it up (its owner), for acting as that tenant.
OWNERS: dict[uuid.UUID, uuid.UUID] = {}

#: The access-token key of the API under test, so tests can forge tokens (expired ones).
TEST_JWT_SECRET = "test-secret-" + "x" * 40

NewTenant = Callable[..., uuid.UUID]


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


def start_api(
    owner_url: str, redis_url: str, state_dir: Path, *, threads: int = 8, workers: int = 1, **env: str
) -> tuple[subprocess.Popen, str]:
    """`tenantry serve` in a subprocess (real gunicorn, real HTTP; `workers` workers of
    `threads` threads); returns it and its URL. It gets the role DSNs explicitly: the roles'
    generated passwords are in this process's state folder, not in the one it is given.
    SIGTERM stops it at once (no drain before the stop, unless `env` sets one)."""
    return spawn(
        role_environment(Settings(database_url=owner_url))
        | {
            "TENANTRY_DATABASE_URL": owner_url,
            "TENANTRY_REDIS_URL": redis_url,
            "TENANTRY_JWT_SECRET": TEST_JWT_SECRET,
            "TENANTRY_STATE_DIR": str(state_dir),
            "TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE": "100000",
            "TENANTRY_SHUTDOWN_DRAIN_SECONDS": "0",
        }
        | env,
        free_port(),
        state_dir / "api.log",
        threads=threads,
        workers=workers,
    )


# -- mail ----------------------------------------------------------------------------------


class Outbox:
    """The mail the platform queued (core.mail_outbox), read as the database owner: the
    tests' mail sink. Tokens (verification, invitation) reach people only by mail, so
    tests read them here, where the transaction that made them wrote them."""

    def __init__(self, owner_url: str) -> None:
        self.owner_url = owner_url

    def messages(self, to: str, template: str | None = None) -> list[dict]:
        """The messages to `to` (of `template`), oldest first."""
        with psycopg.connect(self.owner_url, autocommit=True, row_factory=dict_row) as conn:
            return conn.execute(
                "SELECT to_address, template, data, created_at FROM core.mail_outbox"
                " WHERE lower(to_address) = lower(%s) AND (%s::text IS NULL OR template = %s)"
                " ORDER BY created_at, mail_id",
                (to, template, template),
            ).fetchall()

    def last(self, to: str, template: str) -> dict:
        found = self.messages(to, template)
        assert found, f"no {template} mail to {to}"
        return found[-1]["data"]

    def token(self, to: str, template: str) -> str:
        """The token of the newest `template` mail to `to` (verify_email, invitation)."""
        return self.last(to, template)["token"]


# -- the SQL API ------------------------------------------------------------------------------


def call(pool: ConnectionPool, tenant_id: uuid.UUID | None, function: str, *args: Any, **kwargs: Any) -> list[dict]:
    """Call api.<function>(tenant_id, *args, name => value...) in one tenant transaction.

    Returns the rows. The tenant argument and the context are the same tenant unless
    `as_tenant` is given (the context), to test mismatches. The actor is the context
    tenant's owner (see OWNERS).
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
    with owner_transaction(pool, context) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall()


def owner_transaction(pool: ConnectionPool, tenant_id: uuid.UUID | None, **context: Any):
    """A tenant transaction acting as the tenant's owner (no actor without a tenant)."""
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
    assert body.keys() >= PROBLEM_FIELDS, body
    assert body["status"] == status and body["code"] == code, body
    assert body["type"] == f"/problems/{code}"
    assert body["instance"] == resp.request.url.path
    assert body["request_id"] == resp.headers["X-Request-ID"]
    if field is not None:
        assert body.get("field") == field, body
    no_leak(resp)
    return body


def end_subscription_period(owner_url: str, tenant_id: uuid.UUID) -> None:
    """Move the tenant's subscription back one month, so that its current period ended a
    second ago: the worker's next ops.advance_subscriptions() rolls it over."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(
            # in UTC (immutable): Citus refuses a STABLE timestamptz - interval over columns
            "UPDATE core.subscriptions"
            " SET anchor_at = ((anchor_at AT TIME ZONE 'UTC') - interval '1 month') AT TIME ZONE 'UTC',"
            " current_period_start ="
            " ((current_period_start AT TIME ZONE 'UTC') - interval '1 month') AT TIME ZONE 'UTC',"
            " current_period_end = now() - interval '1 second' WHERE tenant_id = %s",
            (tenant_id,),
        )

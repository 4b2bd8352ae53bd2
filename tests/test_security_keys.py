"""Security: API keys bounded by their member's current rights, a lockout that an
attacker cannot turn against the owner and that tells no email from another, task
assignees that must be members, constraint errors that name nothing internal, /metrics
closed to strangers, and X-Forwarded-For read only from trusted proxies.

Through the real API (gunicorn, see conftest) and the real database roles. A second API,
`proxied`, trusts 127.0.0.1 as a reverse proxy, so a test can speak for many clients
with X-Forwarded-For; it also has a low anonymous rate limit and a metrics token.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import statistics
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import falcon.testing
import httpx
import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import SecretStr

from api import client as api_client
from api import errors as api_errors
from api.app import create_app
from db import errors as db_errors
from db import migrate
from db.context import Database
from db.settings import WORKER_ROLE, Settings
from tests.helpers import TEST_JWT_SECRET, problem, start_api
from tests.test_api_access import add_member, create_key, create_project, key_header, list_keys

ANONYMOUS_LIMIT = 10  # per minute, on the proxied API
METRICS_TOKEN = "metrics-token-" + "m" * 32
SCHEMAS = ["core", "api", "auth", "ops", "admin", "analytics"]


@dataclass
class Proxied:
    http: httpx.Client
    log: Path


@pytest.fixture(scope="module")
def proxied(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proxied]:
    """An API behind a trusted proxy (127.0.0.1), with a low anonymous limit and a metrics token."""
    state = tmp_path_factory.mktemp("proxied")
    process, url = start_api(
        owner_url,
        redis_url,
        state,
        TENANTRY_TRUSTED_PROXIES="127.0.0.1, ::1",
        TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE=str(ANONYMOUS_LIMIT),
        TENANTRY_METRICS_TOKEN=METRICS_TOKEN,
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as http:
            yield Proxied(http, state / "api.log")
    finally:
        process.terminate()
        process.wait(timeout=15)


_addresses = itertools.count(1)


def new_client() -> str:
    """A client address of its own (its own rate-limit bucket and lockout)."""
    n = next(_addresses) + uuid.uuid4().int % 200_000 * 100
    return f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"


def via(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


def login(http: httpx.Client, email: str, password: str, client: str | None = None) -> httpx.Response:
    return http.post(
        "/v1/auth/login", json={"email": email, "password": password}, headers=via(client) if client else {}
    )


def new_email() -> str:
    return f"nobody-{uuid.uuid4().hex[:12]}@tenantry.test"


# == 5. API keys act within their member's current rights =============================================================


def test_a_removed_members_keys_stop_working(http, outbox, sign_up):
    account = sign_up()
    developer = add_member(http, outbox, account, "developer")
    key = create_key(http, developer, ["projects:read", "projects:write", "keys:manage"]).json()
    assert create_project(http, key_header(key["key"])).status_code == 201
    # a key made by that key belongs to the same member
    child = http.post(
        "/v1/api-keys", headers=key_header(key["key"]), json={"name": "child", "scopes": ["projects:write"]}
    ).json()
    assert create_project(http, key_header(child["key"])).status_code == 201

    removed = http.delete(f"/v1/members/{developer.user_id}", headers=account.headers)
    assert removed.status_code == 200, removed.text
    for secret in (key["key"], child["key"]):
        problem(create_project(http, key_header(secret)), 401, "api_key_revoked")
        problem(http.get("/v1/projects", headers=key_header(secret)), 401, "api_key_revoked")
    keys = list_keys(http, account)
    assert keys[key["key_id"]]["revoked_at"] is not None and keys[child["key_id"]]["revoked_at"] is not None


def test_a_demoted_creators_key_shrinks_with_the_role(http, outbox, sign_up):
    account = sign_up()
    admin = add_member(http, outbox, account, "admin")
    key = create_key(http, admin, ["members:manage", "projects:read"]).json()
    invite = {"email": new_email(), "role": "admin"}
    assert http.post("/v1/invitations", headers=key_header(key["key"]), json=invite).status_code == 201

    demoted = http.patch(f"/v1/members/{admin.user_id}", headers=account.headers, json={"role": "viewer"})
    assert demoted.status_code == 200, demoted.text
    invite["email"] = new_email()
    problem(http.post("/v1/invitations", headers=key_header(key["key"]), json=invite), 403, "missing_scope")
    me = http.get("/v1/auth/me", headers=key_header(key["key"]))
    assert me.status_code == 200 and me.json()["scopes"] == ["projects:read"], me.text
    assert http.get("/v1/projects", headers=key_header(key["key"])).status_code == 200  # what a viewer may do
    # the key still has its scopes: promoted again, the member's key may again
    assert (
        http.patch(f"/v1/members/{admin.user_id}", headers=account.headers, json={"role": "admin"}).status_code == 200
    )
    assert http.post("/v1/invitations", headers=key_header(key["key"]), json=invite).status_code == 201


def test_a_key_cannot_outlive_the_key_that_makes_it(http, sign_up):
    account = sign_up()
    expires = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    parent = create_key(http, account, ["keys:manage", "projects:read"], expires_at=expires.isoformat()).json()
    as_parent = key_header(parent["key"])

    def make(**extra) -> httpx.Response:
        return http.post(
            "/v1/api-keys", headers=as_parent, json={"name": "child", "scopes": ["projects:read"], **extra}
        )

    forever = make()
    assert forever.status_code == 201, forever.text  # asked for no expiry: gets the parent's
    assert dt.datetime.fromisoformat(forever.json()["expires_at"]) == expires
    assert forever.json()["created_by"] == parent["key_id"]
    later = (expires + dt.timedelta(days=30)).isoformat()
    problem(make(expires_at=later), 403, "expiry_escalation", field="expires_at")
    sooner = expires - dt.timedelta(hours=1)
    made = make(expires_at=sooner.isoformat())
    assert made.status_code == 201 and dt.datetime.fromisoformat(made.json()["expires_at"]) == sooner

    # rotating a key that never expires, by the expiring key: the new key expires with it
    never = create_key(http, account, ["projects:read"]).json()
    assert never["expires_at"] is None
    rotated = http.post(f"/v1/api-keys/{never['key_id']}/rotate", headers=as_parent, json={"grace_seconds": 0})
    assert rotated.status_code == 201, rotated.text
    assert dt.datetime.fromisoformat(rotated.json()["expires_at"]) == expires


def test_revoking_another_members_wider_key_needs_its_scopes(http, outbox, sign_up):
    account = sign_up()
    developer = add_member(http, outbox, account, "developer")
    wide = create_key(http, account, ["members:manage", "projects:read"]).json()
    narrow = create_key(http, account, ["projects:read"]).json()
    own = create_key(http, developer, ["projects:read", "keys:manage"]).json()

    problem(http.delete(f"/v1/api-keys/{wide['key_id']}", headers=developer.headers), 403, "key_beyond_your_scopes")
    assert http.get("/v1/projects", headers=key_header(wide["key"])).status_code == 200  # untouched
    assert list_keys(http, account)[wide["key_id"]]["revoked_at"] is None
    # a key of the developer's cannot either
    problem(
        http.delete(f"/v1/api-keys/{wide['key_id']}", headers=key_header(own["key"])), 403, "key_beyond_your_scopes"
    )
    # within the developer's scopes, and their own keys: fine
    assert http.delete(f"/v1/api-keys/{narrow['key_id']}", headers=developer.headers).status_code == 200
    assert http.delete(f"/v1/api-keys/{own['key_id']}", headers=developer.headers).status_code == 200
    # the owner holds every scope
    assert http.delete(f"/v1/api-keys/{wide['key_id']}", headers=account.headers).status_code == 200


# == 6. lockout: no denial of service, no oracle; failed credentials cost the anonymous budget =================


def test_known_and_unknown_emails_get_the_same_answers(http, proxied, sign_up):
    account = sign_up()

    def attempts(email: str) -> list[tuple[int, dict, float]]:
        client, answers = new_client(), []
        for _ in range(6):
            started = time.perf_counter()
            resp = login(proxied.http, email, "wrong-password", client)
            elapsed = time.perf_counter() - started
            body = resp.json()
            shown = {k: body.get(k) for k in ("status", "code", "detail", "title", "type", "field")}
            shown["retry_after"] = resp.headers.get("Retry-After") is not None
            answers.append((resp.status_code, shown, elapsed))
        return answers

    known, unknown = attempts(account.email), attempts(new_email())
    assert [(s, b) for s, b, _ in known] == [(s, b) for s, b, _ in unknown]
    assert [s for s, _, _ in known] == [401] * 4 + [429, 429]
    assert known[-1][1]["code"] == "account_locked"
    # a wrong password for an unknown email costs a password check too (a dummy hash)
    known_time = statistics.median(t for _, _, t in known[:4])
    unknown_time = statistics.median(t for _, _, t in unknown[:4])
    assert unknown_time > known_time / 3, (known_time, unknown_time)


def test_an_attacker_cannot_lock_the_owner_out(http, proxied, sign_up):
    account = sign_up()
    attacker, owner = new_client(), new_client()
    for _ in range(4):
        problem(login(proxied.http, account.email, "guess", attacker), 401, "invalid_credentials")
    locked = login(proxied.http, account.email, "guess", attacker)
    problem(locked, 429, "account_locked")
    assert 890 <= int(locked.headers["Retry-After"]) <= 900
    # locked for the attacker's client: even the right password is refused there
    problem(login(proxied.http, account.email, account.password, attacker), 429, "account_locked")
    # the owner, from their own client, logs in
    mine = login(proxied.http, account.email, account.password, owner)
    assert mine.status_code == 200, mine.text
    assert mine.json()["user_id"] == account.user_id


def test_many_attacking_clients_lose_their_guesses_not_the_owner(http, proxied, sign_up):
    account = sign_up()
    # 50 failures from 10 clients: the account is under attack
    for _ in range(10):
        client = new_client()
        for _ in range(4):
            problem(login(proxied.http, account.email, "guess", client), 401, "invalid_credentials")
        problem(login(proxied.http, account.email, "guess", client), 429, "account_locked")
    # now one failure locks a client
    problem(login(proxied.http, account.email, "guess", new_client()), 429, "account_locked")
    # and the owner, from a client that has not failed, still logs in
    owner = new_client()
    assert login(proxied.http, account.email, account.password, owner).status_code == 200
    assert login(proxied.http, account.email, account.password, owner).status_code == 200


def test_ipv6_clients_are_counted_by_their_64(api_pool):
    email = new_email()
    with api_pool.connection() as conn:
        locked = [
            conn.execute("SELECT auth.record_login_failure(%s, %s::inet)", (email, f"2001:db8:0:1::{i}")).fetchone()[0]
            for i in range(1, 6)
        ]
        assert locked == [0, 0, 0, 0, 900]
        here = conn.execute("SELECT * FROM auth.begin_login(%s, '2001:db8:0:1:ffff::1')", (email,)).fetchone()
        elsewhere = conn.execute("SELECT * FROM auth.begin_login(%s, '2001:db8:0:2::1')", (email,)).fetchone()
    assert here[3] > 890 and elsewhere[3] == 0
    assert here[0] is None and here[1] is None  # an unknown email: no user, no hash, locked all the same


def test_failed_credentials_count_against_the_anonymous_limit(proxied):
    guesser = new_client()
    answers = [
        proxied.http.get("/v1/projects", headers=via(guesser) | key_header(f"tnt_{'a' * 12}_{'G' * 43}"))
        for _ in range(ANONYMOUS_LIMIT + 2)
    ]
    codes = [resp.status_code for resp in answers]
    assert codes[:ANONYMOUS_LIMIT] == [401] * ANONYMOUS_LIMIT, codes
    problem(answers[-1], 429, "rate_limited")
    assert int(answers[-1].headers["Retry-After"]) >= 1
    # bad bearer tokens too
    token_guesser = new_client()
    refused = [
        proxied.http.get("/v1/projects", headers=via(token_guesser) | {"Authorization": "Bearer not.a.jwt"})
        for _ in range(ANONYMOUS_LIMIT + 2)
    ]
    problem(refused[-1], 429, "rate_limited")
    # and bad passwords: a login is an anonymous call
    password_guesser = new_client()
    tries = [login(proxied.http, new_email(), "guess", password_guesser) for _ in range(ANONYMOUS_LIMIT + 2)]
    problem(tries[-1], 429, "rate_limited")
    # another client is not affected
    assert login(proxied.http, new_email(), "guess", new_client()).status_code == 401


def test_purging_old_login_failures(owner, database):
    email = new_email()
    owner.execute(
        "INSERT INTO core.login_failures (account, client, failures, window_start)"
        " VALUES (core.login_account(%s), '10.9.9.9', 3, now() - interval '3 days')",
        (email,),
    )
    with database.pool(WORKER_ROLE).connection() as conn:
        assert conn.execute("SELECT ops.purge_login_failures()").fetchone()[0] >= 1
    left = owner.execute(
        "SELECT count(*) AS n FROM core.login_failures WHERE account = core.login_account(%s)", (email,)
    )
    assert left.fetchone()["n"] == 0


# == 10. a task's assignee is a member of the task's tenant ==========================================================


def test_task_assignee_must_be_a_member_of_the_tenant(http, outbox, sign_up, owner):
    account, stranger = sign_up(), sign_up()
    member = add_member(http, outbox, account, "member")
    project = create_project(http, account.headers).json()["project_id"]

    def create(assignee: str) -> httpx.Response:
        return http.post(
            "/v1/tasks", headers=account.headers, json={"project_id": project, "title": "t", "assignee_id": assignee}
        )

    for outsider in (stranger.user_id, str(uuid.uuid4())):  # another tenant's user, or nobody
        body = problem(create(outsider), 422, "unknown_reference", field="assignee_id")
        assert "tasks_assignee_member_fkey" not in body["detail"]
    task = create(member.user_id)
    assert task.status_code == 201, task.text
    task_id = task.json()["task_id"]
    for outsider in (stranger.user_id, str(uuid.uuid4())):
        problem(
            http.patch(f"/v1/tasks/{task_id}", headers=account.headers, json={"assignee_id": outsider}),
            422,
            "unknown_reference",
            field="assignee_id",
        )
    # a member who leaves is unassigned
    assert http.delete(f"/v1/members/{member.user_id}", headers=account.headers).status_code == 200
    assert http.get(f"/v1/tasks/{task_id}", headers=account.headers).json()["assignee_id"] is None
    definition = owner.execute(
        "SELECT pg_get_constraintdef(oid) AS d FROM pg_constraint WHERE conname = 'tasks_assignee_member_fkey'"
    ).fetchone()["d"]
    assert definition.startswith("FOREIGN KEY (tenant_id, assignee_id) REFERENCES core.memberships(tenant_id, user_id)")


def test_upgrading_revokes_orphan_keys_and_clears_foreign_assignees(scratch_database):
    """0006 on data made before it: keys get their member (following keys made by keys);
    a live key whose member has left is revoked; assignees that are not members are
    cleared, in a suspended tenant too."""
    url = scratch_database("keys_upgrade", migrated=True)
    migrate.downgrade(url, "0005")
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:

        def one(query: str, *params) -> dict:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return row

        def user() -> uuid.UUID:
            tag = uuid.uuid4().hex[:10]
            return one("INSERT INTO core.users (email, name) VALUES (%s, 'U') RETURNING user_id", f"{tag}@x.test")[
                "user_id"
            ]

        def key(tenant: uuid.UUID, created_by: uuid.UUID) -> uuid.UUID:
            prefix = uuid.uuid4().hex[:12]
            return one(
                "INSERT INTO core.api_keys (tenant_id, prefix, key_hash, name, scopes, created_by)"
                " VALUES (%s, %s, sha256(%s::bytea), 'k', '{projects:read}', %s) RETURNING key_id",
                tenant,
                prefix,
                prefix.encode(),
                created_by,
            )["key_id"]

        tenant = one(
            "INSERT INTO core.tenants (slug, name, plan_id) VALUES (%s, 'T', 'pro') RETURNING tenant_id",
            f"t-{uuid.uuid4().hex[:10]}",
        )["tenant_id"]
        member, former = user(), user()
        conn.execute(
            "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, 'owner')", (tenant, member)
        )
        members_key = key(tenant, member)
        made_by_key = key(tenant, members_key)
        grandchild = key(tenant, made_by_key)
        formers_key = key(tenant, former)
        project = one("INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'P') RETURNING project_id", tenant)[
            "project_id"
        ]
        kept = one(
            "INSERT INTO core.tasks (tenant_id, project_id, title, assignee_id) VALUES (%s, %s, 'a', %s)"
            " RETURNING task_id",
            tenant,
            project,
            member,
        )["task_id"]
        cleared = one(
            "INSERT INTO core.tasks (tenant_id, project_id, title, assignee_id) VALUES (%s, %s, 'b', %s)"
            " RETURNING task_id",
            tenant,
            project,
            former,
        )["task_id"]
        conn.execute("UPDATE core.tenants SET status = 'suspended' WHERE tenant_id = %s", (tenant,))

    migrate.migrate(url)
    with psycopg.connect(url, row_factory=dict_row) as conn:
        keys = {
            row["key_id"]: row
            for row in conn.execute(
                "SELECT key_id, user_id, revoked_at FROM core.api_keys WHERE tenant_id = %s", (tenant,)
            )
        }
        assert {k: keys[k]["user_id"] for k in (members_key, made_by_key, grandchild)} == dict.fromkeys(
            (members_key, made_by_key, grandchild), member
        )
        assert all(keys[k]["revoked_at"] is None for k in (members_key, made_by_key, grandchild))
        assert keys[formers_key]["user_id"] == former and keys[formers_key]["revoked_at"] is not None
        assignees = {
            row["task_id"]: row["assignee_id"]
            for row in conn.execute("SELECT task_id, assignee_id FROM core.tasks WHERE tenant_id = %s", (tenant,))
        }
        assert assignees[kept] == member and assignees[cleared] is None
        # the guard the upgrade set aside is back: the suspended tenant's tasks refuse writes
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("UPDATE core.tasks SET title = 'c' WHERE tenant_id = %s", (tenant,))
        assert refused.value.sqlstate == db_errors.TENANT_SUSPENDED.sqlstate


# == 11. constraint errors tell the field, never the table or the constraint ===========================================


def test_constraint_violations_name_the_field_not_the_constraint(http, sign_up):
    account = sign_up()
    blank = problem(http.post("/v1/projects", headers=account.headers, json={"name": "  "}), 422, "invalid_value")
    assert blank["field"] == "name" and blank["detail"] == db_errors.CONSTRAINT_MESSAGES["projects_name_check"].message
    name = f"p-{uuid.uuid4().hex[:8]}"
    assert http.post("/v1/projects", headers=account.headers, json={"name": name}).status_code == 201
    taken = problem(
        http.post("/v1/projects", headers=account.headers, json={"name": name.upper()}), 409, "duplicate_name"
    )
    project = create_project(http, account.headers).json()["project_id"]
    task = http.post("/v1/tasks", headers=account.headers, json={"project_id": project, "title": "t"}).json()
    title = problem(
        http.patch(f"/v1/tasks/{task['task_id']}", headers=account.headers, json={"title": "   "}), 422, "invalid_value"
    )
    assert title["field"] == "title"
    for body in (blank, taken, title):
        text = str(body)
        assert not any(word in text for word in ("violates", "constraint", "relation", "_check", "_key")), body


_VIOLATE = """
CREATE OR REPLACE FUNCTION pg_temp.violate(message text, state text, con text, tab text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF con IS NULL THEN
        RAISE EXCEPTION '%', message USING ERRCODE = state;
    END IF;
    RAISE EXCEPTION '%', message USING ERRCODE = state, CONSTRAINT = con, TABLE = tab;
END
$$
"""


def _server_error(
    conn: psycopg.Connection, message: str, sqlstate: str, constraint: str | None = None, table: str | None = None
) -> psycopg.Error:
    """A real error from the server, with PostgreSQL's own message for a violation."""
    try:
        conn.execute(_VIOLATE)
        conn.execute("SELECT pg_temp.violate(%s, %s, %s, %s)", (message, sqlstate, constraint, table))
    except psycopg.Error as exc:
        conn.rollback()
        return exc
    raise AssertionError("the server raised nothing")


def test_every_check_constraint_is_answered_without_its_name(owner_url):
    with psycopg.connect(owner_url) as conn:
        checks = conn.execute(
            "SELECT con.conname, rel.relname FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid"
            " WHERE con.contype = 'c' AND con.connamespace::regnamespace::text = ANY(%s)",
            (SCHEMAS,),
        ).fetchall()
        assert len(checks) > 30, checks
        for constraint, relation in checks:
            # as PostgreSQL raises it; and as Citus forwards it from a shard: no constraint field,
            # the shard's names in the message
            for given, table, named in (
                (constraint, relation, True),
                (f"{constraint}_102008", f"{relation}_102008", False),
            ):
                message = f'new row for relation "{table}" violates check constraint "{given}"'
                error = _server_error(
                    conn, message, sqlstate="23514", **({"constraint": given, "table": table} if named else {})
                )
                assert error.sqlstate == "23514" and (error.diag.constraint_name == given) is named
                told = api_errors.problem_from_database(error)
                assert (told.status, told.code) == (422, "invalid_value")
                assert constraint not in told.detail and relation not in told.detail, (constraint, told.detail)
                assert "violates" not in told.detail and "relation" not in told.detail
                if constraint in db_errors.CONSTRAINT_MESSAGES:
                    assert told.field == db_errors.CONSTRAINT_MESSAGES[constraint].field


def test_every_constraint_message_names_a_real_constraint(owner_url):
    with psycopg.connect(owner_url) as conn:
        names = {
            row[0]
            for row in conn.execute(
                "SELECT conname FROM pg_constraint WHERE connamespace::regnamespace::text = ANY(%(s)s) UNION"
                " SELECT relname FROM pg_class WHERE relkind = 'i' AND relnamespace::regnamespace::text = ANY(%(s)s)",
                {"s": SCHEMAS},
            )
        }
    assert set(db_errors.CONSTRAINT_MESSAGES) <= names, set(db_errors.CONSTRAINT_MESSAGES) - names


# == 12. /metrics: a token, or loopback clients only ===================================================================


def test_metrics_need_the_token_when_one_is_set(proxied):
    problem(proxied.http.get("/metrics"), 401, "invalid_token")
    problem(proxied.http.get("/metrics", headers={"Authorization": "Bearer wrong"}), 401, "invalid_token")
    scraped = proxied.http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "tenantry_http_requests_total" in scraped.text


@pytest.fixture
def in_process(test_settings: Settings):
    """The API app in this process (no Redis), to send requests from any peer address."""
    databases: list[Database] = []

    def make(**changes) -> falcon.testing.TestClient:
        settings = test_settings.model_copy(
            update={"jwt_secret": SecretStr(TEST_JWT_SECRET), "redis_url": None} | changes
        )
        databases.append(Database(settings, dict_rows=True, name="security-test"))
        return falcon.testing.TestClient(create_app(settings, databases[-1]))

    yield make
    for database in databases:
        database.close()


def test_metrics_without_a_token_are_for_loopback_clients_only(in_process):
    app = in_process()
    assert app.simulate_get("/metrics", remote_addr="127.0.0.1").status_code == 200
    assert app.simulate_get("/metrics", remote_addr="::1").status_code == 200
    refused = app.simulate_get("/metrics", remote_addr="203.0.113.9")
    assert refused.status_code == 403 and refused.json["code"] == "forbidden"
    # a forwarded-for header from an untrusted peer changes nothing, either way
    assert app.simulate_get("/metrics", remote_addr="203.0.113.9", headers=via("127.0.0.1")).status_code == 403
    assert app.simulate_get("/metrics", remote_addr="127.0.0.1", headers=via("203.0.113.9")).status_code == 200
    # behind a trusted proxy on this host, the client is the one it forwards for
    proxied_app = in_process(trusted_proxies="127.0.0.1")
    assert proxied_app.simulate_get("/metrics", remote_addr="127.0.0.1", headers=via("203.0.113.9")).status_code == 403
    assert proxied_app.simulate_get("/metrics", remote_addr="127.0.0.1").status_code == 200


# == 13. the client address: X-Forwarded-For only from trusted proxies =================================================


def test_forwarded_for_is_ignored_from_untrusted_peers(http, sign_up):
    account = sign_up()
    key = create_key(http, account, ["projects:read"]).json()
    assert http.get("/v1/projects", headers=key_header(key["key"]) | via("203.0.113.7")).status_code == 200
    assert list_keys(http, account)[key["key_id"]]["last_used_ip"] == "127.0.0.1"
    # five failures "from five clients" are five from this one: locked
    for n in range(4):
        problem(login(http, account.email, "guess", f"203.0.113.{n}"), 401, "invalid_credentials")
    problem(login(http, account.email, "guess", "203.0.113.4"), 429, "account_locked")
    problem(login(http, account.email, account.password, "198.51.100.1"), 429, "account_locked")


def test_trusted_proxies_forward_the_client(http, proxied, sign_up):
    account = sign_up()
    key = create_key(http, account, ["projects:read"]).json()
    client = new_client()
    # the right-most address that is not a trusted proxy; what the client claimed left of it is ignored
    forwarded = f"198.51.100.66, {client}, 127.0.0.1"
    assert proxied.http.get("/v1/projects", headers=key_header(key["key"]) | via(forwarded)).status_code == 200
    assert list_keys(http, account)[key["key_id"]]["last_used_ip"] == client

    # the logs name the client
    def logged_clients() -> set[str]:
        lines = proxied.log.read_text().splitlines()
        return {json.loads(line).get("client") for line in lines if line.startswith("{")}

    deadline = time.monotonic() + 5
    while client not in logged_clients() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client in logged_clients()
    # and so do the rate limits: each client has a bucket of its own
    first, second = new_client(), new_client()
    for _ in range(ANONYMOUS_LIMIT):
        assert login(proxied.http, new_email(), "guess", first).status_code in (401, 429)
    problem(login(proxied.http, new_email(), "guess", first), 429, "rate_limited")
    assert login(proxied.http, new_email(), "guess", second).status_code == 401


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        ("127.0.0.1", None, "", "127.0.0.1"),
        ("127.0.0.1", "203.0.113.5", "", "127.0.0.1"),  # no trusted proxy: the header is ignored
        ("198.51.100.9", "203.0.113.5", "127.0.0.1", "198.51.100.9"),  # an untrusted peer: ignored
        ("127.0.0.1", "203.0.113.5", "127.0.0.1", "203.0.113.5"),
        ("127.0.0.1", "1.1.1.1, 203.0.113.5", "127.0.0.1", "203.0.113.5"),  # the right-most untrusted
        ("10.0.0.2", "203.0.113.5, 10.0.0.1", "10.0.0.0/8", "203.0.113.5"),  # through two trusted proxies
        ("10.0.0.2", "10.0.0.3, 10.0.0.1", "10.0.0.0/8", "10.0.0.3"),  # all trusted: the left-most
        ("127.0.0.1", "garbage", "127.0.0.1", "127.0.0.1"),  # unreadable: the last trusted hop
        ("127.0.0.1", "203.0.113.5, garbage", "127.0.0.1", "127.0.0.1"),
        ("::ffff:127.0.0.1", "2001:db8::1", "127.0.0.1", "2001:db8::1"),  # a dual-stack socket
        ("::1", "[2001:db8::1]", "::1", "::1"),
    ],
)
def test_client_address_resolution(peer, forwarded, trusted, client):
    assert api_client.resolve(peer, forwarded, api_client.networks(trusted.split(","))) == client


def test_trusted_proxies_setting_is_checked():
    assert Settings(trusted_proxies=" 10.0.0.1, fd00::/8 ").trusted_proxy_list() == ["10.0.0.1", "fd00::/8"]
    with pytest.raises(ValueError):
        Settings(trusted_proxies="10.0.0.1, proxy.example.com")

"""Database privilege: what a caller on an application role can and cannot make the
database do with more rights than its own. Through the real roles, on the real server.

1. A caller's temporary objects never run inside a SECURITY DEFINER function: the
   application roles may not create temporary objects at all, definer functions search
   pg_catalog before pg_temp, and they run as tenantry_owner, not as a superuser.
2. The after-login auth.* functions act for the user of the transaction's session, never
   for a user id they are given.
3. The embedded server requires a password from every connection (scram-sha-256), with
   generated secrets kept in the state folder, readable by their owner only.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from db import dsn, lint
from db.context import Context, Database
from db.local.embedded import bin_dir
from db.local.postgres import LocalServer, free_port
from db.settings import (
    ANALYST_ROLE,
    API_ROLE,
    APP_ROLES,
    OWNER_ROLE,
    PLATFORM_ADMIN_ROLE,
    Settings,
    get_settings,
)
from tests.helpers import OWNERS

TEST_DSN = os.environ.get("TENANTRY_TEST_DSN")
PROJECT_SCHEMAS = ["core", "api", "auth", "admin", "ops", "analytics"]


def role_url(database_url: str, role: str) -> str:
    """The DSN of `role` on the database of `database_url` (an owner DSN)."""
    return dsn.role_url(Settings(database_url=database_url), role)


# -- 1. temporary objects, search_path, ownership -----------------------------------------------

#: What a caller plants to hijack a definer function: a temporary domain named like a
#: built-in type, whose CHECK runs the caller's own function. It reports who it ran as.
PLANT = [
    """CREATE FUNCTION pg_temp.hijack(anyelement) RETURNS boolean LANGUAGE plpgsql AS $$
       BEGIN
           RAISE EXCEPTION 'hijacked: running as % (superuser: %)', current_user,
               (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user);
       END $$""",
    "CREATE DOMAIN pg_temp.uuid AS pg_catalog.uuid CHECK (pg_temp.hijack(VALUE))",
]


@pytest.mark.parametrize("role", APP_ROLES)
def test_application_roles_cannot_create_temporary_objects(database: Database, role: str):
    # before the fix every role could (PUBLIC has TEMPORARY on a new database): that is
    # where a hijack starts
    for statement in (*PLANT, "CREATE TEMP TABLE scratch (x int)"):
        with (
            pytest.raises(errors.InsufficientPrivilege, match="temporary"),
            database.transaction(Context(role=role)) as conn,
        ):
            conn.execute(statement)


def test_a_temporary_type_does_not_run_inside_a_definer_function(scratch_database):
    """The exploit itself, with TEMPORARY granted back (so only the search_path stands in
    the way): auth.check_session -> core.context_session declares `uuid` variables."""
    url = scratch_database("hijack", migrated=True)
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO tenantry_api").format(sql.Identifier(url_db(url))))

    def call_check_session() -> psycopg.Error:
        with psycopg.connect(role_url(url, API_ROLE)) as conn:
            for statement in PLANT:
                conn.execute(statement)
            with pytest.raises(psycopg.Error) as refused:
                conn.execute("SELECT * FROM auth.check_session()")
            return refused.value

    # search_path = pg_catalog, pg_temp: pg_catalog.uuid is found first, the caller's
    # domain never runs; the function refuses for its own reason (no session in the context)
    refused = call_check_session()
    assert isinstance(refused, errors.InsufficientPrivilege) and "hijacked" not in str(refused), refused

    # the search_path the definer functions had before (''): pg_temp is searched first,
    # and the caller's function runs with the definer's rights -- the owner's, which is
    # no longer a superuser
    with psycopg.connect(url, autocommit=True) as owner:
        owner.execute("ALTER FUNCTION core.context_session(boolean) SET search_path = ''")
    refused = call_check_session()
    assert f"hijacked: running as {OWNER_ROLE} (superuser: f)" in str(refused)


def url_db(url: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(url)["dbname"]  # type: ignore[return-value]


def test_every_object_belongs_to_the_owner_role_which_is_no_superuser(owner):
    not_owned = owner.execute(
        """
        SELECT 'schema ' || nspname AS object, nspowner::regrole::text AS owner
          FROM pg_namespace WHERE nspname = ANY(%(s)s) AND nspowner <> %(o)s::regrole
        UNION ALL
        SELECT 'relation ' || c.oid::regclass, c.relowner::regrole::text FROM pg_class c
         WHERE c.relnamespace::regnamespace::text = ANY(%(s)s) AND c.relowner <> %(o)s::regrole
        UNION ALL
        SELECT 'function ' || p.oid::regprocedure, p.proowner::regrole::text FROM pg_proc p
         WHERE p.pronamespace::regnamespace::text = ANY(%(s)s) AND p.proowner <> %(o)s::regrole
        """,
        {"s": PROJECT_SCHEMAS, "o": OWNER_ROLE},
    ).fetchall()
    assert not_owned == []
    roles = {
        r["rolname"]: r
        for r in owner.execute(
            "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = ANY(%s)",
            ([OWNER_ROLE, *APP_ROLES],),
        )
    }
    assert not roles[OWNER_ROLE]["rolsuper"] and not roles[OWNER_ROLE]["rolcreaterole"]
    assert roles[OWNER_ROLE]["rolbypassrls"]  # the definer functions work across tenants (00_roles.sql)
    assert not any(roles[role]["rolsuper"] or roles[role]["rolbypassrls"] for role in APP_ROLES)


def test_migrate_hands_every_object_to_the_owner(scratch_database):
    # objects the migrating superuser creates (every interface function is re-created by
    # it on each migrate) or takes back end up owned by tenantry_owner, and lint passes
    from db import migrate

    url = scratch_database("ownership", migrated=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE FUNCTION core.stray() RETURNS int LANGUAGE sql AS 'SELECT 1'")
        conn.execute("ALTER TABLE core.tenants OWNER TO postgres")
    problems = {str(p) for p in lint.lint(url)}
    assert "core.stray(): function owned by the superuser postgres; tenantry_owner must own it" in problems
    assert "core.tenants: table owned by the superuser postgres; tenantry_owner must own it" in problems
    migrate.migrate(url)
    with psycopg.connect(url) as conn:
        owners = conn.execute(
            "SELECT (SELECT proowner::regrole::text FROM pg_proc WHERE oid = 'core.stray()'::regprocedure),"
            "       (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'core.tenants'::regclass)"
        ).fetchone()
    assert owners == (OWNER_ROLE, OWNER_ROLE)
    assert lint.lint(url) == []


# -- 2. the session functions act for the context's session -------------------------------------


def open_session(database: Database, tenant_id: uuid.UUID, user_id: uuid.UUID) -> uuid.UUID:
    """A session of the user, as a login opens it (auth.open_session, on the api role)."""
    with database.transaction(Context()) as conn:
        return conn.execute(
            "SELECT session_id FROM auth.open_session(p_user_id => %s, p_tenant_id => %s, p_refresh_hash => %s)",
            (user_id, tenant_id, hashlib.sha256(uuid.uuid4().bytes).digest()),
        ).fetchone()[0]


def as_user(database: Database, tenant_id, user_id, session_id, actor_type="user"):
    return database.transaction(Context(tenant_id, user_id, actor_type, session_id=session_id))


def live_sessions(owner, user_id) -> set[uuid.UUID]:
    return {
        row["session_id"]
        for row in owner.execute(
            "SELECT session_id FROM core.sessions WHERE user_id = %s AND revoked_at IS NULL", (user_id,)
        )
    }


def test_session_functions_take_no_user_id(owner):
    # before the fix each took p_user_id and believed it
    args = {
        row["proname"]: row["args"]
        for row in owner.execute(
            "SELECT proname, pg_get_function_identity_arguments(oid) AS args FROM pg_proc"
            " WHERE pronamespace = 'auth'::regnamespace"
            "   AND proname IN ('check_session', 'list_sessions', 'revoke_session', 'revoke_all_sessions')"
        )
    }
    assert args == {
        "check_session": "",
        "list_sessions": "",
        "revoke_session": "p_tenant_id uuid, p_session_id uuid, p_reason text",
        "revoke_all_sessions": "",
    }


def test_a_caller_on_the_api_role_cannot_list_or_revoke_another_users_sessions(database, new_tenant, owner):
    tenant, other_tenant = new_tenant(), new_tenant()
    victim, attacker = OWNERS[tenant], OWNERS[other_tenant]
    victim_session = open_session(database, tenant, victim)
    attacker_session = open_session(database, other_tenant, attacker)
    before = live_sessions(owner, victim)
    assert victim_session in before

    # the attacker knows the victim's user id and tenant, and has a session of their own
    for tenant_id, session_id in ((tenant, attacker_session), (other_tenant, attacker_session), (tenant, None)):
        for call in (
            "SELECT * FROM auth.list_sessions()",
            "SELECT * FROM auth.revoke_all_sessions()",
            f"SELECT * FROM auth.revoke_session('{tenant}', '{victim_session}')",
            "SELECT * FROM auth.check_session()",
        ):
            with pytest.raises(psycopg.Error) as refused, as_user(database, tenant_id, victim, session_id) as conn:
                conn.execute(call)
            assert refused.value.sqlstate == "TA005", (call, refused.value)
    # acting as themselves, they reach only their own sessions
    with as_user(database, other_tenant, attacker, attacker_session) as conn:
        listed = {row[1] for row in conn.execute("SELECT * FROM auth.list_sessions()")}
        assert attacker_session in listed and victim_session not in listed
        assert conn.execute("SELECT auth.revoke_session(%s, %s)", (tenant, victim_session)).fetchone()[0] is False
    assert live_sessions(owner, victim) == before

    # the victim, in their own session, does reach theirs
    with as_user(database, tenant, victim, victim_session) as conn:
        assert victim_session in {row[1] for row in conn.execute("SELECT * FROM auth.list_sessions()")}
        assert conn.execute("SELECT * FROM auth.check_session()").fetchone()[0] == "owner"
        assert conn.execute("SELECT auth.revoke_all_sessions()").fetchone()[0] == len(before)
    assert live_sessions(owner, victim) == set()


def test_session_functions_refuse_other_kinds_of_actor(database, new_tenant):
    tenant = new_tenant()
    user = OWNERS[tenant]
    session = open_session(database, tenant, user)
    for actor_type in ("api_key", "system", None):
        with pytest.raises(errors.InsufficientPrivilege), as_user(database, tenant, user, session, actor_type) as conn:
            conn.execute("SELECT * FROM auth.list_sessions()")
    # a platform administrator's request (no tenant in its context) passes the session
    # check, but the session calls stay a user's own
    admin_context = Context(None, user, "platform_admin", role=PLATFORM_ADMIN_ROLE, session_id=session)
    with database.transaction(admin_context) as conn:
        assert conn.execute("SELECT role FROM auth.check_session()").fetchone()[0] == "owner"
    with pytest.raises(errors.InsufficientPrivilege), as_user(database, None, user, session, "platform_admin") as conn:
        conn.execute("SELECT * FROM auth.revoke_all_sessions()")


def test_the_api_lists_and_revokes_only_the_callers_sessions(http, sign_up):
    alice, bob = sign_up(), sign_up()
    sessions = http.get("/v1/auth/sessions", headers=alice.headers)
    assert sessions.status_code == 200, sessions.text
    assert {s["tenant_id"] for s in sessions.json()["items"]} == {alice.tenant_id}
    bob_session = http.get("/v1/auth/sessions", headers=bob.headers).json()["items"][0]
    gone = http.delete(f"/v1/auth/sessions/{bob.tenant_id}/{bob_session['session_id']}", headers=alice.headers)
    assert gone.status_code == 404, gone.text
    assert http.get("/v1/auth/me", headers=bob.headers).status_code == 200


# -- 3. the embedded server requires passwords ---------------------------------------------------


def refused_without_password(url: str) -> bool:
    """Whether the server refuses `url` with its password taken out (and none from a
    ~/.pgpass or PGPASSWORD either)."""
    without = make_url(url)._replace(password=None).render_as_string(hide_password=False)
    try:
        with psycopg.connect(without, passfile=os.devnull, connect_timeout=5):
            return False
    except psycopg.OperationalError as exc:
        assert "password" in str(exc), exc
        return True


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.skipif(bool(TEST_DSN), reason="the embedded server only")
def test_the_embedded_server_requires_each_roles_password(embedded_postgres: LocalServer, owner_url, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    # before the fix (trust on loopback) any local process got in as the superuser
    assert refused_without_password(owner_url)
    for role in APP_ROLES:
        url = role_url(owner_url, role)
        assert refused_without_password(url), role
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT current_user").fetchone()[0] == role
    # the secrets: one per role, generated, readable by their owner only
    settings = get_settings()
    files = [embedded_postgres.password_file, *(dsn.secret_file(settings, role) for role in APP_ROLES)]
    assert all(mode(file) == 0o600 for file in files), {str(f): oct(mode(f)) for f in files}
    assert mode(dsn.secret_file(settings, API_ROLE).parent) == 0o700
    assert len({file.read_text() for file in files}) == len(files)


@pytest.fixture
def fresh_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("pg") / "node"
    servers: list[LocalServer] = []

    def make(auth: str = "scram-sha-256") -> LocalServer:
        servers.append(LocalServer(bin_dir=bin_dir(), home=home, port=port, auth=auth))  # type: ignore[arg-type]
        return servers[-1]

    port = free_port()
    yield make
    servers[-1].stop()


def test_a_new_server_requires_a_password(fresh_server, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    server = fresh_server()
    assert server.start()
    assert refused_without_password(server.url())
    assert mode(server.password_file) == 0o600
    with psycopg.connect(server.url()) as conn:
        assert conn.execute(
            "SELECT rolpassword LIKE 'SCRAM-SHA-256$%' FROM pg_authid WHERE rolname = 'postgres'"
        ).fetchone()[0]


def test_a_data_folder_made_with_trust_is_switched_to_passwords(fresh_server, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    old = fresh_server("trust")  # what an older tenantry made on developers' machines
    assert old.start()
    assert not refused_without_password(old.url())
    old.ensure_database("app")

    upgraded = fresh_server()  # the same folder and running server, as tenantry starts it now
    assert upgraded.start() is False  # it was running: switched over in place
    assert not upgraded.trusts_connections()
    assert refused_without_password(upgraded.url("app"))
    assert mode(upgraded.password_file) == 0o600
    with psycopg.connect(upgraded.url("app")) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "app"
    # and across a restart
    assert upgraded.stop() and upgraded.start()
    assert refused_without_password(upgraded.url())


def test_db_dsn_prints_working_dsns(owner_url, monkeypatch):
    from tenantry.cli import app

    monkeypatch.setenv("TENANTRY_DATABASE_URL", owner_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        everything = runner.invoke(app, ["db", "dsn"])
        one = runner.invoke(app, ["db", "dsn", "analyst"])
        unknown = runner.invoke(app, ["db", "dsn", "nobody"])
    finally:
        get_settings.cache_clear()
    assert everything.exit_code == 0, everything.output
    names = [line.split()[0] for line in everything.output.splitlines() if line.strip()]
    assert names[:5] == ["owner", "api", "worker", "analyst", "platform-admin"]
    assert one.exit_code == 0 and one.output.strip() == role_url(owner_url, ANALYST_ROLE)
    with psycopg.connect(one.output.strip()) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == ANALYST_ROLE
    assert unknown.exit_code == 1 and "no DSN named 'nobody'" in unknown.output


def test_the_session_id_is_part_of_the_context_validated_and_quoted():
    from db.context import ContextError

    session = uuid.uuid4()
    statement = Context(session_id=str(session)).statement()  # type: ignore[arg-type]  # (validated: strings too)
    assert statement is not None and f"SET LOCAL app.session_id = '{session}'" in statement.as_string(None)
    with pytest.raises(ContextError, match="session_id must be a UUID"):
        Context(session_id="x'; RESET ROLE; --")  # type: ignore[arg-type]


def test_every_definer_function_is_in_the_sql_readme_table(owner):
    """sql/README.md, "Definer functions": who may call each one, what it trusts, its rule."""
    import re

    from db import PROJECT_ROOT

    text = (PROJECT_ROOT / "sql" / "README.md").read_text()
    section = text[text.index("## Definer functions") :]
    section = section[: section.index("\n## ", 1)]
    first_cells = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    listed = {name for cell in first_cells for name in re.findall(r"`([a-z_]+\.[a-z_*]+)`", cell)}
    definers = {
        row["name"]
        for row in owner.execute(
            "SELECT pronamespace::regnamespace || '.' || proname AS name FROM pg_proc"
            " WHERE prosecdef AND pronamespace::regnamespace::text = ANY(%s)",
            (PROJECT_SCHEMAS,),
        )
    }
    missing = {name for name in definers if name not in listed and f"{name.split('.')[0]}.*" not in listed}
    assert not missing, f"SECURITY DEFINER functions missing from sql/README.md's table: {sorted(missing)}"


def test_migrate_sets_generated_passwords_on_the_embedded_server_only(tmp_path):
    from pydantic import SecretStr

    from db import migrate

    settings = Settings(state_dir=tmp_path, embedded_port=free_port(), api_database_url="postgresql://x@db/y")
    embedded = f"postgresql://postgres@127.0.0.1:{settings.embedded_port}/tenantry"
    generated = migrate.role_passwords(settings, embedded)
    # each role whose DSN tenantry derives gets its own secret, kept 0600 in the state folder
    assert sorted(generated) == sorted(role for role in APP_ROLES if role != API_ROLE)
    assert len(set(generated.values())) == len(generated)
    assert all(dsn.secret_file(settings, role).read_text().strip() == pw for role, pw in generated.items())
    assert migrate.role_passwords(settings, embedded) == generated  # generated once
    # another server's roles keep the passwords their operator gave them
    assert migrate.role_passwords(settings, "postgresql://postgres@db.example:5432/tenantry") == {}
    # TENANTRY_APP_ROLE_PASSWORD overrides, on any server
    override = settings.model_copy(update={"app_role_password": SecretStr("s3cret")})
    assert migrate.role_passwords(override, "postgresql://postgres@db.example/t") == dict.fromkeys(APP_ROLES, "s3cret")
    # and a derived role DSN never carries the owner's password
    external = Settings(state_dir=tmp_path, database_url="postgresql://postgres:owner-pw@db.example:5432/t")
    assert dsn.role_url(external, "tenantry_worker") == "postgresql://tenantry_worker@db.example:5432/t"

"""The tenant context: validated, transaction-scoped, fail-closed."""

from __future__ import annotations

import uuid

import pytest

from db.context import Context, ContextError, transaction
from tests.helpers import one, owner_transaction


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant_id": "not-a-uuid"},
        {"tenant_id": "'; RESET ROLE; --"},
        {"tenant_id": None, "actor_id": "bob"},
        {"tenant_id": None, "actor_type": "root"},
        {"tenant_id": None, "request_id": "x" * 201},
        {"tenant_id": None, "request_id": "line\nbreak"},
    ],
)
def test_malformed_context_values_are_refused_before_any_sql(kwargs):
    with pytest.raises(ContextError):
        Context(**kwargs)


def test_context_values_are_quoted_literals():
    statement = Context(uuid.UUID(int=1), request_id="it's").statement()
    assert statement is not None
    text = statement.as_string(None)
    assert "SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'" in text
    assert "SET LOCAL app.request_id = 'it''s'" in text
    assert Context().statement() is None


def test_context_is_visible_inside_and_gone_after_the_transaction(api_pool, new_tenant):
    tenant, actor = new_tenant(), uuid.uuid4()
    with transaction(api_pool, Context(tenant, actor_id=actor, actor_type="api_key", request_id="req-1")) as conn:
        seen = conn.execute(
            "SELECT core.current_tenant_id(), core.current_actor_id(), "
            "core.current_actor_type(), core.current_request_id()"
        ).fetchone()
    assert seen == (tenant, actor, "api_key", "req-1")
    # the pool hands back the same (single) connection: nothing leaks into the next use
    with api_pool.connection() as conn:
        assert conn.execute("SELECT core.current_tenant_id(), core.current_actor_id()").fetchone() == (None, None)


def test_a_rolled_back_transaction_keeps_nothing(api_pool, new_tenant):
    tenant = new_tenant()
    with pytest.raises(RuntimeError), owner_transaction(api_pool, tenant) as conn:
        conn.execute("SELECT api.create_project(%s, 'ghost')", (tenant,))
        raise RuntimeError("the request failed after the write")
    with owner_transaction(api_pool, tenant) as conn:
        assert conn.execute("SELECT count(*) FROM api.list_projects(%s)", (tenant,)).fetchone()[0] == 0


def test_without_context_api_functions_refuse_and_tables_are_empty(api_pool, new_tenant):
    tenant = new_tenant()
    one(api_pool, tenant, "create_project", "visible only with context")
    with pytest.raises(Exception) as exc:
        one(api_pool, tenant, "list_projects", as_tenant=None)
    assert getattr(exc.value, "sqlstate", None) == "42501"
    with transaction(api_pool, Context(None)) as conn:
        assert conn.execute("SELECT count(*) FROM core.projects").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM core.tenants").fetchone()[0] == 0


def test_roles_have_only_their_own_doors(api_pool, admin_pool, analyst_pool, new_tenant):
    tenant = new_tenant()
    one(api_pool, tenant, "create_project", "P")
    forbidden = [
        (api_pool, "SELECT admin.create_tenant('api-made', 'x', 'free', gen_random_uuid())"),
        (api_pool, "SELECT * FROM core.users"),
        (api_pool, "SELECT * FROM core.sessions"),
        (api_pool, "INSERT INTO core.memberships VALUES (gen_random_uuid(), gen_random_uuid(), 'owner')"),
        (api_pool, "DELETE FROM core.projects"),
        (api_pool, "SELECT * FROM analytics.tenant_overview"),
        (api_pool, "INSERT INTO core.tenant_slugs VALUES ('x-y-z', gen_random_uuid())"),
        (admin_pool, "SELECT * FROM core.projects"),
        (analyst_pool, "SELECT * FROM core.tenants"),
        (analyst_pool, "SELECT api.list_projects(gen_random_uuid())"),
    ]
    for pool, statement in forbidden:
        with pytest.raises(Exception) as exc, pool.connection() as conn:
            conn.execute(statement)
        assert getattr(exc.value, "sqlstate", None) == "42501", statement
    with analyst_pool.connection() as conn:
        row = conn.execute(
            "SELECT live_projects, status FROM analytics.tenant_overview WHERE tenant_id = %s", (tenant,)
        ).fetchone()
    assert row == (1, "active")


def test_the_opening_uses_set_config_only_where_postgresql_is_known_to_be_alone(test_settings):
    """One set_config() statement instead of six SET LOCALs (issue 10) is only for a
    connection the pool has seen to be PostgreSQL without Citus: set_config() does not
    reach Citus workers (fact 8), so a connection nobody configured sends SET LOCAL.
    Either way the values are the same, quotes included."""
    from psycopg_pool import ConnectionPool

    from db.context import Connection, configure_connection
    from db.dsn import role_url
    from db.settings import API_ROLE

    context = Context(uuid.UUID(int=1), request_id="it's", client_ip="::ffff:127.0.0.1")
    url = role_url(test_settings, API_ROLE)
    with ConnectionPool(url, connection_class=Connection, min_size=1, max_size=1) as pool, pool.connection() as conn:
        text, count = context.opening(conn)  # not configured: as on Citus
        assert text.startswith("BEGIN; SET LOCAL app.tenant_id = '00000000-0000-0000-0000-000000000001'")
        assert "SET LOCAL app.request_id = 'it''s'" in text and "set_config" not in text
        assert count == 1 + text.count("SET LOCAL")
        configure_connection(conn)
        citus = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'citus'").fetchone() is not None
        conn.commit()
        text, count = context.opening(conn)
        if citus:
            assert "set_config" not in text
        else:
            assert text.startswith("BEGIN; SELECT pg_catalog.set_config('app.tenant_id', '00000000-")
            assert "set_config('app.request_id', 'it''s', true)" in text and count == 2
        # what the server makes of it: the same context (the address in canonical form)
        conn.autocommit = True
        conn.execute(text)
        seen = conn.execute(
            "SELECT core.current_tenant_id(), current_setting('app.request_id'), current_setting('app.client_ip')"
        ).fetchone()
        conn.execute("ROLLBACK")
    assert seen == (uuid.UUID(int=1), "it's", "::ffff:7f00:1")

"""`tenantry db lint`: passes on the real schema, and names each kind of violation."""

from __future__ import annotations

import pytest

from db import lint


def test_the_schema_passes_lint(owner_url):
    assert lint.lint(owner_url) == []


def test_lint_of_an_unmigrated_database_says_to_migrate(scratch_database):
    empty = scratch_database("lint_empty")
    assert [str(p) for p in lint.lint(empty)] == ["core.tenants: missing: run `tenantry db migrate` first"]


@pytest.fixture
def bad_schema(owner):
    """A throwaway schema with one table breaking every rule, and a bad function."""
    owner.execute("DROP SCHEMA IF EXISTS lint_probe CASCADE")
    owner.execute("CREATE SCHEMA lint_probe")
    owner.execute("""
        CREATE TABLE lint_probe.notes (
            note_id uuid PRIMARY KEY,
            tenant_id uuid NOT NULL,
            slug text UNIQUE,
            project_id uuid,
            FOREIGN KEY (tenant_id, project_id) REFERENCES core.projects (tenant_id, project_id)
        )""")
    owner.execute("CREATE TABLE lint_probe.half (tenant_id uuid, id int, PRIMARY KEY (tenant_id, id))")
    owner.execute("CREATE UNIQUE INDEX half_id ON lint_probe.half (id)")
    owner.execute("ALTER TABLE lint_probe.half ENABLE ROW LEVEL SECURITY")
    owner.execute("CREATE POLICY everyone ON lint_probe.half USING (true)")
    owner.execute("CREATE FUNCTION lint_probe.risky() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'")
    # definer functions whose search_path lets a caller's temporary types come first
    for name, path in (("empty_path", "''"), ("temp_first", "pg_temp, pg_catalog"), ("no_temp", "pg_catalog")):
        owner.execute(
            f"CREATE FUNCTION lint_probe.{name}() RETURNS int LANGUAGE sql SECURITY DEFINER"
            f" SET search_path = {path} AS 'SELECT 1'"
        )
        owner.execute(f"REVOKE EXECUTE ON FUNCTION lint_probe.{name}() FROM PUBLIC")
        owner.execute(f"ALTER FUNCTION lint_probe.{name}() OWNER TO tenantry_owner")
    # and one as it should be: owned by tenantry_owner, temp last, not PUBLIC's
    owner.execute(
        "CREATE FUNCTION lint_probe.sound() RETURNS int LANGUAGE sql SECURITY DEFINER"
        " SET search_path = pg_catalog, pg_temp AS 'SELECT 1'"
    )
    owner.execute("REVOKE EXECUTE ON FUNCTION lint_probe.sound() FROM PUBLIC")
    owner.execute("ALTER FUNCTION lint_probe.sound() OWNER TO tenantry_owner")
    yield
    owner.execute("DROP SCHEMA lint_probe CASCADE")


def test_lint_names_every_violation(owner_url, bad_schema, is_citus):
    problems = {str(p) for p in lint.lint(owner_url, schemas=("lint_probe",))}
    expected = {
        "lint_probe.notes: row level security is not enabled",
        "lint_probe.notes: row level security is not forced (owner would bypass it)",
        "lint_probe.notes: has no row level security policy",
        "lint_probe.notes: primary key notes_pkey lacks tenant_id: PRIMARY KEY (note_id)",
        "lint_probe.notes: unique constraint notes_slug_key lacks tenant_id: UNIQUE (slug)",
        "lint_probe.half: row level security is not forced (owner would bypass it)",
        "lint_probe.half: no policy compares with core.current_tenant_id()",
        "lint_probe.half: a policy applies TO PUBLIC; scope policies to a role",
        "lint_probe.half: unique index half_id lacks tenant_id: "
        "CREATE UNIQUE INDEX half_id ON lint_probe.half USING btree (id)",
        "lint_probe.risky(): SECURITY DEFINER without SET search_path = pg_catalog, pg_temp",
        "lint_probe.risky(): PUBLIC may execute it; grant it to a role instead",
        "lint_probe.empty_path(): SECURITY DEFINER without SET search_path = pg_catalog, pg_temp",
        "lint_probe.temp_first(): SECURITY DEFINER without SET search_path = pg_catalog, pg_temp",
        "lint_probe.no_temp(): SECURITY DEFINER without SET search_path = pg_catalog, pg_temp",
        # the superuser that ran the fixture owns these; tenantry_owner must
        "lint_probe: schema owned by the superuser postgres; tenantry_owner must own it",
        "lint_probe.notes: table owned by the superuser postgres; tenantry_owner must own it",
        "lint_probe.half: table owned by the superuser postgres; tenantry_owner must own it",
        "lint_probe.risky(): function owned by the superuser postgres; tenantry_owner must own it",
    }
    if is_citus:
        expected |= {
            "lint_probe.notes: is not distributed on tenant_id",
            "lint_probe.half: is not distributed on tenant_id",
        }
    assert problems == expected


def test_lint_names_an_application_role_that_may_create_temporary_objects(owner_url, owner):
    database = owner.execute("SELECT current_database()").fetchone()["current_database"]

    def temporary(action: str, grantee: str) -> None:
        to = "TO" if action == "GRANT" else "FROM"
        owner.execute(f'{action} TEMPORARY ON DATABASE "{database}" {to} {grantee}')

    try:
        temporary("GRANT", "tenantry_analyst")
        directly = [str(p) for p in lint.lint(owner_url)]
        temporary("REVOKE", "tenantry_analyst")
        temporary("GRANT", "PUBLIC")
        through_public = [str(p) for p in lint.lint(owner_url)]
    finally:
        temporary("REVOKE", "tenantry_analyst")
        temporary("REVOKE", "PUBLIC")
    assert directly == [f"database {database}: tenantry_analyst may create temporary objects (revoke TEMPORARY)"]
    assert through_public == [
        f"database {database}: {role} may create temporary objects (revoke TEMPORARY)"
        for role in sorted(("tenantry_api", "tenantry_worker", "tenantry_analyst", "tenantry_platform_admin"))
    ]
    assert lint.lint(owner_url) == []


def test_lint_command_exits_non_zero_naming_the_table(owner_url, owner, monkeypatch):
    from typer.testing import CliRunner

    from db.settings import get_settings
    from tenantry.cli import app

    monkeypatch.setenv("TENANTRY_DATABASE_URL", owner_url)
    get_settings.cache_clear()
    runner = CliRunner()
    assert runner.invoke(app, ["db", "lint"]).exit_code == 0
    owner.execute("CREATE TABLE core.lint_probe (tenant_id uuid, id int, PRIMARY KEY (tenant_id, id))")
    try:
        result = runner.invoke(app, ["db", "lint"])
    finally:
        owner.execute("DROP TABLE core.lint_probe")
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "core.lint_probe: row level security is not enabled" in result.output

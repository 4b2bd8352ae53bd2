"""Migrations: from zero they give exactly the declared schema; down and up round-trip.

Each test works in scratch databases of its own on the server under test (conftest's
`scratch_database`: empty, or a clone of the session's migrated template).
"""

from __future__ import annotations

import ast

import psycopg
import pytest

from db import PROJECT_ROOT, migrate
from db.sqlscript import execute_script

SCHEMAS = ["core", "api", "auth", "ops", "admin", "analytics"]

# One line per object of the project's schemas, as the catalog describes it.
CATALOG_SNAPSHOT = """
SELECT 'relation ' || c.oid::regclass || ' ' || c.relkind::text || ' rls=' || c.relrowsecurity
       || ' force=' || c.relforcerowsecurity || ' acl=' || COALESCE(c.relacl::text, '')
       || ' comment=' || COALESCE(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class c WHERE c.relnamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'column ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull=' || a.attnotnull || ' default=' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE c.relnamespace::regnamespace::text = ANY(%(s)s) AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'index ' || pg_get_indexdef(indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relnamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'function ' || p.oid::regprocedure || ' acl=' || COALESCE(p.proacl::text, '') || ' '
       || md5(pg_get_functiondef(p.oid))
  FROM pg_proc p WHERE p.pronamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE NOT t.tgisinternal AND c.relnamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'policy ' || schemaname || '.' || tablename || ' ' || policyname || ' ' || cmd || ' '
       || roles::text || ' ' || COALESCE(qual, '') || ' / ' || COALESCE(with_check, '')
  FROM pg_policies WHERE schemaname = ANY(%(s)s)
UNION ALL
SELECT 'view ' || c.oid::regclass || ' ' || md5(pg_get_viewdef(c.oid))
  FROM pg_class c WHERE c.relkind IN ('v', 'm') AND c.relnamespace::regnamespace::text = ANY(%(s)s)
UNION ALL
SELECT 'schema ' || nspname || ' acl=' || COALESCE(nspacl::text, '') FROM pg_namespace WHERE nspname = ANY(%(s)s)
"""


def snapshot(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted(row[0] for row in conn.execute(CATALOG_SNAPSHOT, {"s": SCHEMAS}))


def declared_schema(url: str) -> None:
    """Build the schema straight from the SQL files, without Alembic."""
    with psycopg.connect(url) as conn:
        for version in sorted((PROJECT_ROOT / "sql" / "versions").glob("*.up.sql")):
            execute_script(conn, version.read_text())
        for file in migrate.repeatable_files():
            execute_script(conn, file.read_text())


def test_migrating_from_zero_gives_exactly_the_declared_schema(scratch_database):
    migrated, declared = scratch_database("migrated"), scratch_database("declared")
    migrate.migrate(migrated)
    declared_schema(declared)
    assert snapshot(migrated) == snapshot(declared)
    assert len(snapshot(migrated)) > 100  # the comparison compared something


def test_migrate_is_idempotent_and_downgrade_upgrade_round_trips(scratch_database):
    url = scratch_database("roundtrip", migrated=True)
    first = snapshot(url)
    migrate.migrate(url)
    assert snapshot(url) == first

    migrate.downgrade(url, "base")
    assert snapshot(url) == []
    assert migrate.status(url).current is None

    migrate.migrate(url)
    assert snapshot(url) == first
    assert migrate.status(url).up_to_date


def test_a_failing_migration_changes_nothing(scratch_database, monkeypatch, tmp_path):
    url = scratch_database("atomic")
    broken = tmp_path / "policies"
    broken.mkdir()
    (broken / "zz_broken.sql").write_text("SELECT no_such_function();")
    monkeypatch.setattr(migrate, "REPEATABLE_DIRS", (*migrate.REPEATABLE_DIRS, broken))
    with pytest.raises(migrate.MigrationError, match=r"zz_broken\.sql"):
        migrate.migrate(url)
    assert snapshot(url) == []
    assert migrate.status(url).current is None


def _revision_sql_files() -> list[str]:
    names = []
    for revision in (PROJECT_ROOT / "migrations" / "versions").glob("*.py"):
        tree = ast.parse(revision.read_text())
        names += [
            str(node.args[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "run_sql_file"
            and isinstance(node.args[0], ast.Constant)
        ]
    return names


def test_every_versioned_sql_file_is_run_by_exactly_one_revision():
    files = sorted(p.name for p in (PROJECT_ROOT / "sql" / "versions").glob("*.sql"))
    referenced = _revision_sql_files()
    assert sorted(referenced) == files  # each once, none missing, none unknown

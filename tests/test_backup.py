"""Backups and restore (db/backup.py; `tenantry db backup|restore`): back up, change the
data, restore into a new database and compare; retention; refusals; and on Citus the
cluster-wide restore point instead of a dump.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from typer.testing import CliRunner, Result

from db import backup, lint
from db.settings import get_settings
from tenantry.cli import app
from tests.conftest import database_url
from tests.helpers import TEST_PASSWORD_HASH

#: tables compared after a restore: row counts and a checksum of every column
COMPARED = {
    "core.tenants": "tenant_id",
    "core.users": "user_id",
    "core.memberships": "tenant_id, user_id",
    "core.projects": "project_id",
    "core.tasks": "task_id",
}


def tenantry(url: str, *args: str) -> Result:
    """Run `tenantry ARGS…` in-process with `url` as the owner DSN."""
    previous = os.environ.get("TENANTRY_DATABASE_URL")
    os.environ["TENANTRY_DATABASE_URL"] = url
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        if previous is None:
            os.environ.pop("TENANTRY_DATABASE_URL", None)
        else:
            os.environ["TENANTRY_DATABASE_URL"] = previous
        get_settings.cache_clear()


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.output


def snapshot(url: str) -> dict[str, tuple[int, str]]:
    """Per table: (rows, md5 of every row in key order)."""
    found = {}
    with psycopg.connect(url) as conn:
        for table, key in COMPARED.items():
            schema, name = table.split(".")
            query = sql.SQL("SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {}), '')) FROM {} AS t")
            order = sql.SQL(", ").join(sql.Identifier(column.strip()) for column in key.split(","))
            row = conn.execute(query.format(order, sql.Identifier(schema, name))).fetchone()
            assert row is not None
            found[table] = (row[0], row[1])
    return found


def revision(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version_num FROM public.alembic_version").fetchone()
        assert row is not None
        return row[0]


def add_data(url: str) -> uuid.UUID:
    """A tenant (signed up) with three projects of two tasks each."""
    slug = f"bk-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT tenant_id FROM auth.sign_up(%s, %s, %s, %s, %s, %s)",
            (f"{slug}@tenantry.test", "Backup Owner", TEST_PASSWORD_HASH, slug, "Backup Co", f"vfy_{slug}"),
        ).fetchone()
        assert row is not None
        tenant = row[0]
        conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenant,))
        for p in range(3):
            project = conn.execute(
                "INSERT INTO core.projects (tenant_id, name) VALUES (%s, %s) RETURNING project_id", (tenant, f"p{p}")
            ).fetchone()
            assert project is not None
            for t in range(2):
                conn.execute(
                    "INSERT INTO core.tasks (tenant_id, project_id, title) VALUES (%s, %s, %s)",
                    (tenant, project[0], f"t{p}.{t}"),
                )
    return tenant


def drop(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def single_node(is_citus: bool) -> None:
    if is_citus:
        pytest.skip("a pg_dump backup is for single-node PostgreSQL; Citus has its own test below")


@pytest.fixture
def databases(scratch_database, server_url: str) -> Iterator[tuple[str, str]]:
    """A migrated database of the test's own, and the name of a database to restore it
    into (dropped after the test)."""
    source = scratch_database("bk_src", migrated=True)
    name = f"{source.rsplit('/', 1)[-1]}_restored"
    drop(server_url, name)
    yield source, name
    drop(server_url, name)


def stamp(days_ago: float) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).strftime(backup.STAMP_FORMAT)


def test_backup_change_restore_compare(single_node, databases, server_url, tmp_path):
    source, restored_name = databases
    tenant = add_data(source)
    at_backup = snapshot(source)
    dest = tmp_path / "backups"
    dest.mkdir()
    # retention: only our pattern, by the time in the name; the manifest goes with it
    old = dest / f"tenantry-otherdb-{stamp(8)}.dump"
    recent = dest / f"tenantry-otherdb-{stamp(6)}.dump"
    foreign = [dest / f"notes-{stamp(30)}.dump", dest / f"tenantry-otherdb-{stamp(30)}.dump.bak", dest / "keep.txt"]
    for path in [old, recent, *foreign]:
        path.write_text("x")
        os.utime(path, (0, 0))  # an ancient mtime: retention must not go by it
    backup.manifest_path(old).write_text("{}")

    out = ok(tenantry(source, "db", "backup", "--dest", str(dest)))
    made = [p for p in dest.iterdir() if p.name.startswith(f"tenantry-{source.rsplit('/', 1)[-1]}-")]
    dump = next(p for p in made if p.suffix == ".dump")
    assert f"retention: deleted {old.name}" in out
    assert not old.exists() and not backup.manifest_path(old).exists()
    assert recent.exists() and all(p.exists() for p in foreign)
    assert not [p for p in dest.iterdir() if p.name.endswith(".partial")]
    manifest = json.loads(backup.manifest_path(dump).read_text())
    assert manifest["revision"] == revision(source)
    assert manifest["size"] == dump.stat().st_size
    assert manifest["database"] == source.rsplit("/", 1)[-1]

    # after the backup: a new project, a task deleted
    with psycopg.connect(source) as conn:
        conn.execute("INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'after the backup')", (tenant,))
        conn.execute("DELETE FROM core.tasks WHERE task_id = (SELECT min(task_id::text)::uuid FROM core.tasks)")
    changed = snapshot(source)
    assert changed["core.projects"][0] == at_backup["core.projects"][0] + 1
    assert changed["core.tasks"][0] == at_backup["core.tasks"][0] - 1

    out = ok(tenantry(source, "db", "restore", str(dump), "--into", restored_name))
    assert "lint: ok" in out
    target = database_url(server_url, restored_name)
    assert snapshot(target) == at_backup
    assert revision(target) == revision(source)
    assert lint.lint(target) == []
    # the database privileges were applied again: no application role may create temporary objects
    with psycopg.connect(target) as conn:
        row = conn.execute("SELECT has_database_privilege('tenantry_api', current_database(), 'TEMPORARY')").fetchone()
        assert row is not None and row[0] is False

    # an existing database with tenantry's schemas: refused, untouched; --force replaces it
    refused = tenantry(source, "db", "restore", str(dump), "--into", restored_name)
    assert refused.exit_code == 1
    assert "exists and holds tenantry's schemas" in refused.output and "Traceback" not in refused.output
    with psycopg.connect(target) as conn:
        conn.execute("DELETE FROM core.tasks")
    live = tenantry(source, "db", "restore", str(dump), "--into", source.rsplit("/", 1)[-1])
    assert live.exit_code == 1 and snapshot(source) == changed  # the live database is never restored over
    out = ok(tenantry(source, "db", "restore", str(dump), "--into", restored_name, "--force"))
    assert f"dropped the existing database '{restored_name}'" in out
    assert snapshot(target) == at_backup

    # a damaged backup is refused before anything is dropped
    damaged = dest / f"tenantry-damaged-{stamp(0)}.dump"
    data = dump.read_bytes()
    damaged.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    backup.manifest_path(damaged).write_text(backup.manifest_path(dump).read_text())
    result = tenantry(source, "db", "restore", str(damaged), "--into", restored_name, "--force")
    assert result.exit_code == 1 and "does not match its manifest" in result.output
    assert snapshot(target) == at_backup


def test_retention_keeps_what_is_young_or_not_ours(tmp_path: Path):
    now = datetime(2030, 6, 15, 12, 0, tzinfo=UTC)
    names = {
        "tenantry-db-20300607T115959Z.dump": False,  # 8 days and a second: deleted
        "tenantry-db-20300608T120001Z.dump": True,  # just under 7 days
        "tenantry-db-20300101T000000Z.dump.partial": True,  # not our pattern
        ".tenantry-db-20300101T000000Z.dump.partial": True,
        "other-20300101T000000Z.dump": True,
    }
    for name in names:
        (tmp_path / name).write_text("x")
    deleted = backup.apply_retention(tmp_path, 7, now=now)
    assert [p.name for p in deleted] == ["tenantry-db-20300607T115959Z.dump"]
    assert {name: (tmp_path / name).exists() for name in names} == names


def test_citus_refuses_a_dump_and_writes_a_restore_point(is_citus, owner_url, tmp_path):
    if not is_citus:
        result = tenantry(owner_url, "db", "backup", "--restore-point", "x")
        assert result.exit_code == 1 and "needs Citus" in result.output
        pytest.skip("the rest needs a Citus coordinator (TENANTRY_TEST_DSN)")
    refused = tenantry(owner_url, "db", "backup", "--dest", str(tmp_path))
    assert refused.exit_code == 1
    assert "citus_create_restore_point" in refused.output and "Traceback" not in refused.output
    assert not list(tmp_path.iterdir())
    name = f"tenantry-test-{uuid.uuid4().hex[:8]}"
    out = ok(tenantry(owner_url, "db", "backup", "--restore-point", name))
    assert f"restore point {name!r} written on every node" in out

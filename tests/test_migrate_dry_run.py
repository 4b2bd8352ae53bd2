"""`tenantry db migrate --dry-run`: prints the SQL a migration would run (the pending
revisions' files, then every repeatable file, in order) and changes nothing."""

from __future__ import annotations

import re

import psycopg
import pytest
from alembic.script import ScriptDirectory
from typer.testing import CliRunner

from db import PROJECT_ROOT, migrate
from db.settings import get_settings
from tenantry.cli import app
from tests.test_migrations import snapshot

FILE_MARKER = re.compile(r"^-- ==== file: (\S+)$", re.MULTILINE)


def dry_run_cli(monkeypatch: pytest.MonkeyPatch, url: str, *args: str) -> str:
    monkeypatch.setenv("TENANTRY_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "migrate", "--dry-run", *args])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output


def state(url: str) -> tuple[list[str], list[tuple[str, ...]]]:
    """The catalog of the project's schemas, and what alembic_version holds (if it exists)."""
    with psycopg.connect(url) as conn:
        exists = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall() if exists else []
    return snapshot(url), [tuple(row) for row in version]


def revision_files(revisions: list[str]) -> list[str]:
    """The up files of these revisions, as the revision modules name them (0008 ->
    sql/versions/0008_quotas.up.sql), in the order given."""
    versions = sorted((PROJECT_ROOT / "sql" / "versions").glob("*.up.sql"))
    return [f"sql/versions/{p.name}" for rev in revisions for p in versions if p.name.startswith(f"{rev}_")]


def repeatable_names() -> list[str]:
    return [str(p.relative_to(PROJECT_ROOT)) for p in migrate.repeatable_files()]


def test_dry_run_on_an_older_revision_prints_the_pending_files_and_changes_nothing(scratch_database, monkeypatch):
    url = scratch_database("dry_run_behind", migrated=True)
    # pretend the database is two revisions behind: only the version row says so, which
    # is all a dry run reads (no down files run, so the test does not depend on them)
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    chain = [s.revision for s in ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions()]
    assert chain[0] == head and len(chain) >= 3
    behind, pending = chain[2], [chain[1], chain[0]]
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE alembic_version SET version_num = %s", (behind,))
    before = state(url)

    output = dry_run_cli(monkeypatch, url)

    assert state(url) == before  # catalog and revision identical: nothing ran
    assert f"-- database revision: {behind}; pending revisions: {', '.join(pending)}" in output
    # the pending revisions' files, then every repeatable file in the order migrate applies them
    assert FILE_MARKER.findall(output) == revision_files(pending) + repeatable_names()
    for rev in pending:
        assert f"UPDATE alembic_version SET version_num='{rev}'" in output
    assert output.startswith("-- tenantry db migrate --dry-run") and output.rstrip().endswith("COMMIT;")
    # the file bodies are there, unparsed (`:` and `%` intact)
    first = (PROJECT_ROOT / revision_files(pending)[0]).read_text().strip()
    assert first in output


def test_dry_run_on_an_empty_database_prints_every_revision_and_creates_nothing(scratch_database, monkeypatch):
    url = scratch_database("dry_run_empty")
    before = state(url)
    assert before == ([], [])

    output = dry_run_cli(monkeypatch, url)

    assert state(url) == ([], [])  # not even the alembic_version table
    chain = [s.revision for s in ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions()][::-1]
    assert f"pending revisions: {', '.join(chain)}" in output
    assert FILE_MARKER.findall(output) == revision_files(chain) + repeatable_names()
    assert "CREATE TABLE alembic_version" in output


def test_dry_run_at_head_prints_only_the_repeatable_files(owner_url, monkeypatch):
    before = state(owner_url)
    output = dry_run_cli(monkeypatch, owner_url)
    assert state(owner_url) == before
    assert "pending revisions: none" in output
    assert FILE_MARKER.findall(output) == repeatable_names()

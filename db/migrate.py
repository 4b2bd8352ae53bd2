"""Migrations: Alembic revisions for tables, then every repeatable SQL file re-applied.

Order of one `migrate`, all in one transaction:
  1. Alembic upgrades to the target revision; each revision runs sql/versions/NNNN_*.up.sql.
  2. The repeatable files are applied in this order, each idempotent:
     sql/repeatable/*.sql (functions, triggers, Citus distribution, seeds),
     analytics/*.sql (views), policies/*.sql (roles, grants, RLS policies).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, make_url

from db import PROJECT_ROOT
from db.settings import ANALYST_ROLE, API_ROLE, PLATFORM_ADMIN_ROLE, WORKER_ROLE, Settings
from db.sqlscript import execute_script, scalar

REPEATABLE_DIRS = (
    PROJECT_ROOT / "sql" / "repeatable",
    PROJECT_ROOT / "analytics",
    PROJECT_ROOT / "policies",
)


def repeatable_files() -> list[Path]:
    """The repeatable SQL files in the order they are applied."""
    return [file for folder in REPEATABLE_DIRS for file in sorted(folder.glob("*.sql"))]


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    return cfg


@contextmanager
def _connect(url: str) -> Iterator[Connection]:
    engine = create_engine(make_url(url).set(drivername="postgresql+psycopg"), poolclass=None)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under SQLAlchemy's (SQL files go to it unparsed)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _apply_repeatables(conn: Connection, settings: Settings | None) -> None:
    raw = _driver(conn)
    for file in repeatable_files():
        try:
            execute_script(raw, file.read_text())
        except psycopg.Error as exc:
            name = file.relative_to(PROJECT_ROOT) if file.is_relative_to(PROJECT_ROOT) else file
            raise MigrationError(f"{name}: {exc}") from exc
    if settings is not None and settings.app_role_password:
        password = settings.app_role_password.get_secret_value()
        for role in (API_ROLE, WORKER_ROLE, ANALYST_ROLE, PLATFORM_ADMIN_ROLE):
            raw.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)))


class MigrationError(RuntimeError):
    """A SQL file failed; the message names it."""


def migrate(url: str, target: str = "head", settings: Settings | None = None) -> None:
    """Upgrade to `target` and re-apply every repeatable file, in one transaction."""
    cfg = alembic_config()
    with _connect(url) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        _apply_repeatables(conn, settings)


def downgrade(url: str, target: str = "-1") -> None:
    """Run the down files of the revisions above `target` ('base': remove everything)."""
    cfg = alembic_config()
    with _connect(url) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, target)


@dataclass(frozen=True)
class Status:
    current: str | None
    head: str
    citus_version: str | None
    worker_nodes: int

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def status(url: str) -> Status:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    with _connect(url) as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        raw = _driver(conn)
        row = raw.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
        citus_version = row[0] if row else None
        workers = 0
        if citus_version:
            workers = scalar(raw, "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0")
    return Status(current=current, head=head, citus_version=citus_version, worker_nodes=workers)

"""Migrations: Alembic revisions for tables, then every repeatable SQL file re-applied.

Order of one `migrate`, all in one transaction:
  1. Alembic upgrades to the target revision; each revision runs sql/versions/NNNN_*.up.sql.
  2. The repeatable files are applied in this order, each idempotent:
     sql/repeatable/*.sql (functions, triggers, Citus distribution, seeds),
     analytics/*.sql (views), policies/*.sql (roles, the database's privileges, grants,
     ownership by tenantry_owner, RLS policies).
  3. The application roles' passwords are set: the TENANTRY_APP_ROLE_PASSWORD override,
     else on the embedded server each role's generated password from the state folder
     (created on first use); only where the role's password differs (`role_passwords`).

The role that runs it (the superuser on the embedded server) bootstraps: it runs the
DDL, and policies/90_ownership.sql hands every object to tenantry_owner before commit.

`dry_run` returns the SQL of steps 1 and 2 without running it (`tenantry db migrate
--dry-run`): Alembic's offline mode writes the pending revisions' files.
"""

from __future__ import annotations

import io
import re
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

from db import PROJECT_ROOT, dsn
from db.local import secrets
from db.settings import APP_ROLES, Settings, get_settings
from db.sqlscript import execute_script, scalar

REPEATABLE_DIRS = (
    PROJECT_ROOT / "sql" / "repeatable",
    PROJECT_ROOT / "analytics",
    PROJECT_ROOT / "policies",
)
#: The repeatable files that set privileges on the database itself (its pg_database row).
#: CREATE DATABASE ... TEMPLATE does not copy those: see `apply_database_privileges`.
DATABASE_PRIVILEGE_FILES = (PROJECT_ROOT / "policies" / "02_database.sql",)
#: How role passwords are stored: the verifier is computed here, never sent in clear.
PASSWORD_ENCRYPTION = "scram-sha-256"


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
            raw = _driver(conn)
            if raw.execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'citus'").fetchone():
                # revisions create and drop triggers on distributed tables before
                # 020_citus_settings.sql sets this for the database (docs/citus.md, fact
                # 2): a fresh database migrated from zero needs it for this session too
                raw.execute("SET citus.enable_unsafe_triggers = on")
            raw.commit()
            yield conn
    finally:
        engine.dispose()


def _driver(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under SQLAlchemy's (SQL files go to it unparsed)."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    return raw


def _apply_repeatables(conn: Connection, url: str, settings: Settings) -> None:
    raw = _driver(conn)
    for file in repeatable_files():
        try:
            execute_script(raw, file.read_text())
        except psycopg.Error as exc:
            name = file.relative_to(PROJECT_ROOT) if file.is_relative_to(PROJECT_ROOT) else file
            raise MigrationError(f"{name}: {exc}") from exc
    set_role_passwords(raw, role_passwords(settings, url))


def role_passwords(settings: Settings, url: str) -> dict[str, str]:
    """The password each application role must have after migrating the database at `url`:
    TENANTRY_APP_ROLE_PASSWORD for all when it is set; on the embedded server, each role's
    generated one (made now if missing), except a role whose DSN is set explicitly; on
    another server none (its roles keep the passwords their operator gave them: a migration
    run from another machine must not replace them with that machine's secrets)."""
    if settings.app_role_password:
        return dict.fromkeys(APP_ROLES, settings.app_role_password.get_secret_value())
    if not dsn.is_embedded(settings, url):
        return {}
    return {
        role: secrets.read_or_create(dsn.secret_file(settings, role))
        for role in APP_ROLES
        if not dsn.explicit_url(settings, role)
    }


def set_role_passwords(conn: psycopg.Connection[Any], passwords: dict[str, str]) -> None:
    """Set the application roles' passwords, each only if it differs (roles are
    cluster-wide: two migrations writing the same role row at once collide). The SCRAM
    verifier is computed here, so the password itself never reaches the server or its log."""
    readable = scalar(conn, "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')")
    for role, password in passwords.items():
        if readable:
            stored = scalar(conn, "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", (role,))
            if secrets.scram_matches(stored, password):
                continue
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), PASSWORD_ENCRYPTION.encode())
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role), sql.Literal(verifier.decode())))


def apply_database_privileges(url: str) -> None:
    """Apply the privileges the migration sets on the database itself (no application role
    may create temporary objects) to a database cloned from a migrated one: a clone gets
    the default privileges, not its template's."""
    with psycopg.connect(url) as conn:
        for file in DATABASE_PRIVILEGE_FILES:
            execute_script(conn, file.read_text())


class MigrationError(RuntimeError):
    """A SQL file failed; the message names it."""


def migrate(url: str, target: str = "head", settings: Settings | None = None) -> None:
    """Upgrade to `target` and re-apply every repeatable file, in one transaction.

    `settings` (default: the environment's) say which role passwords to set.
    """
    cfg = alembic_config()
    with _connect(url) as conn, conn.begin():
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, target)
        _apply_repeatables(conn, url, settings or get_settings())


def dry_run(url: str, target: str = "head") -> str:
    """The SQL `migrate(url, target)` would run, in order, without changing the database:
    the pending revisions' up files (Alembic's offline mode, with its version-table
    statements), then every repeatable file. It reads only the database's revision.

    For review (`tenantry db migrate --dry-run`), not for piping into psql: `migrate` also
    sets the application roles' passwords, and sends each statement on its own (fact 19)."""
    current = status(url).current
    out = io.StringIO()
    cfg = alembic_config()
    cfg.output_buffer = out
    # offline mode needs the start: from the database's revision (none: from the start)
    command.upgrade(cfg, f"{current}:{target}" if current else target, sql=True)
    revisions = out.getvalue()
    pending = re.findall(r"^-- Running upgrade\s+(?:\S+\s+)?->\s+(\S+)", revisions, flags=re.MULTILINE)
    files = repeatable_files()
    lines = [
        f"-- tenantry db migrate --dry-run: the SQL `tenantry db migrate {target}` would run, in one transaction",
        f"-- database revision: {current or 'none'}; pending revisions: {', '.join(pending) or 'none'}",
        f"-- then {len(files)} repeatable files in order, then the application roles' passwords (not shown)",
        "BEGIN;",
        revisions.rstrip(),
    ]
    for file in files:
        name = file.relative_to(PROJECT_ROOT) if file.is_relative_to(PROJECT_ROOT) else file
        lines += [f"-- ==== file: {name}", file.read_text().rstrip()]
    lines.append("COMMIT;")
    return "\n".join(line for line in lines if line) + "\n"


def downgrade(url: str, target: str = "-1") -> None:
    """Run the down files of the revisions above `target` ('base': remove everything)."""
    cfg = alembic_config()
    with _connect(url) as conn, conn.begin():
        raw = _driver(conn)
        if scalar(raw, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')"):
            # down files drop constraints on distributed tables, then fix rows of reference
            # tables (core.users) in the same transaction: Citus refuses that after parallel
            # DDL ("parallel DDL access ... in the same transaction"), so go shard by shard
            raw.execute("SET LOCAL citus.multi_shard_modify_mode TO 'sequential'")
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

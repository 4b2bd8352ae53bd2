"""Run a versioned SQL file from a revision: revisions name files, they hold no SQL."""

import psycopg
from alembic import op

from db import PROJECT_ROOT
from db.sqlscript import execute_script

VERSIONS_DIR = PROJECT_ROOT / "sql" / "versions"


def run_sql_file(name: str) -> None:
    """Execute sql/versions/<name> on the migration's connection, statement by statement.

    The text goes to psycopg unparsed (no SQLAlchemy bind-parameter syntax, no
    %-placeholders), so SQL files can use `:` and `%` freely.
    """
    raw = op.get_bind().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    execute_script(raw, (VERSIONS_DIR / name).read_text())

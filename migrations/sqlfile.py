"""Run a versioned SQL file from a revision: revisions name files, they hold no SQL."""

import psycopg
from alembic import op

from db import PROJECT_ROOT
from db.sqlscript import execute_script

VERSIONS_DIR = PROJECT_ROOT / "sql" / "versions"


def run_sql_file(name: str) -> None:
    """Execute sql/versions/<name> on the migration's connection, statement by statement.

    The text goes to psycopg unparsed (no SQLAlchemy bind-parameter syntax, no
    %-placeholders), so SQL files can use `:` and `%` freely. In offline mode (a dry run:
    db.migrate.dry_run) the file is written to Alembic's output as it is, unparsed too.
    """
    text = (VERSIONS_DIR / name).read_text()
    context = op.get_context()
    if context.as_sql:
        context.impl.static_output(f"-- ==== file: sql/versions/{name}\n{text.rstrip()}\n")
        return
    raw = op.get_bind().connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    execute_script(raw, text)

"""Run a SQL file statement by statement.

Citus propagates some DDL to the workers by forwarding the client's query text; a
multi-statement string then fails on the workers ("cannot insert multiple commands into
a prepared statement"). So every file is split with PostgreSQL's own parser (pglast,
which embeds libpg_query: dollar quoting, comments and DO blocks are split exactly as the
server would) and sent one statement at a time, unparsed by the driver.
"""

from __future__ import annotations

from typing import Any

import pglast
import psycopg


def statements(script: str) -> list[str]:
    return list(pglast.split(script))


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    """The one value a one-row query returns (a query that returns no row is a bug: it raises)."""
    row = conn.execute(query, params).fetchone()
    if row is None:
        raise LookupError(f"no row from: {query}")
    return row[0]


def execute_script(conn: psycopg.Connection[Any], script: str) -> None:
    for statement in statements(script):
        conn.execute(statement.encode())  # bytes: psycopg does no %-placeholder parsing

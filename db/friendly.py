"""`friendly`: the one way a `tenantry` sub-command turns an expected error into a
one-line message that says what to do and exit code 1 -- never a traceback for a
condition we can name."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import psycopg
import sqlalchemy.exc
import typer

from db import backup, errors, migrate
from db.local.citus_cluster import ClusterError
from db.local.postgres import ServerError
from db.local.redis import RedisServerError

F = TypeVar("F", bound=Callable[..., Any])


def friendly(func: F) -> F:
    """Turn the errors we expect into a one-line message and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            except sqlalchemy.exc.DBAPIError as exc:  # Alembic's connection wraps driver errors
                if isinstance(exc.orig, BaseException):
                    raise exc.orig from None
                raise
        except (
            ServerError,
            RedisServerError,
            migrate.MigrationError,
            ClusterError,
            backup.BackupError,
            LookupError,
        ) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
        except psycopg.OperationalError as exc:
            if exc.sqlstate:  # the server answered (a deadlock, a cancelled statement, ...)
                typer.secho(f"error: {exc.sqlstate}: {str(exc).strip()}", fg="red", err=True)
            else:
                typer.secho(f"error: cannot reach the database: {str(exc).strip()}", fg="red", err=True)
                typer.echo("Check TENANTRY_DATABASE_URL, or unset it to use the embedded server.", err=True)
        except psycopg.Error as exc:  # named from the registry: "error: TN001 tenant_suspended: ..."
            # the server's message and hint, on one line: str(exc) adds CONTEXT lines (PL/pgSQL frames)
            message = exc.diag.message_primary or str(exc).strip()
            hint = f" ({exc.diag.message_hint})" if exc.diag.message_hint else ""
            typer.secho(f"error: {errors.label(exc.sqlstate)}: {message}{hint}", fg="red", err=True)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]

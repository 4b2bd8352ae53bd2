"""The `tenantry` command: database operations for developers and DBAs.

Errors end with a one-line message that says what to do, and a non-zero exit; never a
traceback for a condition we can name.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Annotated, Any, TypeVar

import psycopg
import sqlalchemy.exc
import typer

from db import citus_dev, embedded, lint, migrate
from db.redis_server import RedisServerError
from db.server import ServerError
from db.settings import get_settings

app = typer.Typer(help="tenantry: multi-tenant SaaS platform on PostgreSQL + Citus.", no_args_is_help=True)
db_app = typer.Typer(help="The database: embedded server, migrations, lint.", no_args_is_help=True)
citus_app = typer.Typer(help="Citus operations.", no_args_is_help=True)
cluster_app = typer.Typer(help="A local Citus cluster on loopback, from installed Citus binaries.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(citus_app, name="citus")
citus_app.add_typer(cluster_app, name="dev-cluster")

F = TypeVar("F", bound=Callable[..., Any])


def _friendly(func: F) -> F:
    """Turn the errors we expect into a one-line message and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return func(*args, **kwargs)
            except sqlalchemy.exc.DBAPIError as exc:  # Alembic's connection wraps driver errors
                raise exc.orig from None
        except (ServerError, RedisServerError, migrate.MigrationError, citus_dev.ClusterError,
                LookupError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
        except psycopg.OperationalError as exc:
            if exc.sqlstate:  # the server answered (a deadlock, a cancelled statement, ...)
                typer.secho(f"error: {exc.sqlstate}: {str(exc).strip()}", fg="red", err=True)
            else:
                typer.secho(f"error: cannot reach the database: {str(exc).strip()}", fg="red", err=True)
                typer.echo("Check TENANTRY_DATABASE_URL, or unset it to use the embedded server.", err=True)
        except psycopg.Error as exc:
            typer.secho(f"error: {exc.sqlstate}: {str(exc).strip()}", fg="red", err=True)
        raise typer.Exit(1)

    return wrapper  # type: ignore[return-value]


def _owner_url() -> str:
    return embedded.ensure_database(get_settings())


# -- db -----------------------------------------------------------------------------------


@db_app.command("start")
@_friendly
def db_start() -> None:
    """Start the embedded PostgreSQL server (no-op if it runs, or if TENANTRY_DATABASE_URL is set)."""
    settings = get_settings()
    if settings.database_url:
        typer.echo("TENANTRY_DATABASE_URL is set: nothing to start.")
        return
    server = embedded.embedded_server(settings)
    started = server.start()
    server.ensure_database(settings.database_name)
    typer.echo(f"{'started' if started else 'already running'}: {server.url(settings.database_name)}")


@db_app.command("stop")
@_friendly
def db_stop() -> None:
    """Stop the embedded PostgreSQL server (no-op if it is not running)."""
    stopped = embedded.embedded_server(get_settings()).stop()
    typer.echo("stopped" if stopped else "not running")


@db_app.command("migrate")
@_friendly
def db_migrate(target: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head") -> None:
    """Upgrade to a revision and re-apply functions, views and policies."""
    url = _owner_url()
    migrate.migrate(url, target, get_settings())
    typer.echo(f"migrated to {migrate.status(url).current}")


@db_app.command("downgrade")
@_friendly
def db_downgrade(target: Annotated[str, typer.Argument(help="Revision to go down to ('base': all).")] = "-1") -> None:
    """Undo revisions down to a target (default: the last one)."""
    url = _owner_url()
    migrate.downgrade(url, target)
    typer.echo(f"downgraded to {migrate.status(url).current or 'base'}")


@db_app.command("status")
@_friendly
def db_status() -> None:
    """Show the database's revision, the code's head, and whether Citus is present."""
    url = _owner_url()
    st = migrate.status(url)
    typer.echo(f"database: {embedded.redacted(url)}")
    typer.echo(f"revision: {st.current or 'none (run `tenantry db migrate`)'}")
    typer.echo(f"head:     {st.head}{'' if st.up_to_date else '  (pending: run `tenantry db migrate`)'}")
    if st.citus_version:
        typer.echo(f"citus:    {st.citus_version}, {st.worker_nodes} worker node(s)")
    else:
        typer.echo("citus:    not installed (single-node PostgreSQL)")


@db_app.command("lint")
@_friendly
def db_lint() -> None:
    """Check the schema obeys the multi-tenancy and Citus rules; exit 1 naming each problem."""
    problems = lint.lint(_owner_url())
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.secho(f"{len(problems)} problem(s)", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("lint: ok")


# -- citus dev-cluster --------------------------------------------------------------------


@cluster_app.command("up")
@_friendly
def cluster_up(
    workers: Annotated[int, typer.Option(min=1, max=8, help="Number of worker nodes.")] = 2,
    base_port: Annotated[int, typer.Option(help="Coordinator port; workers use the next ones.")] = 9700,
) -> None:
    """Start a coordinator and N workers on 127.0.0.1, and register the workers."""
    cluster = citus_dev.DevCluster.from_settings(get_settings(), workers=workers, base_port=base_port)
    cluster.up(echo=typer.echo)
    typer.echo(f"coordinator: {cluster.url()}")
    typer.echo(f"use it:      export TENANTRY_DATABASE_URL={cluster.url()}")


@cluster_app.command("down")
@_friendly
def cluster_down() -> None:
    """Stop every node of the dev cluster (data is kept)."""
    cluster = citus_dev.DevCluster.existing(get_settings())
    cluster.down(echo=typer.echo)


@cluster_app.command("status")
@_friendly
def cluster_status() -> None:
    """Show each node of the dev cluster and whether it runs."""
    cluster = citus_dev.DevCluster.existing(get_settings())
    for line in cluster.status_lines():
        typer.echo(line)


# -- serve --------------------------------------------------------------------------------


@app.command("serve")
@_friendly
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default TENANTRY_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TENANTRY_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Threads per worker.")] = 8,
) -> None:
    """Run the HTTP API (starting the embedded PostgreSQL and a local Redis when not configured)."""
    from api.server import serve

    settings = services_settings(get_settings())
    url = settings.database_url or ""
    if not migrate.status(url).up_to_date:
        raise migrate.MigrationError("the database is not at the code's revision: run `tenantry db migrate`")
    serve(settings, host=host or settings.api_host, port=port or settings.api_port, workers=workers, threads=threads)


def services_settings(settings):
    """Settings with the database and Redis URLs filled in, starting local ones if unset."""
    from db.redis_server import LocalRedis

    url = embedded.ensure_database(settings)
    redis_url = settings.redis_url
    if not redis_url:
        local = LocalRedis(settings.state_dir / "redis", settings.redis_port)
        local.start()
        redis_url = local.url()
    return settings.model_copy(update={"database_url": url, "redis_url": redis_url})


# -- platform admins ----------------------------------------------------------------------

admin_app = typer.Typer(help="Platform administrators (operators who manage tenants).", no_args_is_help=True)
app.add_typer(admin_app, name="platform-admin")


@admin_app.command("grant")
@_friendly
def admin_grant(email: str) -> None:
    """Make an existing user a platform administrator (they log in again to use it)."""
    from db.platform import grant_platform_admin

    grant_platform_admin(_owner_url(), email)
    typer.echo(f"{email} is a platform administrator")


@admin_app.command("revoke")
@_friendly
def admin_revoke(email: str) -> None:
    """Take platform administration away from a user (effective on their next request)."""
    from db.platform import grant_platform_admin

    grant_platform_admin(_owner_url(), email, grant=False)
    typer.echo(f"{email} is no longer a platform administrator")


# -- demo ---------------------------------------------------------------------------------


@app.command("demo")
@_friendly
def demo_command() -> None:
    """Start (embedded by default), migrate, and run demo traffic that shows isolation."""
    from db import demo

    demo.run(get_settings(), echo=typer.echo)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())

"""`tenantry db …`, `tenantry citus …` and `tenantry platform-admin …`: the database
commands for developers and DBAs."""

from __future__ import annotations

from typing import Annotated

import typer

from db import dsn, lint, migrate
from db.friendly import friendly
from db.local import services
from db.local.cli import dev_cluster_app
from db.platform import grant_platform_admin
from db.settings import ANALYST_ROLE, API_ROLE, APP_ROLES, PLATFORM_ADMIN_ROLE, WORKER_ROLE, get_settings

db_app = typer.Typer(help="The database: migrations, status, lint.", no_args_is_help=True)
citus_app = typer.Typer(help="Citus operations.", no_args_is_help=True)
citus_app.add_typer(dev_cluster_app, name="dev-cluster")
platform_admin_app = typer.Typer(help="Platform administrators (operators who manage tenants).", no_args_is_help=True)


def _owner_url() -> str:
    return services.ensure_database(get_settings())


# -- db -----------------------------------------------------------------------------------


@db_app.command("migrate")
@friendly
def db_migrate(target: Annotated[str, typer.Argument(help="Revision to upgrade to.")] = "head") -> None:
    """Upgrade to a revision and re-apply functions, views and policies."""
    url = _owner_url()
    migrate.migrate(url, target, get_settings())
    typer.echo(f"migrated to {migrate.status(url).current}")


@db_app.command("downgrade")
@friendly
def db_downgrade(target: Annotated[str, typer.Argument(help="Revision to go down to ('base': all).")] = "-1") -> None:
    """Undo revisions down to a target (default: the last one)."""
    url = _owner_url()
    migrate.downgrade(url, target)
    typer.echo(f"downgraded to {migrate.status(url).current or 'base'}")


@db_app.command("status")
@friendly
def db_status() -> None:
    """Show the database's revision, the code's head, and whether Citus is present."""
    url = _owner_url()
    st = migrate.status(url)
    typer.echo(f"database: {dsn.redacted(url)}")
    typer.echo(f"revision: {st.current or 'none (run `tenantry db migrate`)'}")
    typer.echo(f"head:     {st.head}{'' if st.up_to_date else '  (pending: run `tenantry db migrate`)'}")
    if st.citus_version:
        typer.echo(f"citus:    {st.citus_version}, {st.worker_nodes} worker node(s)")
    else:
        typer.echo("citus:    not installed (single-node PostgreSQL)")


#: `tenantry db dsn NAME`: short names of the DSNs it prints
DSN_NAMES = {
    "owner": None,  # the owner DSN: the role migrations run as (the superuser on the embedded server)
    "api": API_ROLE,
    "worker": WORKER_ROLE,
    "analyst": ANALYST_ROLE,
    "platform-admin": PLATFORM_ADMIN_ROLE,
}


@db_app.command("dsn")
@friendly
def db_dsn(
    name: Annotated[
        str | None,
        typer.Argument(help=f"One of: {', '.join(DSN_NAMES)} (or a role's name). Default: all of them."),
    ] = None,
) -> None:
    """Print DSNs with their passwords: the owner's and each application role's.

    With a name, only that DSN (for scripts: psql "$(tenantry db dsn analyst)"). The
    passwords are the generated ones in the state folder (or those you configured).
    """
    settings = get_settings()
    roles = {**DSN_NAMES, **{role: role for role in DSN_NAMES.values() if role}}
    if name is not None and name not in roles:
        raise LookupError(f"no DSN named {name!r}: use one of {', '.join(DSN_NAMES)}")
    owner = _owner_url()
    urls = {key: dsn.role_url(settings, role) if role else owner for key, role in DSN_NAMES.items()}
    if name is not None:
        typer.echo(urls[next(key for key, role in DSN_NAMES.items() if name in (key, role))])
        return
    for key, url in urls.items():
        typer.echo(f"{key:<15} {url}")
    if dsn.is_embedded(settings, owner):
        missing = [r for r in APP_ROLES if not dsn.explicit_url(settings, r) and not dsn.role_password(settings, r)]
        if missing:
            typer.echo(f"no password yet for {', '.join(missing)}: run `tenantry db migrate`", err=True)


@db_app.command("lint")
@friendly
def db_lint() -> None:
    """Check the schema obeys the multi-tenancy and Citus rules; exit 1 naming each problem."""
    problems = lint.lint(_owner_url())
    for problem in problems:
        typer.echo(str(problem))
    if problems:
        typer.secho(f"{len(problems)} problem(s)", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo("lint: ok")


# -- platform admins ----------------------------------------------------------------------


@platform_admin_app.command("grant")
@friendly
def admin_grant(email: str) -> None:
    """Make an existing user a platform administrator (they log in again to use it)."""
    grant_platform_admin(_owner_url(), email)
    typer.echo(f"{email} is a platform administrator")


@platform_admin_app.command("revoke")
@friendly
def admin_revoke(email: str) -> None:
    """Take platform administration away from a user (effective on their next request)."""
    grant_platform_admin(_owner_url(), email, grant=False)
    typer.echo(f"{email} is no longer a platform administrator")

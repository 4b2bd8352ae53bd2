"""`tenantry analytics …` (analysts' access to the analytics schema) and `tenantry report …`
(reports rendered from it)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import URL, make_url

from db import dsn
from db.friendly import friendly
from db.local import services
from db.local.embedded import bin_dir
from db.settings import ANALYST_ROLE, get_settings

analytics_app = typer.Typer(
    help="The analytics schema, as the analyst role (SELECT on analytics.* only).", no_args_is_help=True
)
report_app = typer.Typer(help="Reports rendered from the analytics schema.", no_args_is_help=True)


def analyst_url() -> str:
    """The analyst role's DSN (starting the embedded server when it is ours)."""
    settings = get_settings()
    services.ensure_database(settings)
    return dsn.role_url(settings, ANALYST_ROLE)


def _psql() -> str:
    """The embedded server's psql (its version), else the one on PATH."""
    embedded = bin_dir() / "psql"
    if embedded.exists():
        return str(embedded)
    found = shutil.which("psql")
    if not found:
        raise LookupError("no psql found: install the PostgreSQL client, or connect with `--dsn`")
    return found


@analytics_app.command("psql")
@friendly
def analytics_psql(
    print_dsn: Annotated[
        bool, typer.Option("--dsn", help="Print the analyst's DSN (with its password) instead.")
    ] = False,
) -> None:
    """Open psql as the analyst role on the analytics schema (analytics/README.md)."""
    url = analyst_url()
    if print_dsn:
        typer.echo(url)
        return
    parsed = make_url(url)
    env = dict(os.environ)
    if parsed.password:
        # in the environment, not on the command line (where `ps` would show it)
        env["PGPASSWORD"] = str(parsed.password)
    # URL.create, not .set(): .set() ignores None and would keep the password
    without_password = URL.create(
        "postgresql",
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=parsed.query,
    ).render_as_string(hide_password=False)
    psql = _psql()
    env.setdefault("PGOPTIONS", "-c search_path=analytics")
    os.execve(psql, [psql, without_password], env)


@report_app.command("usage")
@friendly
def report_usage(
    period: Annotated[str, typer.Option(help="The month, YYYY-MM.")],
    out: Annotated[Path, typer.Option(help="The folder to write index.html and its plots into.")],
) -> None:
    """Write an HTML usage report of a month (usage per metric, top tenants, quota pressure)."""
    from jobs import report  # matplotlib is slow to import: only for this command

    try:
        path = report.usage_report(analyst_url(), period, out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--period") from None
    typer.echo(str(path))

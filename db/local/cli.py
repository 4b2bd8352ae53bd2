"""`tenantry services …` and `tenantry citus dev-cluster …`: the local services."""

from __future__ import annotations

from typing import Annotated

import typer

from db import dsn
from db.friendly import friendly
from db.local import citus_cluster, services
from db.settings import get_settings

services_app = typer.Typer(help="What tenantry runs locally: the embedded PostgreSQL and Redis.", no_args_is_help=True)
dev_cluster_app = typer.Typer(
    help="A local Citus cluster on loopback, from installed Citus binaries.", no_args_is_help=True
)


@services_app.command("up")
@friendly
def services_up() -> None:
    """Start the embedded PostgreSQL and the local Redis (each only when not configured elsewhere)."""
    settings = services.up(get_settings())
    typer.echo(f"postgresql  {dsn.redacted(settings.database_url or '')}  (passwords: tenantry db dsn)")
    typer.echo(f"redis       {settings.redis_url}")


@services_app.command("down")
@friendly
def services_down() -> None:
    """Stop the embedded PostgreSQL and the local Redis (data is kept)."""
    for line in services.down(get_settings()):
        typer.echo(line)


@services_app.command("status")
@friendly
def services_status() -> None:
    """Show whether each local service runs, where, and where its files are."""
    for line in services.status(get_settings()):
        typer.echo(line)


# -- citus dev-cluster (coordinator + workers) --------------------------------------------------------------------


@dev_cluster_app.command("up")
@friendly
def cluster_up(
    workers: Annotated[int, typer.Option(min=1, max=8, help="Number of worker nodes.")] = 2,
    base_port: Annotated[int, typer.Option(help="Coordinator port; workers use the next ones.")] = 9700,
) -> None:
    """Start a coordinator and N workers on 127.0.0.1, and register the workers."""
    cluster = citus_cluster.DevCluster.from_settings(get_settings(), workers=workers, base_port=base_port)
    cluster.up(echo=typer.echo)
    typer.echo(f"coordinator: {cluster.url()}")
    typer.echo(f"use it:      export TENANTRY_DATABASE_URL={cluster.url()}")


@dev_cluster_app.command("down")
@friendly
def cluster_down() -> None:
    """Stop every node of the dev cluster (data is kept)."""
    cluster = citus_cluster.DevCluster.existing(get_settings())
    cluster.down(echo=typer.echo)


@dev_cluster_app.command("status")
@friendly
def cluster_status() -> None:
    """Show each node of the dev cluster and whether it runs."""
    cluster = citus_cluster.DevCluster.existing(get_settings())
    for line in cluster.status_lines():
        typer.echo(line)

"""`tenantry serve` and `tenantry demo`: the HTTP API and a real flow through it."""

from __future__ import annotations

from typing import Annotated

import typer

from db import migrate
from db.friendly import friendly
from db.local import services
from db.settings import get_settings

api_app = typer.Typer()


@api_app.command("serve")
@friendly
def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to bind (default TENANTRY_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default TENANTRY_API_PORT).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 2,
    threads: Annotated[int, typer.Option(min=1, help="Threads per worker.")] = 8,
) -> None:
    """Run the HTTP API (starting the embedded PostgreSQL and a local Redis when not configured)."""
    from api.server import serve

    settings = services.up(get_settings())
    if not migrate.status(settings.database_url or "").up_to_date:
        raise migrate.MigrationError("the database is not at the code's revision: run `tenantry db migrate`")
    serve(settings, host=host or settings.api_host, port=port or settings.api_port, workers=workers, threads=threads)


@api_app.command("demo")
@friendly
def demo_command() -> None:
    """Start the local services, migrate, and run a real flow over HTTP (isolation, keys, suspension)."""
    from api import demo

    demo.run(get_settings(), echo=typer.echo)

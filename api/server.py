"""`tenantry serve`: the API under gunicorn (WSGI, threaded workers).

WSGI with gunicorn's gthread workers: every request is a short, blocking conversation
with PostgreSQL through a psycopg pool, which threads serve well; bench/api_throughput
measures what the HTTP layer adds on top of the SQL call itself. Each worker builds its
own app (pools and Redis client) after the fork.
"""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from db.settings import Settings


class _Server(BaseApplication):
    def __init__(self, settings: Settings, options: dict[str, Any]) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        from api.app import create_app

        return create_app(self.settings)


def serve(settings: Settings, *, host: str, port: int, workers: int, threads: int) -> None:
    _Server(settings, {
        "bind": f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "accesslog": None,  # the app logs one JSON line per request itself
        "graceful_timeout": 10,
        "preload_app": False,
    }).run()

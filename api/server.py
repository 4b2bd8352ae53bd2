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
    _Server(
        settings,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "accesslog": None,  # the app logs one JSON line per request itself
            "graceful_timeout": 10,
            "preload_app": False,
            # no gunicornc control socket: it would be written outside the project (~/.gunicorn/),
            # and workers are managed by the process supervisor, not at run time
            "control_socket_disable": True,
        },
    ).run()


def spawn(
    env: dict[str, str],
    port: int,
    log_path,
    *,
    workers: int = 1,
    threads: int = 8,
    ready_path: str = "/health",
    timeout: float = 30.0,
):
    """Start `tenantry serve` in a subprocess on 127.0.0.1:`port` and wait until it answers.

    For the demo and the tests, which drive the API as a client would. Returns the
    process and its base URL; the caller terminates it.
    """
    import os
    import subprocess
    import sys
    import time

    import httpx

    with open(log_path, "w") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tenantry",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--threads",
                str(threads),
            ],
            env=os.environ | env,
            stdout=log,
            stderr=log,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + ready_path, timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the API did not start: see {log_path}")
        time.sleep(0.1)

"""Structured logs: one JSON object per line on stderr (python-json-logger, encoding with
orjson), carrying the request id, tenant and actor the pipeline attaches to each record."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.orjson import OrjsonFormatter


def configure(level: int = logging.INFO) -> None:
    logger = logging.getLogger("tenantry")
    if any(getattr(h, "_tenantry", False) for h in logger.handlers):
        return  # once per process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        OrjsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time", "levelname": "level"}
        )
    )
    handler._tenantry = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def server_logconfig() -> dict:
    """logging.dictConfig for the HTTP server's own messages (api/server.py: workers
    booting, draining, requests refused before the app) in the same JSON lines as the app's
    (gunicorn writes plain text otherwise). Its access log stays off: the app logs each request."""
    formatter = {
        "()": "pythonjsonlogger.orjson.OrjsonFormatter",
        "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
        "rename_fields": {"asctime": "time", "levelname": "level"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": formatter},
        # gunicorn's names: its defaults (merged with this) refer to them
        "handlers": {
            name: {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
            for name in ("console", "error_console")
        },
        "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False}},
    }

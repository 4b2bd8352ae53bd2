"""Structured logs: one JSON object per line on stderr (python-json-logger), carrying
the request id, tenant and actor the pipeline attaches to each record."""

from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter


def configure(level: int = logging.INFO) -> None:
    logger = logging.getLogger("tenantry")
    if any(getattr(h, "_tenantry", False) for h in logger.handlers):
        return  # once per process
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time", "levelname": "level"}
        )
    )
    handler._tenantry = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False

"""JSON for responses and for stored responses (idempotency): UUIDs, times, addresses."""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import ipaddress
import json
import uuid
from typing import Any


def _default(value: Any) -> Any:
    if isinstance(
        value,
        (
            uuid.UUID,
            decimal.Decimal,
            ipaddress.IPv4Address,
            ipaddress.IPv6Address,
            ipaddress.IPv4Network,
            ipaddress.IPv6Network,
        ),
    ):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


dumps = functools.partial(json.dumps, default=_default, ensure_ascii=False)

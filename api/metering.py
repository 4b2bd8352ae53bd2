"""API calls metered without a database write per request: one EVALSHA per
authenticated call increments the caller's count of the current minute in Redis (the
format and script are the contract in db/api_calls.py); the worker's flush job turns
closed minutes into usage events (ops.record_api_calls).

What counts: every request of an authenticated caller (user or API key) that the rate
limiter let through (a 429 is not a call served), whatever its answer.

Like the rate limiter, metering FAILS OPEN: when Redis is unavailable the request is
served, the call is not counted, and tenantry_metering_degraded_total says how many went
uncounted. API calls are metered for usage reports and billing; what must never be
exceeded is enforced in PostgreSQL, not here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

import redis
from prometheus_client import Counter

from db import api_calls

log = logging.getLogger("tenantry.api")

DEGRADED = Counter("tenantry_metering_degraded_total", "API calls not counted because Redis was unavailable")


class Meter:
    def __init__(self, client: redis.Redis, window_seconds: int = api_calls.WINDOW_SECONDS) -> None:
        self._script = client.register_script(api_calls.COUNT_SCRIPT)
        self.window_seconds = window_seconds
        self._up = True
        self._lock = threading.Lock()

    def count_request(self, principal: Any, status: int) -> None:
        """Count the request of the pipeline's principal (api/pipeline.py), if it is one to count."""
        if principal is not None:
            self.count(principal.tenant_id, principal.kind, principal.actor_id, status)

    def count(self, tenant_id: uuid.UUID | None, kind: str, actor_id: uuid.UUID | None, status: int) -> None:
        """Count one call of this caller (anonymous callers and refused requests are not counted)."""
        if tenant_id is None or actor_id is None or kind not in ("user", "api_key") or status == 429:
            return
        keys, args = api_calls.count_args(tenant_id, kind, actor_id, self.window_seconds)
        try:
            self._script(keys=keys, args=args)
        except redis.RedisError as exc:
            DEGRADED.inc()
            self._seen(False, exc)
        else:
            self._seen(True)

    def _seen(self, up: bool, error: Exception | None = None) -> None:
        """Log once per outage (going down, coming back), not once per request."""
        if self._up == up:  # the usual case, without the lock (a change is re-checked under it)
            return
        with self._lock:
            if self._up == up:
                return
            self._up = up
        if up:
            log.warning("metering recovered: API calls are counted again")
        else:
            log.warning("metering unavailable: calls are not counted until Redis answers (%s)", type(error).__name__)

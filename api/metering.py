"""API calls metered without a database write per request, and without a Redis call per
request either: each API worker process adds up its callers' calls in memory and sends
them every `metering_flush_seconds` (1 s by default), one pipelined EVALSHA per caller,
to the caller's count of the current window in Redis (the format and script are the
contract in db/api_calls.py); the worker's flush job turns closed windows into usage
events (ops.record_api_calls).

Why batched (issue 10): one EVALSHA per request was a fifth of a GET's CPU in the API
process (py-spy and cProfile, in the issue's note), for a count that is read once a
minute. The trade-off, which the counts' users accept:

* a call is counted in the window that is current when its second's batch reaches
  Redis, so a call made in the last second of a minute may count in the next one (the
  total is exact; only calls within `metering_flush_seconds` of a window's end move);
* the calls of the last second of a worker that is killed (SIGKILL, a crash) are lost;
  a worker that stops normally (SIGTERM, the drain) sends them as it exits (atexit).

What counts: every request of an authenticated caller (user or API key) that the rate
limiter let through (a 429 is not a call served), whatever its answer.

Like the rate limiter, metering FAILS OPEN: when Redis is unavailable the request is
served, the calls are not counted, and tenantry_metering_degraded_total says how many went
uncounted. API calls are metered for usage reports and billing; what must never be
exceeded is enforced in PostgreSQL, not here.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections import Counter as Tally
from typing import Any

import redis
from prometheus_client import Counter

from db import api_calls

log = logging.getLogger("tenantry.api")

DEGRADED = Counter("tenantry_metering_degraded_total", "API calls not counted because Redis was unavailable")

#: a caller as metering knows it: (tenant id, 'user' or 'api_key', actor id)
Caller = tuple[uuid.UUID, str, uuid.UUID]


class Meter:
    def __init__(
        self, client: redis.Redis, window_seconds: int = api_calls.WINDOW_SECONDS, flush_seconds: float = 1.0
    ) -> None:
        self._client = client
        self._script = client.register_script(api_calls.COUNT_SCRIPT)
        self.window_seconds = window_seconds
        self.flush_seconds = flush_seconds
        self._pending: Tally[Caller] = Tally()
        self._lock = threading.Lock()
        self._flusher_pid: int | None = None  # the process whose flusher thread runs (none before a fork)
        self._up = True
        self._state_lock = threading.Lock()

    def count_request(self, principal: Any, status: int) -> None:
        """Count the request of the pipeline's principal (api/pipeline.py), if it is one to count."""
        if principal is not None:
            self.count(principal.tenant_id, principal.kind, principal.actor_id, status)

    def count(self, tenant_id: uuid.UUID | None, kind: str, actor_id: uuid.UUID | None, status: int) -> None:
        """Count one call of this caller (anonymous callers and refused requests are not counted)."""
        if tenant_id is None or actor_id is None or kind not in ("user", "api_key") or status == 429:
            return
        with self._lock:
            self._pending[(tenant_id, kind, actor_id)] += 1
            if self._flusher_pid != os.getpid():  # the first call in this process (gunicorn forks after import)
                self._start_flusher()

    def _start_flusher(self) -> None:
        self._flusher_pid = os.getpid()
        threading.Thread(target=self._flush_forever, name="tenantry-metering", daemon=True).start()
        atexit.register(self.flush)  # a worker that stops normally sends its last calls

    def _flush_forever(self) -> None:
        while True:  # a daemon thread: it ends with its process (atexit sends the rest)
            time.sleep(self.flush_seconds)
            self.flush()

    def flush(self) -> int:
        """Send the calls counted since the last flush; return how many were sent."""
        with self._lock:
            pending, self._pending = self._pending, Tally()
        if not pending:
            return 0
        try:
            with self._client.pipeline(transaction=False) as pipe:
                for (tenant_id, kind, actor_id), calls in pending.items():
                    keys, args = api_calls.count_args(tenant_id, kind, actor_id, self.window_seconds, calls)
                    self._script(keys=keys, args=args, client=pipe)
                pipe.execute()
        except redis.RedisError as exc:
            DEGRADED.inc(sum(pending.values()))
            self._seen(False, exc)
            return 0
        self._seen(True)
        return sum(pending.values())

    def _seen(self, up: bool, error: Exception | None = None) -> None:
        """Log once per outage (going down, coming back), not once per flush."""
        if self._up == up:  # the usual case, without the lock (a change is re-checked under it)
            return
        with self._state_lock:
            if self._up == up:
                return
            self._up = up
        if up:
            log.warning("metering recovered: API calls are counted again")
        else:
            log.warning("metering unavailable: calls are not counted until Redis answers (%s)", type(error).__name__)

"""The API-call counter flush: closed one-minute windows of the counts the API keeps in
Redis (db/api_calls.py holds the format both sides use) become usage events, through
ops.record_api_calls, one call per window.

A window's counts are deleted from Redis only after the call committed. A crash in
between flushes the same window again on the next run, which records nothing twice: the
SQL's event ids are made from the caller and the window. Idempotent as a whole.
"""

from __future__ import annotations

import datetime as dt

from psycopg.types.json import Jsonb

from db import api_calls
from jobs.runtime import call_ops, job, redis_client, settings

#: windows flushed per run at most (a backlog, after the worker was down, takes several runs)
MAX_WINDOWS = 120


@job(time_limit_s=120)
def flush_api_calls() -> dict[str, int]:
    client = redis_client(settings().redis_url or "")
    try:
        windows = calls = 0
        for window in api_calls.closed_windows(
            client, limit=MAX_WINDOWS, window_seconds=settings().api_call_window_seconds
        ):
            if window.counts:  # an expired window's entry has nothing left to record
                start = dt.datetime.fromtimestamp(window.start, dt.UTC)
                call_ops("record_api_calls", start, Jsonb(window.counts))
            api_calls.forget_window(client, window.start)
            windows += 1
            calls += sum(count["calls"] for count in window.counts)
        return {"windows": windows, "calls": calls}
    finally:
        client.close()

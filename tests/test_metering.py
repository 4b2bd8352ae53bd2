"""API-call metering (api/metering.py): counts added up in each API worker and sent to
Redis in batches. Real redis-server (the session's), real threads, a real child process
for the exit path. The contract with the flush job (db/api_calls.py) is what is checked:
the total per caller in Redis's windows."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Any

import redis

from api.metering import Meter
from db import api_calls


def counted(client: redis.Redis, tenant: uuid.UUID, kind: str, actor: uuid.UUID) -> int:
    field = api_calls.caller_field(tenant, kind, actor)
    windows: Any = client.zrange(api_calls.WINDOWS_KEY, 0, -1)
    return sum(int(client.hget(api_calls.window_key(int(w)), field) or 0) for w in windows)


def test_calls_from_many_threads_are_sent_in_batches_and_all_counted(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    meter = Meter(client, flush_seconds=30)  # no timed flush during the test: flush() is called
    tenant, user, key = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    start = threading.Barrier(8)

    def calls() -> None:
        start.wait()
        for n in range(250):
            meter.count(tenant, "user", user, 200)
            meter.count(tenant, "api_key", key, 500 if n % 10 == 0 else 200)  # any answer counts
            meter.count(tenant, "api_key", key, 429)  # a refused call does not
            meter.count(None, "user", user, 200)  # nor an anonymous one

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counted(client, tenant, "user", user) == 0  # nothing sent per call
    sent_before = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0)
    assert meter.flush() == 4000
    sent = client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0) - sent_before
    assert sent == 2  # one EVALSHA per caller, not per call
    assert counted(client, tenant, "user", user) == 2000
    assert counted(client, tenant, "api_key", key) == 2000
    assert meter.flush() == 0  # nothing twice


def test_the_flusher_sends_counts_on_its_own(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    meter = Meter(client, flush_seconds=0.1)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    for _ in range(5):
        meter.count(tenant, "user", user, 200)
    deadline = time.monotonic() + 5
    while counted(client, tenant, "user", user) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted(client, tenant, "user", user) == 5


def test_a_process_that_exits_normally_sends_its_last_calls(redis_url: str) -> None:
    """A worker that stops (the drain after SIGTERM ends in a normal exit) loses nothing:
    the calls counted since the last flush go out at exit."""
    client = redis.Redis.from_url(redis_url)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    program = textwrap.dedent(
        f"""
        import uuid, redis
        from api.metering import Meter
        meter = Meter(redis.Redis.from_url({redis_url!r}), flush_seconds=3600)
        for _ in range(42):
            meter.count(uuid.UUID({str(tenant)!r}), "user", uuid.UUID({str(user)!r}), 200)
        """
    )
    subprocess.run([sys.executable, "-c", program], check=True, timeout=60)
    assert counted(client, tenant, "user", user) == 42


def test_calls_are_not_counted_while_redis_is_down_and_the_caller_is_not_slowed() -> None:
    """Fail open: a Redis that does not answer costs the request nothing (the flush is in
    the background) and the lost calls are counted as degraded."""
    from prometheus_client import REGISTRY

    before = REGISTRY.get_sample_value("tenantry_metering_degraded_total") or 0.0
    meter = Meter(redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2), flush_seconds=3600)
    started = time.perf_counter()
    for _ in range(1000):
        meter.count(uuid.uuid4(), "user", uuid.uuid4(), 200)
    assert time.perf_counter() - started < 0.5
    assert meter.flush() == 0
    assert (REGISTRY.get_sample_value("tenantry_metering_degraded_total") or 0.0) == before + 1000

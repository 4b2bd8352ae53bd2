"""Rate limits: the Redis token bucket (api.ratelimit) and the local Redis (db.redis_server).

Everything runs against a real redis-server started by LocalRedis on a free loopback
port in a temporary folder, so the Lua script, Redis's clock and EVALSHA atomicity are
the real ones. No database is needed: this file uses none of conftest's fixtures.
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from api.ratelimit import Decision, Limit, RateLimiter, RateLimiterUnavailable, connect, limit_for_plan
from db.local.postgres import free_port, port_is_free
from db.local.redis import LocalRedis, RedisServerError


def degraded_count() -> float:
    return REGISTRY.get_sample_value("tenantry_ratelimit_degraded_total") or 0.0


def process_runs(pid: int) -> bool:
    """True while `pid` runs; an exited process its parent has not reaped yet (a zombie:
    PID 1 reaps a daemon's orphans when it gets to it) does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def fresh_key() -> str:
    """A bucket of its own for each test (and each hypothesis example)."""
    return f"test:{uuid.uuid4()}"


@pytest.fixture(scope="module")
def local_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path_factory.mktemp("redis"), free_port())
    assert server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(local_redis: LocalRedis) -> Iterator[redis.Redis]:
    # the timeouts the API uses (api/app.py): a slow Redis must not slow requests
    connection = redis.Redis.from_url(local_redis.url(), socket_timeout=0.2, socket_connect_timeout=0.2)
    yield connection
    connection.close()


@pytest.fixture
def limiter(client: redis.Redis) -> RateLimiter:
    return RateLimiter(client)


# -- limits and plans -------------------------------------------------------------------------


def test_per_minute_and_plans() -> None:
    assert Limit.per_minute(60) == Limit(capacity=60, refill_per_second=1.0)
    assert limit_for_plan(None) is None  # a plan without a request limit
    for plan, per_minute in {"free": 60, "pro": 600, "enterprise": 6000}.items():
        limit = limit_for_plan(per_minute)
        assert limit == Limit(per_minute, per_minute / 60), plan


def test_nonsense_limits_and_costs_are_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError):
        Limit(capacity=-1, refill_per_second=1.0)
    with pytest.raises(ValueError):
        Limit(capacity=5, refill_per_second=-1.0)
    with pytest.raises(ValueError):  # would add tokens beyond the capacity
        limiter.hit(fresh_key(), Limit(5, 0.0), cost=-3)


# -- counts and headers -----------------------------------------------------------------------


def test_capacity_then_denied_with_headers(limiter: RateLimiter) -> None:
    key, limit = fresh_key(), Limit.per_minute(5)
    decisions = [limiter.hit(key, limit) for _ in range(6)]

    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert not any(d.degraded for d in decisions)

    first = decisions[0].headers()
    assert first["RateLimit-Limit"] == "5"
    assert first["RateLimit-Remaining"] == "4"
    assert first["RateLimit-Policy"] == "5;w=60"
    assert 1 <= int(first["RateLimit-Reset"]) <= 12  # one token at 5/min: 12 s to be full again
    assert "Retry-After" not in first

    denied = decisions[-1]
    assert denied.retry_after is not None and 1 <= denied.retry_after <= 12
    headers = denied.headers()
    assert headers["RateLimit-Remaining"] == "0"
    assert int(headers["Retry-After"]) == denied.retry_after >= 1
    assert 1 <= int(headers["RateLimit-Reset"]) <= 60  # an empty bucket refills in a minute
    assert all(value.isdigit() for name, value in headers.items() if name != "RateLimit-Policy")


def test_cost_takes_several_tokens(limiter: RateLimiter) -> None:
    key, limit = fresh_key(), Limit(capacity=10, refill_per_second=0.0)
    assert limiter.hit(key, limit, cost=7).remaining == 3
    refused = limiter.hit(key, limit, cost=4)  # 3 left: refused, and nothing is taken
    assert not refused.allowed and refused.remaining == 3
    assert limiter.hit(key, limit, cost=3).remaining == 0


def drain(limiter: RateLimiter, key: str, limit: Limit) -> tuple[int, Decision]:
    """Hit until refused; the number allowed and the refusal."""
    for allowed in range(1000):
        decision = limiter.hit(key, limit)
        if not decision.allowed:
            return allowed, decision
    raise AssertionError("the bucket never ran dry")


def test_refill_over_time(limiter: RateLimiter) -> None:
    # asserts only what holds however slowly the hits run (a loaded CI machine): the
    # refill during the hits themselves may add a token, never take one
    key, limit = fresh_key(), Limit(capacity=2, refill_per_second=20.0)  # a token every 50 ms
    allowed, refused = drain(limiter, key, limit)
    assert allowed >= 2
    assert refused.remaining == 0 and refused.retry_after == 1  # < 50 ms, rounded up
    assert refused.reset_seconds == 1  # < 100 ms to be full again, rounded up
    time.sleep(0.15)  # three tokens' worth, capped at the capacity of two
    first = limiter.hit(key, limit)
    assert first.allowed and first.remaining == 1  # full again (2), minus this one
    assert limiter.hit(key, limit).allowed


def test_idle_bucket_expires_once_full(limiter: RateLimiter, client: redis.Redis) -> None:
    key, limit = fresh_key(), Limit(capacity=2, refill_per_second=20.0)
    limiter.hit(key, limit)
    ttl = client.pttl(limiter.prefix + key)
    assert 0 < ttl <= 1000  # PEXPIRE: no idle key outlives the time it takes to refill


def test_keys_are_independent(client: redis.Redis) -> None:
    limit = Limit(capacity=3, refill_per_second=0.0)
    one, two = RateLimiter(client), RateLimiter(client, prefix="tenantry:rl:other:")
    a, b = fresh_key(), fresh_key()
    assert all(one.hit(a, limit).allowed for _ in range(3))
    assert not one.hit(a, limit).allowed
    assert one.hit(b, limit).remaining == 2  # another key: a full bucket of its own
    assert two.hit(a, limit).remaining == 2  # the same key under another prefix, too


# -- atomicity ----------------------------------------------------------------------------------


def test_concurrent_hits_never_overdraw(client: redis.Redis) -> None:
    limiter, key = RateLimiter(client), fresh_key()
    limit = Limit(capacity=50, refill_per_second=0.0)
    threads_count, hits_each = 20, 10
    start = threading.Barrier(threads_count)
    decisions: list[Decision] = []
    lock = threading.Lock()

    def worker() -> None:
        start.wait()  # all threads race on the bucket at once
        mine = [limiter.hit(key, limit) for _ in range(hits_each)]
        with lock:
            decisions.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(decisions) == threads_count * hits_each
    assert not any(d.degraded for d in decisions)
    allowed = [d for d in decisions if d.allowed]
    assert len(allowed) == limit.capacity
    # each allowed hit saw a distinct remaining count: the script ran one at a time
    assert sorted(d.remaining for d in allowed) == list(range(limit.capacity))


@settings(max_examples=60)
@given(
    capacity=st.integers(min_value=1, max_value=20),
    costs=st.lists(st.integers(min_value=1, max_value=25), max_size=30),
)
def test_property_never_more_than_capacity(client: redis.Redis, capacity: int, costs: list[int]) -> None:
    limiter, key = RateLimiter(client), fresh_key()
    limit = Limit(capacity=capacity, refill_per_second=0.0)
    taken = 0  # the model: with no refill the bucket only drains
    for cost in costs:
        decision = limiter.hit(key, limit, cost)
        assert decision.allowed == (taken + cost <= capacity)
        if decision.allowed:
            taken += cost
            assert decision.retry_after is None and "Retry-After" not in decision.headers()
        else:
            assert decision.retry_after is not None and decision.retry_after >= 1
            assert int(decision.headers()["Retry-After"]) >= 1
        assert taken <= capacity  # never more than the capacity in total
        assert decision.remaining == capacity - taken
        assert decision.limit == capacity
        # a full bucket is full now; a drained one never refills (reported as far away)
        assert (decision.reset_seconds == 0) == (taken == 0)


# -- Redis unavailable ----------------------------------------------------------------------------


def test_fail_open_when_nothing_listens() -> None:
    dead = connect(f"redis://127.0.0.1:{free_port()}/0")
    before = degraded_count()
    began = time.monotonic()
    decision = RateLimiter(dead).hit(fresh_key(), Limit.per_minute(60))
    # fast: connect() does not use redis-py's default of 10 retries with backoff (~3 s)
    assert time.monotonic() - began < 0.5
    assert decision.allowed and decision.degraded
    assert decision.headers() == {}  # no made-up numbers when nothing was counted
    assert degraded_count() == before + 1

    with pytest.raises(RateLimiterUnavailable):
        RateLimiter(dead, fail_open=False).hit(fresh_key(), Limit.per_minute(60))
    assert degraded_count() == before + 1  # failing closed is not counted as degraded


def test_fail_open_when_something_else_answers_on_the_port() -> None:
    # found by the suite: a "dead" port reused by an HTTP server made every request a 500
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()

        def answer_like_http() -> None:
            for _ in range(2):
                conn, _ = server.accept()
                with conn:
                    conn.recv(1024)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_like_http, daemon=True)
        thread.start()
        not_redis = connect(f"redis://127.0.0.1:{server.getsockname()[1]}/0")
        before = degraded_count()
        decision = RateLimiter(not_redis).hit(fresh_key(), Limit.per_minute(60))
        assert decision.allowed and decision.degraded
        assert degraded_count() == before + 1
        with pytest.raises(RateLimiterUnavailable):
            RateLimiter(not_redis, fail_open=False).hit(fresh_key(), Limit.per_minute(60))
        thread.join(timeout=5)


def test_fail_open_while_server_stopped_then_recovers(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", free_port())
    server.start()
    connection = connect(server.url())
    limiter, key, limit = RateLimiter(connection), fresh_key(), Limit(capacity=1, refill_per_second=0.0)
    try:
        assert limiter.hit(key, limit).allowed
        assert not limiter.hit(key, limit).allowed
        server.stop()
        before = degraded_count()
        decision = limiter.hit(key, limit)
        assert decision.allowed and decision.degraded
        assert degraded_count() == before + 1
        # back again: a new, empty server (no persistence), whose script cache is empty too
        server.start()
        decision = limiter.hit(key, limit)
        assert decision.allowed and not decision.degraded and decision.remaining == 0
    finally:
        connection.close()
        server.stop()


# -- LocalRedis ---------------------------------------------------------------------------------


def test_local_redis_start_stop_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "redis"
    server = LocalRedis(home, free_port())
    assert server.url() == f"redis://127.0.0.1:{server.port}/0"
    assert not server.is_running()
    assert server.stop() is False  # nothing to stop
    try:
        assert server.start() is True
        assert server.start() is False  # already running
        assert server.is_running()
        assert (home / "redis.pid").exists() and (home / "redis.log").exists()
        with redis.Redis.from_url(server.url(), decode_responses=True) as probe:
            info = probe.config_get("save", "appendonly", "bind", "protected-mode")
        assert info == {"save": "", "appendonly": "no", "bind": "127.0.0.1", "protected-mode": "yes"}
        pid = int((home / "redis.pid").read_text())
    finally:
        assert server.stop() is True
    assert server.stop() is False
    assert not server.is_running()
    assert not process_runs(pid)  # the process has exited, not just closed its socket
    assert port_is_free(server.port)


def test_local_redis_busy_port_says_so(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()  # another program, which does not speak Redis
        port = squatter.getsockname()[1]
        with pytest.raises(RedisServerError, match=f"port {port} .*in use"):
            LocalRedis(tmp_path / "redis", port).start()


def test_local_redis_leaves_a_foreign_redis_alone(local_redis: LocalRedis, tmp_path: Path) -> None:
    # a Redis we did not start listens on the port: not ours to adopt, nor to shut down
    other = LocalRedis(tmp_path / "redis", local_redis.port)
    assert not other.is_running()
    assert other.stop() is False
    with pytest.raises(RedisServerError, match="in use"):
        other.start()
    assert local_redis.is_running()


def test_local_redis_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on it
    with pytest.raises(RedisServerError, match=r"apt-get install redis-server"):
        LocalRedis(tmp_path / "redis", free_port()).start()

"""Faults: PostgreSQL restarting or down, long locks and timeouts, Redis down.

These tests break servers on purpose, so they never touch the session's shared server:
each module-scoped `restartable` server is a PostgreSQL of its own (the embedded
binaries, a temporary folder, a free port), migrated, with the API (real gunicorn, one
worker) and a Redis of their own in front of it. Restarting it or stopping Redis
affects only this file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import Popen

import httpx
import psycopg
import pytest

from db import migrate
from db.dsn import role_environment
from db.local.embedded import bin_dir
from db.local.postgres import LocalServer, free_port
from db.local.redis import LocalRedis
from db.settings import Settings, get_settings
from tests.helpers import problem, start_api

#: the password of the application roles on the test's own server (nothing else uses it)
ROLE_PASSWORD = "faults-" + uuid.uuid4().hex


@dataclass
class Stack:
    """A PostgreSQL of the test's own, a Redis, and the API on both."""

    server: LocalServer
    redis: LocalRedis
    owner_url: str
    api: Popen
    url: str
    log: Path

    def stop_postgres(self, mode: str = "fast") -> None:
        self.server._run("pg_ctl", "stop", "-w", "-m", mode, "-D", str(self.server.data_dir))

    def start_postgres(self) -> None:
        self.server.start()

    def log_lines(self) -> list[dict]:
        lines = []
        for line in self.log.read_text().splitlines():
            with contextlib.suppress(ValueError):  # gunicorn's own lines are not JSON
                lines.append(json.loads(line))
        return lines


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # in the state folder, not pytest's temporary one: the server runs as a system user
    # when we are root, and pytest keeps its folders private to us
    home = get_settings().state_dir / f"faults-{os.getpid()}"
    shutil.rmtree(home, ignore_errors=True)
    server = LocalServer(bin_dir=bin_dir(), home=home, port=free_port())
    server.start()
    server.ensure_database("tenantry")
    owner_url = server.url("tenantry")
    settings = Settings(database_url=owner_url, app_role_password=ROLE_PASSWORD)
    migrate.migrate(owner_url, settings=settings)
    redis = LocalRedis(tmp_path_factory.mktemp("faults-redis"), free_port())
    redis.start()
    state = tmp_path_factory.mktemp("faults-api")
    roles = role_environment(settings)  # the roles' DSNs, with this server's password
    api, url = start_api(
        owner_url,
        redis.url(),
        state,
        TENANTRY_API_DATABASE_URL=roles["TENANTRY_API_DATABASE_URL"],
        TENANTRY_ADMIN_DATABASE_URL=roles["TENANTRY_ADMIN_DATABASE_URL"],
        TENANTRY_WORKER_DATABASE_URL=roles["TENANTRY_WORKER_DATABASE_URL"],
        TENANTRY_ANALYST_DATABASE_URL=roles["TENANTRY_ANALYST_DATABASE_URL"],
    )
    try:
        yield Stack(server, redis, owner_url, api, url, state / "api.log")
    finally:
        api.terminate()
        api.wait(timeout=15)
        redis.stop()
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def client(stack: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.url, timeout=60) as http:
        yield http


def sign_up(stack: Stack, http: httpx.Client) -> dict[str, str]:
    """A new user and tenant on the enterprise plan (its rate limit is high); their bearer headers."""
    tag = uuid.uuid4().hex[:12]
    resp = http.post(
        "/v1/signup",
        json={
            "email": f"f-{tag}@tenantry.test",
            "name": f"User {tag}",
            "password": "password-" + tag,
            "tenant_slug": f"f-{tag}",
            "tenant_name": f"Tenant {tag}",
        },
    )
    assert resp.status_code == 201, resp.text
    body = resp.json()
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (body["tenant_id"],))
    return {"Authorization": f"Bearer {body['access_token']}"}


def timed(http: httpx.Client, method: str, path: str, **kwargs) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    resp = http.request(method, path, **kwargs)
    return resp, time.perf_counter() - started


def project(stack: Stack, http: httpx.Client, headers: dict[str, str]) -> str:
    resp = http.post("/v1/projects", headers=headers, json={"name": f"p-{uuid.uuid4().hex[:10]}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["project_id"]


def reconnect_api(stack: Stack) -> None:
    """End the API's database sessions (as an operator's pg_terminate_backend would): role
    settings changed by ALTER ROLE apply to the sessions opened after it."""
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        # waits until each has exited: a session still ending would fail a request with 57P01
        conn.execute("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = 'tenantry_api'")


# -- 4. PostgreSQL restarts: every pooled connection goes back -------------------------------


@pytest.mark.slow
def test_restarts_do_not_leak_pool_slots(stack: Stack, client: httpx.Client) -> None:
    """Eight restarts (fast and immediate shutdowns), with requests during and in between:
    after each, the next requests are answered at once, and then 50 in a row at full speed,
    without restarting the API. (Before: pooled connections were handed out dead, and the
    pool's places were held by reconnection attempts backing off for minutes: requests in
    between answered 500 after 30 s.)"""
    headers = sign_up(stack, client)
    assert client.get("/v1/projects", headers=headers).status_code == 200
    stop = threading.Event()

    def hammer() -> None:  # requests during the restarts, each thread with its own client
        with httpx.Client(base_url=stack.url, timeout=60) as http:
            while not stop.is_set():
                with contextlib.suppress(httpx.TransportError):
                    http.get("/v1/projects", headers=headers)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    after_restart: list[tuple[int, int, float]] = []
    try:
        for restart in range(8):
            stack.stop_postgres("immediate" if restart % 2 else "fast")
            time.sleep(0.5)
            stack.start_postgres()
            for _ in range(3):
                resp, seconds = timed(client, "GET", "/v1/projects", headers=headers)
                after_restart.append((restart, resp.status_code, round(seconds, 2)))
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    print("after each restart (restart, status, seconds):", after_restart)
    assert all(status == 200 and seconds < 3 for _, status, seconds in after_restart), after_restart
    # full speed again, with no restart of the API
    times = []
    for _ in range(50):
        resp, seconds = timed(client, "GET", "/v1/projects", headers=headers)
        assert resp.status_code == 200, resp.text
        times.append(seconds)
    print(f"50 requests after the restarts: max {max(times):.3f} s, mean {sum(times) / 50:.3f} s")
    assert max(times) < 1, times


# -- 5. PostgreSQL down: a fast 503, /ready says so, recovery without a restart --------------


@pytest.mark.slow
def test_database_down_is_a_fast_503_and_recovers(stack: Stack, client: httpx.Client) -> None:
    headers = sign_up(stack, client)
    assert client.get("/v1/projects", headers=headers).status_code == 200
    stack.stop_postgres("fast")
    try:
        down: list[float] = []
        for _ in range(10):
            resp, seconds = timed(client, "GET", "/v1/projects", headers=headers)
            body = problem(resp, 503, "database_unavailable")
            assert int(resp.headers["Retry-After"]) >= 1, resp.headers
            assert "127.0.0.1" not in body["detail"] and str(stack.server.port) not in body["detail"], body
            down.append(seconds)
        ready, ready_seconds = timed(client, "GET", "/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["checks"]["database"].startswith("unavailable"), ready.text
        assert client.get("/health").status_code == 200
    finally:
        stack.start_postgres()
    print(f"while down: max {max(down):.3f} s, mean {sum(down) / len(down):.3f} s; /ready {ready_seconds:.3f} s")
    assert max(down) < 5, down
    assert sum(down[1:]) / len(down[1:]) < 0.5, down  # only a first request may wait for the pool
    assert ready_seconds < 1, ready_seconds
    # back: served again by the same API processes
    deadline = time.monotonic() + 10
    while True:
        resp, seconds = timed(client, "GET", "/v1/projects", headers=headers)
        if resp.status_code == 200:
            break
        assert time.monotonic() < deadline, resp.text
        time.sleep(0.1)
    recovered = time.monotonic() - (deadline - 10)
    print(f"first 200 after the start: {recovered:.2f} s")
    assert client.get("/ready").status_code == 200
    times = [timed(client, "GET", "/v1/projects", headers=headers)[1] for _ in range(20)]
    print(f"after recovery: max {max(times):.3f} s")
    assert max(times) < 1, times


# -- 6. timeouts per role -------------------------------------------------------------------


def test_each_role_has_its_timeouts(stack: Stack) -> None:
    expected = {
        "tenantry_api": ("5s", "2s", "15s"),
        "tenantry_platform_admin": ("30s", "5s", "1min"),
        "tenantry_worker": ("5min", "30s", "5min"),
        "tenantry_analyst": ("2min", "5s", "5min"),
    }
    for role, timeouts in expected.items():
        url = stack.server.url("tenantry", user=role, password=ROLE_PASSWORD)
        with psycopg.connect(url) as conn:
            shown = tuple(
                conn.execute(f"SHOW {name}").fetchone()[0]
                for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            )
        assert shown == timeouts, (role, shown)


@pytest.mark.slow
def test_one_tenants_lock_does_not_stall_the_others(stack: Stack, client: httpx.Client) -> None:
    """Tenant A's project is locked by someone else (an owner's open transaction): the
    concurrent changes of it end with 503 lock_timeout once the API has run them again for
    its retry budget (api/retry.py: each attempt waits the API role's lock_timeout), not
    500 and not when the lock is released; tenant B is served promptly meanwhile."""
    a, b = sign_up(stack, client), sign_up(stack, client)
    locked = project(stack, client, a)
    b_project = project(stack, client, b)
    holder = psycopg.connect(stack.owner_url)
    holder.execute("SELECT 1 FROM core.projects WHERE project_id = %s FOR UPDATE", (locked,))
    writers = 5  # fewer than the API's threads: tenant B must find a thread free
    barrier = threading.Barrier(writers + 1)
    answers: list[tuple[httpx.Response, float]] = []

    def patch(n: int) -> None:
        with httpx.Client(base_url=stack.url, timeout=60) as http:
            barrier.wait()
            answers.append(timed(http, "PATCH", f"/v1/projects/{locked}", headers=a, json={"description": f"w{n}"}))

    threads = [threading.Thread(target=patch, args=(n,)) for n in range(writers)]
    try:
        for thread in threads:
            thread.start()
        barrier.wait()
        others = []
        started = time.monotonic()
        while time.monotonic() - started < 2.5:  # while A's writers wait for the lock
            resp, seconds = timed(
                client, "PATCH", f"/v1/projects/{b_project}", headers=b, json={"description": uuid.uuid4().hex}
            )
            assert resp.status_code == 200, resp.text
            others.append(seconds)
        for thread in threads:
            thread.join(timeout=30)
    finally:
        holder.rollback()  # held until the writers have answered: before, they waited for this
        holder.close()
    assert len(answers) == writers
    for resp, seconds in answers:
        problem(resp, 503, "lock_timeout")
        assert int(resp.headers["Retry-After"]) >= 1
        # more than one lock_timeout (run again), within the budget (8 s) and one more attempt
        assert 3.5 < seconds < 11, seconds
    print(f"tenant B while A's row was locked: {len(others)} requests, max {max(others):.3f} s")
    assert max(others) < 1, others
    # the row is free again: A's change goes through
    assert client.patch(f"/v1/projects/{locked}", headers=a, json={"description": "after"}).status_code == 200


@pytest.mark.slow
def test_a_statement_timeout_is_a_503(stack: Stack, client: httpx.Client) -> None:
    """With the API role's statement_timeout below its lock_timeout (set on this test's own
    server only), a statement waiting for a lock ends by statement timeout: 503."""
    headers = sign_up(stack, client)
    locked = project(stack, client, headers)
    with psycopg.connect(stack.owner_url, autocommit=True) as conn:
        conn.execute("ALTER ROLE tenantry_api SET statement_timeout = '500ms'")
        conn.execute("ALTER ROLE tenantry_api SET lock_timeout = '10s'")
    reconnect_api(stack)
    holder = psycopg.connect(stack.owner_url)
    try:
        holder.execute("SELECT 1 FROM core.projects WHERE project_id = %s FOR UPDATE", (locked,))
        resp, seconds = timed(client, "PATCH", f"/v1/projects/{locked}", headers=headers, json={"description": "x"})
        problem(resp, 503, "statement_timeout")
        assert int(resp.headers["Retry-After"]) >= 1
        assert seconds < 3, seconds
    finally:
        holder.rollback()
        holder.close()
        with psycopg.connect(stack.owner_url, autocommit=True) as conn:
            conn.execute("ALTER ROLE tenantry_api SET statement_timeout = '5s'")
            conn.execute("ALTER ROLE tenantry_api SET lock_timeout = '2s'")
        reconnect_api(stack)
    assert client.get("/v1/projects", headers=headers).status_code == 200


# -- 7. Redis down: one warning per outage, /ready and a gauge say so ------------------------


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def limiter_lines(stack: Stack, text: str) -> list[dict]:
    return [line for line in stack.log_lines() if line.get("message", "").startswith(text)]


def test_redis_down_is_logged_once_and_shown(stack: Stack, client: httpx.Client) -> None:
    headers = sign_up(stack, client)
    assert client.get("/v1/projects", headers=headers).status_code == 200
    assert metric(client, "tenantry_redis_up") == 1
    down_before = len(limiter_lines(stack, "rate limiter unavailable"))
    up_before = len(limiter_lines(stack, "rate limiter recovered"))
    stack.redis.stop()
    try:
        barrier = threading.Barrier(4)

        def requests() -> None:  # concurrent requests, as the worker's threads serve them
            with httpx.Client(base_url=stack.url, timeout=30) as http:
                barrier.wait()
                for _ in range(10):
                    assert http.get("/v1/projects", headers=headers).status_code == 200

        threads = [threading.Thread(target=requests) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        ready = client.get("/ready")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {"database": "ok", "redis": "unavailable (rate limits fail open)"},
        }
        assert metric(client, "tenantry_redis_up") == 0
        assert metric(client, "tenantry_ratelimit_degraded_total") >= 40
    finally:
        stack.redis.start()
    for _ in range(5):
        assert client.get("/v1/projects", headers=headers).status_code == 200
    assert client.get("/ready").json()["checks"]["redis"] == "ok"
    assert metric(client, "tenantry_redis_up") == 1
    time.sleep(0.2)  # the log is written by another process
    assert len(limiter_lines(stack, "rate limiter unavailable")) == down_before + 1
    assert len(limiter_lines(stack, "rate limiter recovered")) == up_before + 1

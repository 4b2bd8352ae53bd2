"""The job runner, for real: `tenantry worker` (Dramatiq) and `tenantry scheduler` as
subprocesses on the real Redis, jobs run against the test database as the worker role.

Each test enqueues by actor name (jobs.runtime.enqueue, as the scheduler does) and reads
the worker's one JSON line per run from its log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis

from db import api_calls
from db.dsn import role_environment
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from db.settings import Settings
from jobs import runtime, scheduler
from tests.helpers import start_api

#: the usage feature's events of one tenant's API calls (adjust if its table is named otherwise)
USAGE_OF_API_CALLS = (
    "SELECT coalesce(sum(quantity), 0) FROM core.usage_events WHERE tenant_id = %s AND metric = 'api_calls'"
)
#: the API and the worker of the API-call test count in windows this long (seconds)
WINDOW = 2


def _env(owner_url: str, redis_url: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return (
        dict(os.environ)
        | role_environment(Settings(database_url=owner_url))
        | {"TENANTRY_DATABASE_URL": owner_url, "TENANTRY_REDIS_URL": redis_url, "TENANTRY_STATE_DIR": str(state_dir)}
        | extra
    )


class Worker:
    """A `tenantry worker` subprocess and the JSON lines of its log."""

    def __init__(self, env: dict[str, str], log: Path, metrics_port: int) -> None:
        self.log = log
        self.metrics_port = metrics_port
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tenantry", "worker", "--threads", "2", "--metrics-port", str(metrics_port)],
            env=env,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )
        self.wait_for_text("Worker process is ready for action")

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_text(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.text():
            assert self.process.poll() is None, f"the worker exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"no {text!r} in the worker's log:\n{self.text()}"
            time.sleep(0.05)

    def runs(self, message_id: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.text().splitlines() if line.startswith("{")]
        runs = [line for line in lines if line.get("message") == "job run"]
        return [run for run in runs if message_id is None or run["message_id"] == message_id]

    def wait_runs(self, message_id: str, count: int = 1, timeout: float = 30) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.runs(message_id)) < count:
            assert self.process.poll() is None, f"the worker exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"{len(found)} of {count} runs of {message_id}:\n{self.text()}"
            time.sleep(0.05)
        return found

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._out.close()


@pytest.fixture(scope="module")
def worker(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    state = tmp_path_factory.mktemp("worker")
    env = _env(owner_url, redis_url, state, TENANTRY_API_CALL_WINDOW_SECONDS=str(WINDOW))
    started = Worker(env, state / "worker.log", free_port())
    yield started
    started.stop()


@pytest.fixture(scope="module")
def broker(redis_url: str) -> Iterator[Any]:
    made = runtime.make_broker(redis_url)
    yield made
    made.close()


def run(worker: Worker, broker: Any, actor: str, **options: Any) -> dict[str, Any]:
    """Enqueue `actor`, wait for its run's log line and return it."""
    message = runtime.enqueue(broker, actor, options=options)
    return worker.wait_runs(message.message_id)[-1]


def has_function(owner_url: str, name: str) -> bool:
    """Whether the database has a function ops.<name> (whatever its arguments)."""
    with psycopg.connect(owner_url) as conn:
        return conn.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_proc WHERE pronamespace = 'ops'::regnamespace AND proname = %s)", (name,)
        ).fetchone()[0]


# -- sweeps ----------------------------------------------------------------------------------


def test_sweeps_delete_what_ended_and_keep_the_rest(
    worker: Worker, broker: Any, owner: psycopg.Connection[dict[str, Any]], new_tenant
) -> None:
    tenant = new_tenant()
    user = owner.execute("SELECT user_id FROM core.memberships WHERE tenant_id = %s", (tenant,)).fetchone()["user_id"]

    def session(expired_ago: str, revoked_ago: str | None = None) -> uuid.UUID:
        """A session that expired `expired_ago` (negative: expires later), revoked `revoked_ago`."""
        row = owner.execute(
            """INSERT INTO core.sessions (tenant_id, user_id, created_at, last_refreshed_at, last_seen_at,
                   idle_timeout, absolute_expires_at, refresh_expires_at, expires_at, revoked_at, revoked_reason)
               SELECT %(t)s, %(u)s, e - interval '1 hour', e - interval '1 hour', e - interval '30 minutes',
                      interval '30 minutes', e + interval '1 day', e + interval '1 day', e,
                      now() - %(r)s::interval, CASE WHEN %(r)s IS NOT NULL THEN 'logout' END
                 FROM (SELECT now() - %(e)s::interval AS e) AS x
               RETURNING session_id""",
            {"t": tenant, "u": user, "e": expired_ago, "r": revoked_ago},
        ).fetchone()
        owner.execute(
            "INSERT INTO core.refresh_tokens (tenant_id, token_hash, session_id) VALUES (%s, %s, %s)",
            (tenant, os.urandom(32), row["session_id"]),
        )
        return row["session_id"]

    old = session("30 days")
    old_revoked = session("1 day", revoked_ago="30 days")  # expired lately, but revoked long ago
    recent = session("1 day")  # ended within the week: kept
    live = session("-20 minutes")

    def invitation(expired_days_ago: float, accepted: bool = False, revoked: bool = False) -> uuid.UUID:
        return owner.execute(
            """INSERT INTO core.invitations (tenant_id, email, role, token_hash, created_at, expires_at,
                   accepted_at, revoked_at)
               VALUES (%s, %s, 'member', %s, now() - interval '90 days', now() - %s::interval,
                       CASE WHEN %s THEN now() - interval '80 days' END,
                       CASE WHEN %s THEN now() - interval '80 days' END)
               RETURNING invitation_id""",
            (tenant, f"i-{uuid.uuid4().hex[:10]}@tenantry.test", os.urandom(32), f"{expired_days_ago} days",
             accepted, revoked),
        ).fetchone()["invitation_id"]  # fmt: skip

    inv_old, inv_revoked, inv_recent = invitation(60), invitation(-5, revoked=True), invitation(2)
    inv_accepted = invitation(60, accepted=True)

    def idempotency_key(expires_in: str) -> str:
        key = f"k-{uuid.uuid4().hex}"
        owner.execute(
            """INSERT INTO core.idempotency_keys (tenant_id, key, actor_id, request_hash, method, path, expires_at)
               VALUES (%s, %s, %s, %s, 'POST', '/v1/projects', now() + %s::interval)""",
            (tenant, key, user, os.urandom(32), expires_in),
        )
        return key

    key_expired, key_live = idempotency_key("-1 minute"), idempotency_key("1 day")

    for actor in ("sweep_sessions", "sweep_invitations", "sweep_idempotency_keys", "purge_login_failures"):
        first = run(worker, broker, actor)
        assert first["outcome"] == "ok", first
        assert first["attempt"] == 1 and first["ms"] >= 0 and first["lag_ms"] >= 0
        # idempotent: a second run finds nothing more to do
        again = run(worker, broker, actor)
        assert again["outcome"] == "ok" and again["result"]["deleted"] == 0, again
        if actor != "purge_login_failures":
            assert first["result"]["deleted"] >= {"sweep_sessions": 2}.get(actor, 1), first

    sessions = {
        r["session_id"] for r in owner.execute("SELECT session_id FROM core.sessions WHERE tenant_id = %s", (tenant,))
    }
    assert sessions == {recent, live}
    tokens = owner.execute(
        "SELECT count(*) AS n FROM core.refresh_tokens WHERE tenant_id = %s AND session_id IN (%s, %s)",
        (tenant, old, old_revoked),
    ).fetchone()
    assert tokens["n"] == 0  # went with their sessions
    invitations = {
        r["invitation_id"]
        for r in owner.execute("SELECT invitation_id FROM core.invitations WHERE tenant_id = %s", (tenant,))
    }
    assert inv_old not in invitations and inv_revoked not in invitations
    assert {inv_recent, inv_accepted} <= invitations
    keys = {r["key"] for r in owner.execute("SELECT key FROM core.idempotency_keys WHERE tenant_id = %s", (tenant,))}
    assert key_expired not in keys and key_live in keys


def test_sweeps_leave_a_suspended_tenants_invitations(
    worker: Worker, broker: Any, owner: psycopg.Connection[dict[str, Any]], new_tenant, as_admin
) -> None:
    """A suspended tenant's rows refuse writes: the sweep skips them instead of failing its batch."""
    tenant = new_tenant()
    invitation = owner.execute(
        """INSERT INTO core.invitations (tenant_id, email, role, token_hash, created_at, expires_at)
           VALUES (%s, %s, 'member', %s, now() - interval '90 days', now() - interval '60 days')
           RETURNING invitation_id""",
        (tenant, f"s-{uuid.uuid4().hex[:10]}@tenantry.test", os.urandom(32)),
    ).fetchone()["invitation_id"]
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (tenant,))
    result = run(worker, broker, "sweep_invitations")
    assert result["outcome"] == "ok", result
    assert owner.execute("SELECT 1 FROM core.invitations WHERE invitation_id = %s", (invitation,)).fetchone()


# -- failures: retries with backoff, missing functions ----------------------------------------


def test_a_failing_job_is_retried_with_backoff_and_logs_each_run(worker: Worker, broker: Any, owner_url: str) -> None:
    """The sweep cannot get its table (held locked by another transaction): each attempt
    ends at the statement timeout derived from its time limit, and is retried after a
    growing backoff, then given up; one log line per attempt."""
    with psycopg.connect(owner_url) as blocker:
        blocker.execute("LOCK TABLE core.idempotency_keys IN ACCESS EXCLUSIVE MODE")
        message = runtime.enqueue(
            broker,
            "sweep_idempotency_keys",
            options={"time_limit": 3000, "max_retries": 2, "min_backoff": 400, "max_backoff": 10_000},
        )
        runs = worker.wait_runs(message.message_id, count=3, timeout=40)
        blocker.rollback()
    assert [r["outcome"] for r in runs] == ["retry", "retry", "failed"], runs
    assert [r["attempt"] for r in runs] == [1, 2, 3]
    assert all("QueryCanceled" in r["error"] for r in runs), runs
    # each attempt starts after its backoff: 400 ms, then 800 ms (Dramatiq jitters them
    # by up to half), measured as the gap between one run's end and the next one's start
    times = [json_time(r) for r in runs]
    durations = [r["ms"] / 1000 for r in runs]
    gaps = [times[i + 1] - durations[i + 1] - times[i] for i in range(2)]
    assert gaps[0] >= 0.19 and gaps[1] >= 0.39, (gaps, runs)
    time.sleep(0.2)
    assert len(worker.runs(message.message_id)) == 3  # given up: no fourth run
    # and with the table free again, the same job runs
    assert run(worker, broker, "sweep_idempotency_keys")["outcome"] == "ok"


def json_time(record: dict[str, Any]) -> float:
    """When the log line was written (its `time`: python-json-logger's asctime, in the
    worker's local time), in seconds."""
    import datetime as dt

    stamp = dt.datetime.strptime(record["time"], "%Y-%m-%d %H:%M:%S,%f")
    return stamp.timestamp()


@pytest.mark.parametrize(
    "actor", ["rollup_usage", "maintain_usage_partitions", "expire_quota_reservations", "reconcile_quotas"]
)
def test_each_periodic_job_runs(worker: Worker, broker: Any, owner_url: str, actor: str) -> None:
    """The usage and quota jobs call their feature's ops.* function by name, and succeed."""
    assert has_function(owner_url, actor)
    result = run(worker, broker, actor)
    assert result["outcome"] == "ok", result
    assert isinstance(result["result"], dict), result


def test_mail_delivery_job_drains_the_outbox(worker: Worker, broker: Any, owner: psycopg.Connection) -> None:
    result = run(worker, broker, "deliver_mail")
    assert result["outcome"] == "ok", result
    assert set(result["result"]) == {"sent", "failed", "given_up"}


def test_worker_metrics_are_served_for_all_processes(worker: Worker, broker: Any) -> None:
    run(worker, broker, "purge_login_failures")
    text = httpx.get(f"http://127.0.0.1:{worker.metrics_port}/", timeout=10).text
    assert 'tenantry_job_runs_total{actor="purge_login_failures",outcome="ok"}' in text, text[:2000]
    assert "tenantry_job_lag_seconds_bucket" in text
    assert "dramatiq_messages_total" in text  # Dramatiq's own metrics, from the same files


# -- the scheduler -----------------------------------------------------------------------------


def _queued(client: redis.Redis) -> list[dict[str, Any]]:
    """The messages waiting in the project's queue (Dramatiq's Redis layout)."""
    raw = client.hvals(f"dramatiq:{runtime.QUEUE}.msgs")
    return [json.loads(value) for value in raw]


def test_two_schedulers_enqueue_each_tick_once(owner_url: str, redis_url: str, tmp_path: Path) -> None:
    # a Redis database of its own, with no worker taking the messages
    url = redis_url.rsplit("/", 1)[0] + "/5"
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = _env(owner_url, url, tmp_path)
    speed = 30  # a job due every minute is due every 2 s, mail every 1/3 s
    barrier = threading.Barrier(2)
    processes: list[subprocess.Popen] = []

    def start(i: int) -> None:
        barrier.wait()
        log = (tmp_path / f"scheduler{i}.log").open("w")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "tenantry", "scheduler", "--speed", str(speed)],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )

    threads = [threading.Thread(target=start, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    deadline = time.monotonic() + 60
    while not all("periodic jobs on" in (tmp_path / f"scheduler{i}.log").read_text() for i in range(2)):
        assert time.monotonic() < deadline, "the schedulers did not start"
        time.sleep(0.05)
    time.sleep(5)
    for process in processes:
        process.terminate()
    for process in processes:
        assert process.wait(timeout=15) == 0
    logs = [(tmp_path / f"scheduler{i}.log").read_text() for i in range(2)]

    messages = _queued(client)
    per_tick = Counter((m["actor_name"], m["options"]["scheduled_tick"]) for m in messages)
    assert per_tick and max(per_tick.values()) == 1, [k for k, n in per_tick.items() if n > 1]
    by_actor: dict[str, list[int]] = {}
    for actor, tick in sorted(per_tick):
        by_actor.setdefault(actor, []).append(tick)
    assert set(by_actor) == {s.actor for s in scheduler.SCHEDULES}  # all due at the first tick
    mail = by_actor["deliver_mail"]
    assert len(mail) >= 10 and mail == list(range(mail[0], mail[0] + len(mail))), mail  # every tick, none twice
    assert len(by_actor["flush_api_calls"]) >= 3
    # both schedulers took part (each won some ticks), so the lock, not luck, kept them apart
    enqueued_by = [
        sum(json.loads(line).get("message") == "job enqueued" for line in log.splitlines() if line.startswith("{"))
        for log in logs
    ]
    assert sum(enqueued_by) == len(messages), (enqueued_by, len(messages))
    client.flushdb()
    client.close()


# -- Redis must not evict -------------------------------------------------------------------------


def test_an_evicting_redis_is_refused_unless_allowed(owner_url: str, tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", free_port())
    server.start()
    try:
        client = redis.Redis.from_url(server.url())
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"  # ours never evicts
        client.config_set("maxmemory-policy", "allkeys-lru")
        env = _env(owner_url, server.url(), tmp_path)
        for command in ("scheduler", "worker"):
            refused = subprocess.run(
                [sys.executable, "-m", "tenantry", command], env=env, capture_output=True, text=True, timeout=60
            )
            assert refused.returncode == 1, refused
            assert "maxmemory-policy is 'allkeys-lru'" in refused.stderr and "noeviction" in refused.stderr
        log = tmp_path / "allowed.log"
        with log.open("w") as out:
            allowed = subprocess.Popen(
                [sys.executable, "-m", "tenantry", "scheduler", "--allow-evicting-redis"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while "job enqueued" not in log.read_text():  # it runs
            assert allowed.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        allowed.terminate()
        assert allowed.wait(timeout=15) == 0, log.read_text()
        assert "WARNING: Redis's maxmemory-policy is 'allkeys-lru'" in log.read_text()
        client.close()
    finally:
        server.stop()


# -- API calls: counted in Redis, flushed as usage events ---------------------------------------


def test_api_calls_are_counted_in_redis_and_flushed(
    worker: Worker, broker: Any, owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, outbox
) -> None:
    process, base = start_api(
        owner_url,
        redis_url,
        tmp_path_factory.mktemp("api-metered"),
        TENANTRY_API_CALL_WINDOW_SECONDS=str(WINDOW),
        TENANTRY_METERING_FLUSH_SECONDS="0.2",
    )
    client = redis.Redis.from_url(redis_url)
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            tag = uuid.uuid4().hex[:12]
            signed = http.post(
                "/v1/signup",
                json={"email": f"m-{tag}@tenantry.test", "name": "M", "password": "password-" + tag,
                      "tenant_slug": f"m-{tag}", "tenant_name": f"Metered {tag}"},
            ).json()  # fmt: skip
            tenant, user = signed["tenant_id"], signed["user_id"]
            headers = {"Authorization": f"Bearer {signed['access_token']}"}
            # stay inside one window, so that all N calls (sent within 0.2 s) are in the same one
            while time.time() % WINDOW > WINDOW / 2:
                time.sleep(0.05)
            for _ in range(7):
                assert http.get("/v1/tenant", headers=headers).status_code == 200
            assert http.get("/v1/tenant").status_code == 401  # anonymous: not counted
        field = api_calls.caller_field(uuid.UUID(tenant), "user", uuid.UUID(user))
        time.sleep(0.6)  # each API worker sends its counts every 0.2 s (api/metering.py)
        windows: Any = client.zrange(api_calls.WINDOWS_KEY, 0, -1)
        counted = {int(w): int(client.hget(api_calls.window_key(int(w)), field) or 0) for w in windows}
        assert sum(counted.values()) == 7, counted
        time.sleep(WINDOW + 0.5)  # the window closes
        flushed = run(worker, broker, "flush_api_calls")
        assert flushed["outcome"] == "ok", flushed
        assert flushed["result"]["calls"] >= 7
        assert all(not client.exists(api_calls.window_key(w)) for w in counted)  # deleted once recorded
        with psycopg.connect(owner_url) as conn:
            recorded = conn.execute(
                USAGE_OF_API_CALLS,
                (tenant,),
            ).fetchone()[0]
        assert recorded == 7
        # a window flushed twice (a crash between recording and deleting) is not counted twice
        for window in counted:
            client.hset(api_calls.window_key(window), field, counted[window])
            client.zadd(api_calls.WINDOWS_KEY, {str(window): window})
        assert run(worker, broker, "flush_api_calls")["outcome"] == "ok"
        with psycopg.connect(owner_url) as conn:
            again = conn.execute(
                USAGE_OF_API_CALLS,
                (tenant,),
            ).fetchone()[0]
        assert again == 7
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=15)

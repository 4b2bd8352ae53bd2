"""Transient failures are run again by the API before the client sees them (api/retry.py).

A row lock held by another connection makes a write wait past the api role's 2 s
lock_timeout; the API runs the request again (body replayed) and answers 2xx once the
lock is gone, and the write happens once, with or without an Idempotency-Key. A failure
that outlasts the retry budget is answered 503 with Retry-After; a chunked body is never
run again. Which failures count as transient is decided in one place,
`db.errors.transient`, checked here against errors PostgreSQL really raises.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from db import errors as db_errors
from tests.helpers import Account, problem, start_api

#: the api role's lock_timeout (policies/00_roles.sql) and how long the tests hold a lock past it
LOCK_TIMEOUT, HELD = 2.0, 2.6


def new_project(http: httpx.Client, account: Account) -> str:
    resp = http.post("/v1/projects", headers=account.headers, json={"name": f"p-{uuid.uuid4().hex[:10]}"})
    assert resp.status_code == 201, resp.text
    return resp.json()["project_id"]


def while_locked(
    owner_url: str, account: Account, project_id: str, request: Callable[[], httpx.Response], hold: float
) -> tuple[httpx.Response, float]:
    """Send `request` from a thread while another connection holds the project's row
    `FOR UPDATE` (a task insert locks it `FOR SHARE`: 210_tasks.sql), released after
    `hold` seconds; the answer and how long it took."""
    holder = psycopg.connect(owner_url)
    holder.execute(  # the tenant too: on Citus a row lock must name its shard
        "SELECT 1 FROM core.projects WHERE tenant_id = %s AND project_id = %s FOR UPDATE",
        (account.tenant_id, project_id),
    )
    barrier = threading.Barrier(2)
    answer: list[tuple[httpx.Response, float]] = []

    def send() -> None:
        barrier.wait()
        started = time.monotonic()
        resp = request()
        answer.append((resp, time.monotonic() - started))

    thread = threading.Thread(target=send)
    try:
        thread.start()
        barrier.wait()
        time.sleep(hold)
    finally:
        holder.rollback()
        holder.close()
        thread.join(timeout=60)
    assert answer, "the request did not answer"
    return answer[0]


def titled(owner_url: str, project_id: str, title: str) -> list[uuid.UUID]:
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute(
            "SELECT task_id FROM core.tasks WHERE project_id = %s AND title = %s", (project_id, title)
        ).fetchall()
    return [row[0] for row in rows]


def test_a_write_that_waits_past_the_lock_timeout_is_run_again_and_happens_once(http, sign_up, owner_url):
    """Before api/retry.py: 409 lock_timeout after 2 s, and the client had to send it again."""
    account = sign_up()
    project = new_project(http, account)
    title = f"t-{uuid.uuid4().hex}"
    resp, seconds = while_locked(
        owner_url,
        account,
        project,
        lambda: http.post("/v1/tasks", headers=account.headers, json={"project_id": project, "title": title}),
        HELD,
    )
    assert resp.status_code == 201, resp.text
    assert HELD - 0.2 < seconds < LOCK_TIMEOUT * 3, seconds  # it waited for the lock, then went through
    assert resp.json()["title"] == title  # the body was replayed whole
    assert titled(owner_url, project, title) == [uuid.UUID(resp.json()["task_id"])]


def test_a_retried_post_with_an_idempotency_key_creates_one_row(http, sign_up, owner_url):
    """The first attempt's claim of the key rolled back with it: the retry claims it anew,
    and the client's own resend afterwards is a replay of the one answer."""
    account = sign_up()
    project = new_project(http, account)
    title, key = f"t-{uuid.uuid4().hex}", uuid.uuid4().hex
    headers = account.headers | {"Idempotency-Key": key}
    body = {"project_id": project, "title": title}
    resp, _ = while_locked(
        owner_url, account, project, lambda: http.post("/v1/tasks", headers=headers, json=body), HELD
    )
    assert resp.status_code == 201, resp.text
    assert "Idempotent-Replayed" not in resp.headers
    again = http.post("/v1/tasks", headers=headers, json=body)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true", again.text
    assert again.json()["task_id"] == resp.json()["task_id"]
    assert titled(owner_url, project, title) == [uuid.UUID(resp.json()["task_id"])]


# -- the budget: a server of its own with a short one ---------------------------------------

BUDGET = 5.0  # lock_timeout 2 s: a second attempt ends at ~4.1 s, a third could not end in time


@pytest.fixture(scope="module")
def short_budget(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_api(
        owner_url,
        redis_url,
        Path(tmp_path_factory.mktemp("api-retry")),
        TENANTRY_TRANSIENT_RETRY_SECONDS=str(BUDGET),
        TENANTRY_TRANSIENT_RETRY_ATTEMPTS="4",
    )
    yield url
    process.terminate()
    process.wait(timeout=15)


def metric(http: httpx.Client, name: str) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"no {name} in /metrics")


def test_a_failure_that_outlasts_the_budget_is_a_503_with_retry_after(short_budget, sign_up, http, owner_url):
    account = sign_up()
    project = new_project(http, account)
    title = f"t-{uuid.uuid4().hex}"
    with httpx.Client(base_url=short_budget, timeout=60) as client:
        retried = metric(client, "tenantry_transient_retries_total")
        exhausted = metric(client, "tenantry_transient_retries_exhausted_total")
        resp, seconds = while_locked(
            owner_url,
            account,
            project,
            lambda: client.post("/v1/tasks", headers=account.headers, json={"project_id": project, "title": title}),
            BUDGET + 2,
        )
        problem(resp, 503, "lock_timeout")
        assert int(resp.headers["Retry-After"]) >= 1
        assert "Traceback" not in resp.text
        # two attempts of ~2 s each; a third would have ended past the budget, so none started
        assert 2 * LOCK_TIMEOUT - 0.2 < seconds <= BUDGET, seconds
        assert metric(client, "tenantry_transient_retries_total") == retried + 1
        assert metric(client, "tenantry_transient_retries_exhausted_total") == exhausted + 1
    assert titled(owner_url, project, title) == []


def test_a_chunked_body_is_not_run_again(short_budget, sign_up, http, owner_url):
    """Its bytes were streamed, not declared: the first answer stands (a 503 after one attempt)."""
    account = sign_up()
    project = new_project(http, account)
    title = f"t-{uuid.uuid4().hex}"
    payload = httpx.Request("POST", "/", json={"project_id": project, "title": title}).content

    def chunks() -> Iterator[bytes]:
        yield payload[:10]
        yield payload[10:]

    with httpx.Client(base_url=short_budget, timeout=60) as client:
        retried = metric(client, "tenantry_transient_retries_total")
        resp, seconds = while_locked(
            owner_url,
            account,
            project,
            lambda: client.post(
                "/v1/tasks", headers=account.headers | {"Content-Type": "application/json"}, content=chunks()
            ),
            LOCK_TIMEOUT + 1,
        )
        problem(resp, 503, "lock_timeout")
        assert seconds < 2 * LOCK_TIMEOUT, seconds
        assert metric(client, "tenantry_transient_retries_total") == retried
    assert titled(owner_url, project, title) == []


# -- which failures are transient: errors PostgreSQL really raises ----------------------------


def raised(conn: psycopg.Connection, statement: str) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    conn.rollback()
    return caught.value


def test_transient_failures_are_told_apart_from_a_statements_own(owner_url):
    with psycopg.connect(owner_url) as conn:
        shard_gone = raised(
            conn,
            "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', "
            "MESSAGE = 'could not find valid entry for shard 102008'; END $$",
        )
        other_internal = raised(conn, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = 'XX000', MESSAGE = 'boom'; END $$")
        lock = raised(conn, "DO $$ BEGIN RAISE EXCEPTION USING ERRCODE = '55P03', MESSAGE = 'lock'; END $$")
        unique = raised(conn, "SELECT 1/0")
    assert db_errors.transient(shard_gone) and db_errors.transient(lock)
    assert not db_errors.transient(other_internal) and not db_errors.transient(unique)
    assert db_errors.lookup("XX000", "boom") is None  # any other internal error stays a 500
    assert db_errors.lookup("XX000", str(shard_gone.diag.message_primary)) is db_errors.SHARD_MOVING


Steps = Callable[[psycopg.Connection, str, int, threading.Barrier], None]


def in_parallel(owner_url: str, steps: Steps) -> list[psycopg.Error]:
    """Run `steps` on two connections at once (rows 1 and 2 of a probe table of their own);
    the errors they met."""
    table = f"public.retry_probe_{uuid.uuid4().hex[:8]}"
    failures: list[psycopg.Error] = []
    barrier = threading.Barrier(2, timeout=10)

    def run(row: int) -> None:
        with psycopg.connect(owner_url) as conn:
            try:
                with contextlib.suppress(threading.BrokenBarrierError):  # the other one failed: ours goes on
                    steps(conn, table, row, barrier)
                conn.commit()
            except psycopg.Error as exc:
                failures.append(exc)
                conn.rollback()
                barrier.abort()  # the other one is past its wait, or must not wait for us

    with psycopg.connect(owner_url, autocommit=True) as setup:
        setup.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, v int)")
        setup.execute(f"INSERT INTO {table} VALUES (1, 0), (2, 0)")
        try:
            threads = [threading.Thread(target=run, args=(row,)) for row in (1, 2)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=30)
        finally:
            setup.execute(f"DROP TABLE {table}")
    return failures


def test_a_deadlock_and_a_serialization_failure_are_transient(owner_url):
    def deadlock(conn: psycopg.Connection, table: str, row: int, barrier: threading.Barrier) -> None:
        conn.execute(f"UPDATE {table} SET v = 1 WHERE id = %s", (row,))
        barrier.wait()
        conn.execute(f"UPDATE {table} SET v = 1 WHERE id = %s", (3 - row,))  # the other's row

    def write_skew(conn: psycopg.Connection, table: str, row: int, barrier: threading.Barrier) -> None:
        conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        conn.execute(f"SELECT sum(v) FROM {table}")  # each reads both rows...
        barrier.wait()
        conn.execute(f"UPDATE {table} SET v = v + 1 WHERE id = %s", (row,))  # ...and writes one
        barrier.wait()

    deadlocked = in_parallel(owner_url, deadlock)
    skewed = in_parallel(owner_url, write_skew)
    assert [exc.sqlstate for exc in deadlocked] == ["40P01"], deadlocked
    assert [exc.sqlstate for exc in skewed] == ["40001"], skewed
    assert db_errors.transient(deadlocked[0]) and db_errors.transient(skewed[0])

"""One round trip per request (issue 10): the folded transaction and the local token cache.

Round trips are counted on the wire: libpq's protocol trace (PQtrace) of the real
connection lists every message the client sends; each simple `Query` and each extended
`Sync` is one round trip. The rate limiter's Redis calls are counted by Redis itself
(INFO commandstats), against a real redis-server.
"""

from __future__ import annotations

import re
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
import redis
from psycopg_pool import ConnectionPool

from api.ratelimit import MAX_BATCH, Limit, RateLimiter
from db.context import Connection, Context, Database, transaction
from db.dsn import role_url
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from db.settings import API_ROLE
from tests.helpers import OWNERS, problem


@contextmanager
def round_trips(conn: psycopg.Connection) -> Iterator[list[int]]:
    """Count the round trips `conn` makes inside the block (the list's one item, set at the end)."""
    counted: list[int] = []
    with tempfile.TemporaryFile("w+") as trace:
        conn.pgconn.trace(trace.fileno())
        try:
            yield counted
        finally:
            conn.pgconn.untrace()
            trace.seek(0)
            sent = [line for line in trace.read().splitlines() if re.search(r"\tF\t\d+\t(Query|Sync)\b", line)]
            counted.append(len(sent))


def test_a_read_is_one_round_trip_from_begin_to_commit(database: Database, new_tenant) -> None:
    """BEGIN, the SET LOCAL context, the statement and COMMIT go as one string: one round
    trip (before: BEGIN, SET LOCAL, the statement and COMMIT were four), and the context
    is the transaction's, gone after it."""
    tenant, actor = new_tenant(), uuid.uuid4()
    context = Context(tenant, actor_id=actor, actor_type="api_key", request_id="it's 100%")
    with database.transaction(context, deferred=True) as conn:
        assert isinstance(conn, Connection)
        with round_trips(conn) as counted:
            seen = conn.execute_last(
                "SELECT core.current_tenant_id(), core.current_actor_id(), core.current_request_id(), %s::int",
                (7,),
            ).fetchone()
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # committed already
        with pytest.raises(psycopg.ProgrammingError):  # a statement after the end would run without the context
            conn.execute("SELECT 1")
    # on Citus nothing is folded (db.context.Connection.fold): the opening, the statement, COMMIT
    assert counted == [1 if conn.fold else 3]
    assert seen == (tenant, actor, "it's 100%", 7)
    with database.transaction(Context()) as conn:
        assert conn.execute("SELECT core.current_tenant_id()").fetchone() == (None,)


def test_an_eager_transaction_opens_in_one_round_trip_and_rolls_back(test_settings, new_tenant) -> None:
    tenant = new_tenant()
    context = Context(tenant, actor_id=OWNERS[tenant], actor_type="user")
    pool = ConnectionPool(role_url(test_settings, API_ROLE), connection_class=Connection, min_size=1, max_size=1)
    with pool:
        with pool.connection() as only:  # the pool's one connection: trace it, then lend it out
            pass
        with round_trips(only) as counted, pytest.raises(RuntimeError), transaction(pool, context) as conn:
            conn.execute("SELECT api.create_project(%s, 'ghost')", (tenant,))
            raise RuntimeError("the request failed after the write")
        # BEGIN and SET LOCAL as one string, the statement, ROLLBACK (before: BEGIN and the
        # SET LOCALs were two round trips); the pool's own check of a returned connection
        # sends nothing
        assert counted == [3]
        assert only.autocommit is False  # given back as the pool lent it
        with transaction(pool, context) as conn:
            assert conn.execute("SELECT count(*) FROM api.list_projects(%s)", (tenant,)).fetchone()[0] == 0


def test_a_deferred_transaction_that_runs_nothing_sends_nothing(database: Database, new_tenant) -> None:
    with database.transaction(Context(new_tenant()), deferred=True) as conn, round_trips(conn) as counted:
        pass
    assert counted == [0]


def test_the_first_statement_folds_in_and_a_cursor_still_gets_the_context(database: Database, new_tenant) -> None:
    tenant = new_tenant()
    seen: list = []
    with (
        database.transaction(
            Context(tenant), deferred=True, first=("SELECT core.current_tenant_id() AS t", seen.extend)
        ) as conn,
        round_trips(conn) as counted,
    ):
        cur = conn.cursor()  # another way in: the opening is sent first, on its own
        assert cur.execute("SELECT core.current_tenant_id()").fetchone() == (tenant,)
    assert counted == [2 if conn.fold else 3]
    assert seen == [(tenant,)]


# -- over HTTP: the session check rides with the call -------------------------------------


def test_a_revoked_session_is_refused_by_the_folded_request(http, sign_up) -> None:
    account = sign_up()
    created = http.post("/v1/projects", headers=account.headers, json={"name": "P"})
    assert created.status_code == 201, created.text
    path = f"/v1/projects/{created.json()['project_id']}"
    assert http.get(path, headers=account.headers).status_code == 200
    assert http.post("/v1/auth/logout", headers=account.headers).status_code == 204
    refused = problem(http.get(path, headers=account.headers), 401, "session_revoked")
    assert "project_id" not in refused
    # a request refused before any statement (the body) still has its session checked
    resp = http.post("/v1/projects", headers=account.headers, json={"name": 5})
    problem(resp, 401, "session_revoked")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # and a write refused by the session check left nothing behind
    key = {"Idempotency-Key": uuid.uuid4().hex}
    problem(http.post("/v1/projects", headers=account.headers | key, json={"name": "Q"}), 401, "session_revoked")


# -- the local token cache -------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_redis() -> Iterator[redis.Redis]:
    with tempfile.TemporaryDirectory() as home:
        server = LocalRedis(Path(home), free_port())
        assert server.start()
        client = redis.Redis.from_url(server.url(), socket_timeout=2)
        try:
            yield client
        finally:
            client.close()
            server.stop()


def evalsha_calls(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


def test_batches_spare_redis_and_never_admit_more_than_the_bucket(own_redis: redis.Redis) -> None:
    """Two workers (limiters) hammer one bucket: most hits do not reach Redis, and all the
    allowed hits together never exceed the capacity; at most (MAX_BATCH - 1) per worker
    are held back when the bucket runs dry (the documented bound)."""
    capacity = 20_000  # enough for a busy second (batches start after one) and then the batches
    limit, key = Limit(capacity=capacity, refill_per_second=0.0), f"test:{uuid.uuid4()}"
    workers = [RateLimiter(own_redis), RateLimiter(own_redis)]
    before = evalsha_calls(own_redis)
    allowed = [0, 0]
    hits = [0, 0]
    start = threading.Barrier(len(workers))

    def run(n: int) -> None:
        start.wait()
        refused = 0
        while refused < 50:  # past the end of the bucket, and of the other worker's batches
            hits[n] += 1
            if workers[n].hit(key, limit).allowed:
                allowed[n] += 1
            else:
                refused += 1

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(workers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    calls = evalsha_calls(own_redis) - before
    assert sum(allowed) <= capacity
    assert sum(allowed) >= capacity - len(workers) * (MAX_BATCH - 1)
    assert calls < sum(hits) / 2, (calls, hits)  # before: one EVALSHA per hit


def test_small_plans_stay_exact(own_redis: redis.Redis) -> None:
    limiter, key = RateLimiter(own_redis), f"test:{uuid.uuid4()}"
    limit = Limit.per_minute(60)  # the free plan
    before = evalsha_calls(own_redis)
    decisions = [limiter.hit(key, limit) for _ in range(70)]
    assert [d.allowed for d in decisions].count(True) == 60
    assert evalsha_calls(own_redis) - before == 70  # every hit asked Redis
    assert [d.remaining for d in decisions[:5]] == [59, 58, 57, 56, 55]


def test_a_bucket_known_empty_is_refused_without_redis(own_redis: redis.Redis) -> None:
    limiter, key = RateLimiter(own_redis), f"test:{uuid.uuid4()}"
    limit = Limit(capacity=2, refill_per_second=0.5)  # a token every 2 s
    assert limiter.known_empty(key) is None
    assert [limiter.hit(key, limit).allowed for _ in range(3)] == [True, True, False]
    before = evalsha_calls(own_redis)
    refusal = limiter.known_empty(key)
    assert refusal is not None and not refusal.allowed and refusal.retry_after in (1, 2)
    assert refusal.headers()["RateLimit-Remaining"] == "0" and "Retry-After" in refusal.headers()
    assert evalsha_calls(own_redis) == before  # answered by the worker alone
    assert limiter.known_empty(f"test:{uuid.uuid4()}") is None  # another key knows nothing


def test_the_last_statement_of_an_open_transaction_carries_the_commit(database: Database, new_tenant) -> None:
    tenant = new_tenant()
    context = Context(tenant, actor_id=OWNERS[tenant], actor_type="user")
    with database.transaction(context) as conn:
        conn.execute("SELECT api.create_project(%s, 'first')", (tenant,))
        with round_trips(conn) as counted:
            conn.execute_last("SELECT api.create_project(%s, 'last')", (tenant,))
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # the statement and COMMIT together (on Citus, one after the other); nothing is left for the block's end
    assert counted == [1 if conn.fold else 2]
    with database.transaction(context) as conn:
        names = {row[0] for row in conn.execute("SELECT name FROM api.list_projects(%s)", (tenant,))}
    assert names == {"first", "last"}

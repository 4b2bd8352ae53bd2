"""Rollups count every event exactly once: with duplicates and late events in any order
of ingests and rollup runs (hypothesis), with rollup runs in parallel on real
connections, and with a run killed in the middle (sql/repeatable/400_usage.sql).

The reference is a direct aggregate of the stored raw events, computed here by other
SQL (date_trunc with a time zone, count(DISTINCT ...)), and the raw events themselves
are checked against a model: the first occurrence of each event id.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from db.context import Context, transaction
from db.settings import WORKER_ROLE
from tests.helpers import one

METRICS = ["tokens", "compute_minutes", "jobs_run", "active_users", "storage_gb", "peak_storage_gb", "api_calls"]

# The aggregate the rollups must equal, straight from core.usage_events.
DIRECT = """
SELECT e.metric, g.granularity, g.bucket_start,
       CASE m.aggregation
           WHEN 'sum' THEN sum(e.quantity)
           WHEN 'count' THEN count(*)
           WHEN 'max' THEN max(e.quantity)
           WHEN 'unique_count' THEN count(DISTINCT e.properties ->> m.property)
           ELSE (array_agg(e.quantity ORDER BY e.occurred_at DESC, e.event_id DESC))[1]
       END AS value,
       count(*) AS events
  FROM core.usage_events AS e
  JOIN core.metrics AS m ON m.metric = e.metric
 CROSS JOIN LATERAL (VALUES ('hour', date_trunc('hour', e.occurred_at, 'UTC')),
                            ('day', date_trunc('day', e.occurred_at, 'UTC')),
                            ('period', date_trunc('month', e.occurred_at, 'UTC'))) AS g (granularity, bucket_start)
 WHERE e.tenant_id = %s
 GROUP BY e.metric, m.aggregation, g.granularity, g.bucket_start
"""
ROLLED = "SELECT metric, granularity, bucket_start, value, events FROM core.usage_rollups WHERE tenant_id = %s"


def table(conn: psycopg.Connection, query: str, tenant_id: Any) -> dict[tuple, tuple[Decimal, int]]:
    return {(r[0], r[1], r[2]): (Decimal(r[3]), r[4]) for r in conn.execute(query, (tenant_id,)).fetchall()}


def assert_exact(owner_url: str, tenant_id: Any) -> dict:
    with psycopg.connect(owner_url) as conn:
        direct, rolled = table(conn, DIRECT, tenant_id), table(conn, ROLLED, tenant_id)
        pending = conn.execute("SELECT count(*) FROM core.usage_pending WHERE tenant_id = %s", (tenant_id,)).fetchone()
    assert pending[0] == 0
    assert rolled == direct
    return rolled


def rollup(database, max_events: int) -> int:
    with transaction(database.pool(WORKER_ROLE), Context(role=WORKER_ROLE)) as conn:
        return conn.execute("SELECT events FROM ops.rollup_usage(%s)", (max_events,)).fetchone()[0]


def roll_up_everything(database) -> None:
    while rollup(database, 5000):
        pass


# -- hypothesis: any interleaving of ingests and rollup runs ----------------------------------

# occurred_at as minutes before a fixed point 1 hour ago, up to 3 days back: buckets of
# many hours and days, and a run can roll up an hour before a later ingest adds to it
event = st.fixed_dictionaries(
    {
        "event_id": st.sampled_from([f"ev{n}" for n in range(12)]),  # few ids: many duplicates
        "metric": st.sampled_from(METRICS),
        "quantity": st.one_of(st.integers(0, 50), st.decimals(0, 20, places=2, allow_nan=False)),
        "minutes_ago": st.integers(0, 3 * 24 * 60),
        "user": st.sampled_from(["ann", "bob", "cy", "dee"]),
    }
)
step = st.one_of(
    st.tuples(st.just("ingest"), st.lists(event, min_size=1, max_size=8)),
    st.tuples(st.just("rollup"), st.integers(1, 6)),
)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=12))
def test_rollups_equal_a_direct_aggregate_in_any_interleaving(steps, api_pool, new_tenant, database, owner_url):
    tenant = new_tenant()
    anchor = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    model: dict[str, dict] = {}  # event id -> the event as first stored
    for kind, payload in steps:
        if kind == "rollup":
            rollup(database, payload)
            continue
        events = [
            {
                "event_id": e["event_id"],
                "metric": e["metric"],
                "quantity": float(e["quantity"]) if isinstance(e["quantity"], Decimal) else e["quantity"],
                "occurred_at": (anchor - dt.timedelta(minutes=e["minutes_ago"])).isoformat(),
                "properties": {"user_id": e["user"]},
            }
            for e in payload
        ]
        result = one(api_pool, tenant, "ingest_usage", Jsonb(events))
        new = 0
        for e in events:
            if e["event_id"] not in model:
                model[e["event_id"]] = e
                new += 1
        assert result == {"accepted": new, "duplicates": len(events) - new}
    roll_up_everything(database)
    with psycopg.connect(owner_url) as conn:
        raw = conn.execute(
            "SELECT event_id, metric, quantity FROM core.usage_events WHERE tenant_id = %s", (tenant,)
        ).fetchall()
    assert {r[0]: (r[1], Decimal(r[2])) for r in raw} == {
        k: (e["metric"], Decimal(str(e["quantity"]))) for k, e in model.items()
    }
    assert_exact(owner_url, tenant)


# -- concurrent rollup runs -------------------------------------------------------------------


def batch(prefix: str, count: int, anchor: dt.datetime) -> list[dict]:
    return [
        {
            "event_id": f"{prefix}-{n}",
            "metric": METRICS[n % len(METRICS)],
            "quantity": n % 17,
            "occurred_at": (anchor - dt.timedelta(minutes=(n * 37) % (2 * 24 * 60))).isoformat(),
            "properties": {"user_id": f"u{n % 23}"},
        }
        for n in range(count)
    ]


def test_parallel_rollup_runs_with_ingest_count_each_event_once(api_pool, new_tenant, database, owner_url):
    tenants = [new_tenant() for _ in range(3)]
    anchor = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    for tenant in tenants:
        one(api_pool, tenant, "ingest_usage", Jsonb(batch("seed", 600, anchor)))
    errors: list[BaseException] = []
    runs = [0]
    for round_no in range(4):
        barrier = threading.Barrier(6)

        def roll(barrier=barrier) -> None:
            # a connection of its own per thread (the pool hands each thread its own)
            try:
                barrier.wait()
                for _ in range(60):
                    runs[0] += 1
                    if rollup(database, 40) == 0:
                        time.sleep(0.01)
            except BaseException as exc:
                errors.append(exc)

        def add(tenant, round_no=round_no, barrier=barrier) -> None:
            try:
                barrier.wait()
                for part in range(5):
                    events = batch(f"r{round_no}-{part}", 80, anchor)
                    one(api_pool, tenant, "ingest_usage", Jsonb(events + events[:10]))  # retries too
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=roll) for _ in range(4)]
        threads += [threading.Thread(target=add, args=(tenants[n],)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors  # no deadlock, no unique violation
    roll_up_everything(database)
    for tenant in tenants:
        assert_exact(owner_url, tenant)


# -- a rollup run killed in the middle --------------------------------------------------------


def test_a_rollup_killed_mid_run_counts_nothing_and_the_next_run_is_exact(
    api_pool, new_tenant, database, owner_url, is_citus
):
    tenant = new_tenant()
    anchor = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    one(api_pool, tenant, "ingest_usage", Jsonb(batch("first", 200, anchor)))
    roll_up_everything(database)
    one(api_pool, tenant, "ingest_usage", Jsonb(batch("second", 300, anchor)))

    worker_conninfo = database.pool(WORKER_ROLE).conninfo
    outcome: list[BaseException | int] = []
    with psycopg.connect(owner_url) as blocker:
        # hold the tenant's rollup rows: the run will take its pending events, add the
        # distinct values, then wait on its first upsert, in the middle of its transaction
        blocker.execute("SELECT 1 FROM core.usage_rollups WHERE tenant_id = %s FOR UPDATE", (tenant,))
        victim = psycopg.connect(worker_conninfo, autocommit=True)
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]

        def run() -> None:
            try:
                outcome.append(victim.execute("SELECT events FROM ops.rollup_usage(100000)").fetchone()[0])
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        with psycopg.connect(owner_url, autocommit=True) as killer:
            # on Citus the wait is in a worker node's backend, which citus_lock_waits shows
            waits = (
                "SELECT EXISTS (SELECT 1 FROM citus_lock_waits)"
                if is_citus
                else "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock')"
            )
            for _ in range(200):
                if killer.execute(waits, () if is_citus else (pid,)).fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("the rollup never waited on the held rows")
            # mid-run: it has deleted pending events (uncommitted) and waits
            assert killer.execute("SELECT pg_terminate_backend(%s::integer)", (pid,)).fetchone()[0]
        thread.join(timeout=30)
        blocker.rollback()
    victim.close()
    assert outcome and isinstance(outcome[0], psycopg.OperationalError), outcome
    with psycopg.connect(owner_url) as conn:
        pending = conn.execute("SELECT count(*) FROM core.usage_pending WHERE tenant_id = %s", (tenant,)).fetchone()[0]
    assert pending == 300  # everything the killed run took is back
    roll_up_everything(database)
    rolled = assert_exact(owner_url, tenant)
    assert sum(events for (_, granularity, _), (_, events) in rolled.items() if granularity == "period") == 500

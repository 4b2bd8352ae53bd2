"""Usage metering: ingest (idempotent across time partitions, all or nothing), the
API-call counters' flush, partition maintenance, rollups and the HTTP endpoints
(sql/repeatable/400_usage.sql, api/resources/usage.py)."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from db.context import Context, transaction
from db.settings import WORKER_ROLE
from tests.helpers import bearer, call, one, problem


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat()


def ingest(api_pool, tenant_id, events: list[dict[str, Any]]) -> dict:
    return one(api_pool, tenant_id, "ingest_usage", Jsonb(events))


def refused(api_pool, tenant_id, events: list[dict[str, Any]]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        ingest(api_pool, tenant_id, events)
    return caught.value


def worker(database, statement: str, *params: Any) -> list[dict]:
    with (
        transaction(database.pool(WORKER_ROLE), Context(role=WORKER_ROLE)) as conn,
        conn.cursor(row_factory=dict_row) as cur,
    ):
        cur.execute(statement, params)
        return cur.fetchall()


def roll_up_everything(database) -> int:
    total = 0
    while (done := worker(database, "SELECT * FROM ops.rollup_usage(5000)")[0]["events"]) > 0:
        total += done
    return total


def stored(owner, tenant_id) -> list[dict]:
    return owner.execute(
        "SELECT event_id, metric, quantity, occurred_at, properties FROM core.usage_events"
        " WHERE tenant_id = %s ORDER BY event_id",
        (tenant_id,),
    ).fetchall()


def usage(api_pool, tenant_id, metric: str | None, granularity: str = "period") -> dict[tuple, Decimal]:
    """The tenant's rollups (api.get_usage, one page of up to 201 buckets): (metric, bucket) -> value."""
    rows = call(api_pool, tenant_id, "get_usage", metric, granularity, p_limit=201)
    return {(row["metric"], row["bucket_start"]): row["value"] for row in rows}


# -- ingest ---------------------------------------------------------------------------------


def test_a_batch_is_stored_once_and_a_retry_counts_as_duplicates(api_pool, new_tenant, owner):
    tenant = new_tenant()
    events: list[dict[str, Any]] = [
        {"event_id": "e1", "metric": "tokens", "quantity": 120},
        {"event_id": "e2", "metric": "tokens", "quantity": 0.5, "occurred_at": iso(now() - dt.timedelta(hours=2))},
        {"event_id": "e3", "metric": "active_users", "properties": {"user_id": "u-1"}},
    ]
    assert ingest(api_pool, tenant, events) == {"accepted": 3, "duplicates": 0}
    assert ingest(api_pool, tenant, events) == {"accepted": 0, "duplicates": 3}
    rows = stored(owner, tenant)
    assert [(r["event_id"], r["quantity"]) for r in rows] == [("e1", 120), ("e2", Decimal("0.5")), ("e3", 1)]
    assert rows[2]["properties"] == {"user_id": "u-1"}


def test_the_same_event_id_with_another_occurred_at_is_still_a_duplicate(api_pool, new_tenant, owner):
    # the events table's key holds occurred_at (the partition column): only the
    # de-duplication table keyed on (tenant_id, event_id) sees these as one event
    tenant = new_tenant()
    first = {"event_id": "retry", "metric": "tokens", "quantity": 10, "occurred_at": iso(now() - dt.timedelta(days=6))}
    again = first | {"occurred_at": iso(now()), "quantity": 99}
    assert ingest(api_pool, tenant, [first]) == {"accepted": 1, "duplicates": 0}
    assert ingest(api_pool, tenant, [again]) == {"accepted": 0, "duplicates": 1}
    # within one batch, too: the first of a repeated id wins
    assert ingest(api_pool, tenant, [again | {"event_id": "twice"}, first | {"event_id": "twice"}]) == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert [(r["event_id"], r["quantity"]) for r in stored(owner, tenant)] == [("retry", 10), ("twice", 99)]


def test_event_ids_are_per_tenant(api_pool, new_tenant):
    one_tenant, other = new_tenant(), new_tenant()
    event = {"event_id": "shared-id", "metric": "tokens"}
    assert ingest(api_pool, one_tenant, [event])["accepted"] == 1
    assert ingest(api_pool, other, [event])["accepted"] == 1


@pytest.mark.parametrize(
    ("bad", "sqlstate", "column"),
    [
        ({"event_id": "x", "metric": "no_such_metric"}, "TU001", "events[1].metric"),
        ({"event_id": "x", "metric": "tokens", "occurred_at": "LATE"}, "TU002", "events[1].occurred_at"),
        ({"event_id": "x", "metric": "tokens", "occurred_at": "FUTURE"}, "TU003", "events[1].occurred_at"),
        ({"event_id": "x", "metric": "tokens", "quantity": -1}, "22023", "events[1].quantity"),
        ({"event_id": "x", "metric": "tokens", "quantity": "5"}, "22023", "events[1].quantity"),
        ({"event_id": "x", "metric": "tokens", "occurred_at": "yesterday"}, "22007", "events[1].occurred_at"),
        ({"event_id": "x", "metric": "tokens", "occurred_at": "2025-01-01T00:00:00"}, "22007", "events[1].occurred_at"),
        ({"event_id": "", "metric": "tokens"}, "22023", "events[1].event_id"),
        ({"metric": "tokens"}, "22023", "events[1].event_id"),
        ({"event_id": "x", "metric": "tokens", "colour": "red"}, "22023", "events[1].colour"),
        ({"event_id": "x", "metric": "active_users", "properties": {}}, "22023", "events[1].properties.user_id"),
        ({"event_id": "x", "metric": "tokens", "properties": [1]}, "22023", "events[1].properties"),
    ],
)
def test_a_bad_event_refuses_the_whole_batch_and_is_named(api_pool, new_tenant, owner, bad, sqlstate, column):
    tenant = new_tenant()
    times = {"LATE": iso(now() - dt.timedelta(days=7, minutes=5)), "FUTURE": iso(now() + dt.timedelta(minutes=10))}
    if bad.get("occurred_at") in times:
        bad = bad | {"occurred_at": times[bad["occurred_at"]]}
    good = {"event_id": "good", "metric": "tokens", "quantity": 1}
    error = refused(api_pool, tenant, [good, bad, good | {"event_id": "later", "metric": "no_such_metric"}])
    assert error.sqlstate == sqlstate, error
    assert error.diag.column_name == column
    assert stored(owner, tenant) == []  # all or nothing
    # and the good event's id was not spent
    assert ingest(api_pool, tenant, [good])["accepted"] == 1


def test_a_batch_has_at_most_1000_events(api_pool, new_tenant):
    tenant = new_tenant()
    events = [{"event_id": f"e{n}", "metric": "tokens"} for n in range(1001)]
    assert refused(api_pool, tenant, events).sqlstate == "22023"
    assert ingest(api_pool, tenant, events[:1000])["accepted"] == 1000
    assert ingest(api_pool, tenant, []) == {"accepted": 0, "duplicates": 0}


def test_ingest_needs_the_own_tenant_and_one_that_may_write(api_pool, new_tenant, owner):
    suspended = new_tenant(status="suspended")
    assert refused(api_pool, suspended, [{"event_id": "x", "metric": "tokens"}]).sqlstate == "TN001"
    tenant, other = new_tenant(), new_tenant()
    with pytest.raises(psycopg.Error) as caught:
        call(api_pool, tenant, "ingest_usage", Jsonb([{"event_id": "x", "metric": "tokens"}]), as_tenant=other)
    assert caught.value.sqlstate == "42501"
    assert stored(owner, tenant) == []


# -- the API-call counters' flush -------------------------------------------------------------


def test_a_flush_window_of_api_calls_counts_once(database, api_pool, new_tenant, owner):
    tenant, other = new_tenant(), new_tenant()
    key, user = f"key:{uuid.uuid4()}", f"user:{uuid.uuid4()}"
    window = now().replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    counts = [
        {"tenant_id": str(tenant), "key": key, "calls": 40},
        {"tenant_id": str(tenant), "key": user, "calls": 2},
        {"tenant_id": str(other), "key": key, "calls": 7},
    ]
    first = worker(database, "SELECT * FROM ops.record_api_calls(%s, %s)", window, Jsonb(counts))
    assert first == [{"accepted": 3, "duplicates": 0}]
    again = worker(database, "SELECT * FROM ops.record_api_calls(%s, %s)", window, Jsonb(counts))
    assert again == [{"accepted": 0, "duplicates": 3}]
    # the next window is new
    later = worker(
        database, "SELECT * FROM ops.record_api_calls(%s, %s)", window + dt.timedelta(minutes=1), Jsonb(counts[:1])
    )
    assert later == [{"accepted": 1, "duplicates": 0}]
    rows = stored(owner, tenant)
    epoch = int(window.timestamp())
    assert {r["event_id"] for r in rows} == {
        f"api_calls:{key}:{epoch}",
        f"api_calls:{user}:{epoch}",
        f"api_calls:{key}:{epoch + 60}",
    }
    assert all(r["occurred_at"] >= window for r in rows)
    roll_up_everything(database)
    period = window.replace(day=1, hour=0, minute=0)
    if (window + dt.timedelta(minutes=1)).month == window.month:
        assert usage(api_pool, tenant, "api_calls")[("api_calls", period)] == 82
        assert usage(api_pool, other, "api_calls")[("api_calls", period)] == 7


def test_a_flush_refuses_malformed_counts(database):
    with pytest.raises(psycopg.Error) as caught:
        worker(database, "SELECT * FROM ops.record_api_calls(now(), %s)", Jsonb([{"tenant_id": "x", "calls": 1}]))
    assert caught.value.sqlstate == "22023"


# -- partitions -------------------------------------------------------------------------------


def partitions(owner) -> dict[str, tuple[dt.datetime, dt.datetime]]:
    return {
        row["partition_name"]: (row["range_start"], row["range_end"])
        for row in owner.execute("SELECT * FROM core.usage_partitions()").fetchall()
    }


def test_partitions_are_made_ahead_and_old_ones_dropped_with_their_ids(database, owner, new_tenant, api_pool):
    # an old month, with an event in it, as if it had been ingested then
    tenant = new_tenant()
    owner.execute(
        "CREATE TABLE IF NOT EXISTS core.usage_events_p2001m01 PARTITION OF core.usage_events"
        " FOR VALUES FROM ('2001-01-01 00:00+00') TO ('2001-02-01 00:00+00')"
    )
    # as ops.maintain_usage_partitions makes them: owned by the owner role, which drops them
    owner.execute("ALTER TABLE core.usage_events_p2001m01 OWNER TO tenantry_owner")
    owner.execute(
        "INSERT INTO core.usage_events (tenant_id, event_id, metric, quantity, occurred_at, ingested_at)"
        " VALUES (%s, 'ancient', 'tokens', 1, '2001-01-15+00', '2001-01-15+00')",
        (tenant,),
    )
    owner.execute(
        "INSERT INTO core.usage_event_ids (tenant_id, event_id, ingested_at) VALUES (%s, 'ancient', '2001-01-15+00')",
        (tenant,),
    )
    done = worker(database, "SELECT * FROM ops.maintain_usage_partitions('400 days', '5 months')")
    assert {
        "action": "dropped",
        "object": "core.usage_events_p2001m01",
        "range_start": None,
        "range_end": None,
        "row_count": None,
    } in done
    forgot = [row for row in done if row["action"] == "forgot event ids"]
    assert forgot and forgot[0]["row_count"] >= 1
    ranges = partitions(owner)
    assert "core.usage_events_p2001m01" not in ranges
    # months without gaps from before the lateness window to 5 months ahead
    starts = sorted(start for start, _ in ranges.values())
    ends = {end for _, end in ranges.values()}
    assert starts[0] <= now() - dt.timedelta(days=7)
    assert max(ends) >= now() + dt.timedelta(days=5 * 28)
    assert all(start in ends for start in starts[1:])
    # idempotent: a second run changes nothing
    assert worker(database, "SELECT * FROM ops.maintain_usage_partitions('400 days', '5 months')") == []
    # the forgotten id may be used again
    assert ingest(api_pool, tenant, [{"event_id": "ancient", "metric": "tokens"}])["accepted"] == 1


def test_maintenance_refuses_a_retention_inside_the_lateness_window(database):
    with pytest.raises(psycopg.Error) as caught:
        worker(database, "SELECT * FROM ops.maintain_usage_partitions('3 days', '2 months')")
    assert caught.value.sqlstate == "22023"
    assert caught.value.diag.column_name == "retention"


def test_an_event_no_partition_takes_is_refused_clearly(scratch_database):
    url = scratch_database("usage_nopart", migrated=True)
    with psycopg.connect(url, autocommit=True) as conn:
        slug = f"np-{uuid.uuid4().hex[:10]}"
        tenant, user = conn.execute(
            "SELECT s.tenant_id, s.user_id FROM auth.sign_up(%s, 'x', '$argon2id$x', %s, 'T', %s) AS s",
            (f"{slug}@tenantry.test", slug, f"vfy_{slug}"),
        ).fetchone()
        current = conn.execute(
            "SELECT partition_name FROM core.usage_partitions() WHERE now() >= range_start AND now() < range_end"
        ).fetchone()[0]
        conn.execute(f"DROP TABLE {current}")
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL ROLE tenantry_api")
        context = Context(tenant, user, "user").statement()
        assert context is not None
        conn.execute(context)
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(
                "SELECT * FROM api.ingest_usage(%s, %s)", (tenant, Jsonb([{"event_id": "x", "metric": "tokens"}]))
            )
    assert caught.value.sqlstate == "TU005"
    assert "partition" in caught.value.diag.message_primary


# -- rollups ----------------------------------------------------------------------------------


def test_rollups_per_hour_day_and_period_for_each_aggregation_with_late_events(database, api_pool, new_tenant):
    tenant = new_tenant()
    # 10:00 UTC yesterday: within the lateness window, one day and one period
    base = (now() - dt.timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    at = lambda minutes: iso(base + dt.timedelta(minutes=minutes))  # noqa: E731
    ingest(
        api_pool,
        tenant,
        [
            {"event_id": "t1", "metric": "tokens", "quantity": 5, "occurred_at": at(1)},
            {"event_id": "t2", "metric": "tokens", "quantity": 7, "occurred_at": at(70)},
            {"event_id": "j1", "metric": "jobs_run", "quantity": 100, "occurred_at": at(2)},
            {"event_id": "u1", "metric": "active_users", "properties": {"user_id": "ann"}, "occurred_at": at(3)},
            {"event_id": "u2", "metric": "active_users", "properties": {"user_id": "bob"}, "occurred_at": at(4)},
            {"event_id": "s1", "metric": "storage_gb", "quantity": 10, "occurred_at": at(10)},
            {"event_id": "p1", "metric": "peak_storage_gb", "quantity": 10, "occurred_at": at(10)},
        ],
    )
    assert roll_up_everything(database) >= 7
    # late events: for buckets that were rolled up already
    ingest(
        api_pool,
        tenant,
        [
            {"event_id": "t3", "metric": "tokens", "quantity": 1, "occurred_at": at(0)},
            {"event_id": "j2", "metric": "jobs_run", "quantity": 100, "occurred_at": at(5)},
            {"event_id": "u3", "metric": "active_users", "properties": {"user_id": "ann"}, "occurred_at": at(75)},
            {"event_id": "s0", "metric": "storage_gb", "quantity": 99, "occurred_at": at(5)},  # older: not latest
            {"event_id": "s2", "metric": "storage_gb", "quantity": 3, "occurred_at": at(20)},  # newer: latest
            {"event_id": "p0", "metric": "peak_storage_gb", "quantity": 99, "occurred_at": at(5)},
        ],
    )
    assert roll_up_everything(database) == 6
    hour, next_hour = base, base + dt.timedelta(hours=1)
    day, period = base.replace(hour=0), base.replace(day=1, hour=0)
    hourly = usage(api_pool, tenant, None, "hour")
    assert hourly == {
        ("tokens", hour): 6,
        ("tokens", next_hour): 7,
        ("jobs_run", hour): 2,
        ("active_users", hour): 2,
        ("active_users", next_hour): 1,
        ("storage_gb", hour): 3,
        ("peak_storage_gb", hour): 99,
    }
    for granularity, bucket in (("day", day), ("period", period)):
        assert usage(api_pool, tenant, None, granularity) == {
            ("tokens", bucket): 13,
            ("jobs_run", bucket): 2,
            ("active_users", bucket): 2,
            ("storage_gb", bucket): 3,
            ("peak_storage_gb", bucket): 99,
        }, granularity


def test_rollups_are_read_per_tenant_and_checked(api_pool, new_tenant, database):
    tenant, other = new_tenant(), new_tenant()
    ingest(api_pool, tenant, [{"event_id": "a", "metric": "tokens", "quantity": 3}])
    roll_up_everything(database)
    assert usage(api_pool, other, "tokens") == {}
    assert sum(usage(api_pool, tenant, "tokens").values()) == 3
    with pytest.raises(psycopg.Error) as caught:
        call(api_pool, tenant, "get_usage", "no_such_metric", "day")
    assert caught.value.sqlstate == "P0002"
    with pytest.raises(psycopg.Error) as caught:
        call(api_pool, tenant, "get_usage", "tokens", "week")
    assert caught.value.sqlstate == "22023"
    summary = {row["metric"]: row for row in call(api_pool, tenant, "get_usage_summary")}
    assert summary["tokens"]["value"] == 3 and summary["compute_minutes"]["value"] == 0


# -- HTTP ---------------------------------------------------------------------------------------


def test_http_ingest_single_and_batch_then_read(http, sign_up, database):
    account = sign_up()
    headers = bearer(account.access_token)
    single = http.post(
        "/v1/usage/events", headers=headers, json={"event_id": "h1", "metric": "tokens", "quantity": 2.5}
    )
    assert single.status_code == 200, single.text
    assert single.json() == {"accepted": 1, "duplicates": 0}
    batch = [{"event_id": f"b{n}", "metric": "tokens", "quantity": n} for n in range(250)]
    resp = http.post(
        "/v1/usage/events", headers=headers, json={"events": [*batch, {"event_id": "h1", "metric": "tokens"}]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"accepted": 250, "duplicates": 1}

    metrics = http.get("/v1/usage/metrics", headers=headers)
    assert metrics.status_code == 200, metrics.text
    by_name = {m["metric"]: m for m in metrics.json()["items"]}
    assert by_name["active_users"]["aggregation"] == "unique_count" and by_name["active_users"]["property"] == "user_id"

    roll_up_everything(database)
    current = http.get("/v1/usage", headers=headers)
    assert current.status_code == 200, current.text
    tokens = next(item for item in current.json()["items"] if item["metric"] == "tokens")
    assert Decimal(tokens["value"]) == Decimal("2.5") + sum(range(250))
    assert tokens["events"] == 251

    # history: hourly buckets, one per page, walked with the cursor
    seen, cursor = [], None
    for _ in range(10):
        params = {"metric": "tokens", "granularity": "hour", "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = http.get("/v1/usage/history", headers=headers, params=params)
        assert page.status_code == 200, page.text
        seen += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sum(Decimal(item["value"]) for item in seen) == Decimal("2.5") + sum(range(250))
    assert [item["bucket_start"] for item in seen] == sorted(item["bucket_start"] for item in seen)


def test_http_refusals_name_the_event(http, sign_up):
    account = sign_up()
    headers = bearer(account.access_token)
    resp = http.post(
        "/v1/usage/events",
        headers=headers,
        json={"events": [{"event_id": "ok", "metric": "tokens"}, {"event_id": "bad", "metric": "nope"}]},
    )
    problem(resp, 422, "unknown_metric", field="events[1].metric")
    late = iso(now() - dt.timedelta(days=8))
    resp = http.post(
        "/v1/usage/events", headers=headers, json={"event_id": "x", "metric": "tokens", "occurred_at": late}
    )
    problem(resp, 422, "usage_event_too_late", field="events[0].occurred_at")
    too_many = {"events": [{"event_id": f"e{n}", "metric": "tokens"} for n in range(1001)]}
    problem(http.post("/v1/usage/events", headers=headers, json=too_many), 422, "invalid_body", field="events")
    problem(
        http.get("/v1/usage/history", headers=headers, params={"granularity": "week"}),
        400,
        "invalid_parameter",
        field="granularity",
    )
    problem(
        http.get("/v1/usage/history", headers=headers, params={"from": "monday"}),
        400,
        "invalid_parameter",
        field="from",
    )
    problem(
        http.get("/v1/usage/history", headers=headers, params={"cursor": "zzz"}),
        400,
        "invalid_parameter",
        field="cursor",
    )

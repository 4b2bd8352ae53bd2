"""The billing export (jobs/billing_export.py, sql/repeatable/600_billing.sql): exactly once
per month, format and destination; a killed exporter leaves no complete-looking file and no
ledger row; late events become adjustment lines of a later month; the amounts equal a
direct aggregate of the raw events x prices (hypothesis).

Months long past (2001-...) are filled by writing their 'period' rollups as the owner
(events that old cannot be ingested: the lateness window is 7 days); each test has months
of its own, because a month is closed once per database. The property test ingests real
events in a scratch database whose billing clock is moved past the current month.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import duckdb
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from db.context import Database
from db.dsn import role_environment
from db.settings import Settings
from jobs import billing_export
from jobs.billing_export import export_period

PROJECT = Path(__file__).resolve().parent.parent


def put_usage(owner_url: str, tenant_id: uuid.UUID, month: dt.date, values: dict[str, Decimal | int]) -> None:
    """Set the tenant's 'period' rollups of `month` (as the rollup would have)."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for metric, value in values.items():
            conn.execute(
                "INSERT INTO core.usage_rollups (tenant_id, metric, granularity, bucket_start, value, events)"
                " VALUES (%s, %s, 'period', %s::timestamp AT TIME ZONE 'UTC', %s, 1)"
                " ON CONFLICT (tenant_id, metric, granularity, bucket_start) DO UPDATE SET value = EXCLUDED.value",
                (tenant_id, metric, month, value),
            )


def ledger(owner_url: str, month: dt.date) -> list[tuple]:
    with psycopg.connect(owner_url) as conn:
        return conn.execute(
            "SELECT format, version, file_name, sha256, row_count, forced FROM core.billing_exports"
            " WHERE period = %s ORDER BY format, version",
            (month,),
        ).fetchall()


@pytest.fixture(scope="module")
def exporter_db(test_settings: Settings):
    db = Database(test_settings, dict_rows=True, name="billing-tests")
    yield db
    db.close()


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# -- exactly once ---------------------------------------------------------------------------


def test_each_format_is_written_once_and_a_rerun_changes_nothing(owner_url, new_tenant, exporter_db, tmp_path):
    month = dt.date(2001, 1, 1)
    tenant = new_tenant("pro")
    # pro: api_calls 1,000,000 included at 0.0001; tokens in packages of 1,000,000 at 2.00
    put_usage(owner_url, tenant, month, {"api_calls": 1_500_000, "tokens": 12_500_001, "compute_minutes": 10})
    dest = tmp_path / "out"
    first = {fmt: export_period(exporter_db, month, fmt, dest) for fmt in billing_export.FORMATS}
    assert {r.status for r in first.values()} == {"exported"}
    files = sorted(p.name for p in dest.iterdir())
    assert files == ["billing-2001-01-v1.csv", "billing-2001-01-v1.jsonl", "billing-2001-01-v1.parquet"]
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dest.iterdir()}
    recorded = ledger(owner_url, month)

    again = {fmt: export_period(exporter_db, month, fmt, dest) for fmt in billing_export.FORMATS}
    assert {r.status for r in again.values()} == {"already_exported"}
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in dest.iterdir()} == before
    assert ledger(owner_url, month) == recorded
    assert "already exported" in again["csv"].describe()

    # the three formats say the same, and the ledger's checksum and count are the files'
    ours = [r for r in read_csv(dest / "billing-2001-01-v1.csv") if r["tenant_id"] == str(tenant)]
    by_metric = {r["metric"]: r for r in ours}
    assert by_metric["api_calls"]["billable"] == "500000"
    assert Decimal(by_metric["api_calls"]["amount"]) == Decimal("50")
    assert Decimal(by_metric["tokens"]["amount"]) == Decimal("6")  # 2,500,001 beyond: 3 packages started
    assert Decimal(by_metric["compute_minutes"]["amount"]) == 0  # within the 60,000 included
    lines = [json.loads(x) for x in (dest / "billing-2001-01-v1.jsonl").read_text().splitlines()]
    assert len(lines) == first["json"].rows == first["csv"].rows == first["parquet"].rows
    parquet = duckdb.sql(
        f"SELECT tenant_id, metric, amount, period FROM read_parquet('{dest / 'billing-2001-01-v1.parquet'}')"
    )
    types = dict(zip(parquet.columns, [str(t) for t in parquet.types], strict=True))
    assert types["amount"] == "DECIMAL(20,6)" and types["period"] == "DATE"
    from_parquet = {m: a for t, m, a, _ in parquet.fetchall() if t == str(tenant)}
    assert from_parquet == {m: Decimal(r["amount"]) for m, r in by_metric.items()}
    for fmt, result in first.items():
        assert result.sha256 == billing_export._sha256(dest / result.file), fmt

    # --force: a new version, recorded as forced, the old file kept
    forced = export_period(exporter_db, month, "csv", dest, force=True)
    assert (forced.status, forced.version, forced.forced) == ("exported", 2, True)
    assert (dest / "billing-2001-01-v2.csv").read_bytes() == (dest / "billing-2001-01-v1.csv").read_bytes()
    assert [(f, v, forced) for f, v, _, _, _, forced in ledger(owner_url, month) if f == "csv"] == [
        ("csv", 1, False),
        ("csv", 2, True),
    ]
    # another destination is another export
    elsewhere = export_period(exporter_db, month, "csv", tmp_path / "elsewhere")
    assert (elsewhere.status, elsewhere.version) == ("exported", 1)


def test_a_month_that_has_not_ended_is_refused(exporter_db, tmp_path):
    this_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    with pytest.raises(psycopg.Error) as refused:
        export_period(exporter_db, this_month, "csv", tmp_path)
    assert refused.value.sqlstate == "TB010"
    assert list(tmp_path.iterdir()) == []


# -- a crash mid-write -------------------------------------------------------------------------


def export_command(owner_url: str, month: str, dest: Path, **env: str) -> subprocess.Popen:
    environment = (
        dict(os.environ)
        | role_environment(Settings(database_url=owner_url))
        | {"TENANTRY_DATABASE_URL": owner_url}
        | env
    )
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tenantry",
            "billing",
            "export",
            "--period",
            month,
            "--format",
            "csv",
            "--dest",
            str(dest),
        ],
        cwd=PROJECT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_exporter_killed_mid_write_leaves_no_complete_file_and_no_ledger_row(owner_url, new_tenant, tmp_path):
    month = dt.date(2001, 5, 1)
    for _ in range(4):
        put_usage(owner_url, new_tenant("pro"), month, {"api_calls": 2_000_000, "tokens": 1, "compute_minutes": 70_000})
    dest = tmp_path / "out"
    process = export_command(owner_url, "2001-05", dest, TENANTRY_BILLING_EXPORT_PAUSE_AFTER_ROWS="5")
    try:
        deadline = time.monotonic() + 60
        assert process.stderr is not None
        line = process.stderr.readline()  # the exporter says when it has written 5 rows and paused
        assert "paused after 5 rows" in line, line
        assert time.monotonic() < deadline
        partial = list(dest.glob(".billing-2001-05-v1.csv.*.partial"))
        assert len(partial) == 1 and partial[0].read_text().count("\n") == 6  # header and 5 rows, on disk
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    # nothing looks complete, nothing is recorded
    assert [p for p in dest.iterdir() if not p.name.startswith(".")] == []
    assert ledger(owner_url, dt.date(2001, 5, 1)) == []

    # the next run finishes the job (and clears the leftover), a third says it is done
    done = export_command(owner_url, "2001-05", dest)
    out, err = done.communicate(timeout=120)
    assert done.returncode == 0, err
    assert "exported 12 rows" in out
    assert sorted(p.name for p in dest.iterdir()) == ["billing-2001-05-v1.csv"]
    assert len(read_csv(dest / "billing-2001-05-v1.csv")) == 12
    [(fmt, version, name, digest, rows, forced)] = ledger(owner_url, dt.date(2001, 5, 1))
    assert (fmt, version, name, rows, forced) == ("csv", 1, "billing-2001-05-v1.csv", 12, False)
    assert digest == billing_export._sha256(dest / name)
    again = export_command(owner_url, "2001-05", dest)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and "already exported" in out


# -- late events: an adjustment in the next month, the exported month unchanged ----------------


def test_late_usage_is_an_adjustment_of_the_next_export(owner_url, new_tenant, exporter_db, tmp_path):
    september, october = dt.date(2001, 9, 1), dt.date(2001, 10, 1)
    tenant = new_tenant("pro")
    put_usage(owner_url, tenant, september, {"api_calls": 1_200_000})
    first = export_period(exporter_db, september, "csv", tmp_path)
    exported = (tmp_path / first.file).read_bytes()
    # late events for September after its export (the rollup grows), and October's own
    put_usage(owner_url, tenant, september, {"api_calls": 1_300_000})
    put_usage(owner_url, tenant, october, {"api_calls": 1_000_001})
    second = export_period(exporter_db, october, "csv", tmp_path)
    assert (tmp_path / first.file).read_bytes() == exported
    assert export_period(exporter_db, september, "csv", tmp_path).status == "already_exported"
    ours = [r for r in read_csv(tmp_path / second.file) if r["tenant_id"] == str(tenant)]
    assert [(r["usage_period"], r["kind"], r["quantity"], r["billable"], Decimal(r["amount"])) for r in ours] == [
        ("2001-09-01", "adjustment", "100000", "100000", Decimal("10")),
        ("2001-10-01", "usage", "1000001", "1", Decimal("0.0001")),
    ]
    # nothing changed since: a later month carries no adjustment for September
    put_usage(owner_url, tenant, dt.date(2001, 11, 1), {"api_calls": 5})
    third = export_period(exporter_db, dt.date(2001, 11, 1), "csv", tmp_path)
    assert [r["kind"] for r in read_csv(tmp_path / third.file) if r["tenant_id"] == str(tenant)] == ["usage"]


# -- the amounts are the raw events x prices (hypothesis) ---------------------------------------

# a plan of the test's own, with every overage rule and small included amounts
TEST_PRICES = [
    ("api_calls", 10, Decimal("0.001"), "per_unit", 1),
    ("tokens", 10, Decimal("0.5"), "per_package", 7),
    ("compute_minutes", Decimal("2.5"), Decimal("0.013"), "per_unit", 1),
    ("jobs_run", 3, Decimal("7"), "none", 1),
]

# the reference: raw events of the month, aggregated here, times the prices
DIRECT = """
SELECT e.metric,
       CASE m.aggregation WHEN 'count' THEN count(*)::numeric ELSE sum(e.quantity) END AS quantity,
       p.included_units, p.unit_price, p.overage, p.package_size
  FROM core.usage_events AS e
  JOIN core.metrics AS m ON m.metric = e.metric
  JOIN core.prices AS p ON p.plan_id = 'billtest' AND p.metric = e.metric
 WHERE e.tenant_id = %s AND e.occurred_at >= %s AND e.occurred_at < %s
 GROUP BY e.metric, m.aggregation, p.included_units, p.unit_price, p.overage, p.package_size
"""


def expected_amount(quantity: Decimal, included, unit_price: Decimal, overage: str, package) -> Decimal:
    billable = max(quantity - Decimal(included), Decimal(0))
    if overage == "per_unit":
        amount = billable * unit_price
    elif overage == "per_package":
        amount = math.ceil(billable / Decimal(package)) * unit_price  # packages started
    else:
        amount = Decimal(0)
    return amount.quantize(Decimal("0.000001"))


@pytest.fixture
def billing_scratch(scratch_database):
    """A migrated database of this test's own: a plan with TEST_PRICES, and the billing clock
    moved 32 days ahead, so the current month (the only one events can be ingested into) is over."""
    url = scratch_database("billing_property", migrated=True)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO core.plans (plan_id, name, price_cents, currency, limits, features, overage)"
            " VALUES ('billtest', 'Billing test', 1000, 'EUR', '{}', '{}', 'bill')"
        )
        for metric, included, price, overage, package in TEST_PRICES:
            conn.execute(
                "INSERT INTO core.prices VALUES ('billtest', %s, %s, %s, 'EUR', %s, %s)",
                (metric, included, price, overage, package),
            )
        conn.execute(
            "CREATE OR REPLACE FUNCTION core.billing_clock() RETURNS timestamptz LANGUAGE sql STABLE"
            " SET search_path = pg_catalog, pg_temp AS $$ SELECT now() + interval '32 days' $$"
        )
    db = Database(Settings(database_url=url), dict_rows=True, name="billing-property")
    yield url, db
    db.close()


event = st.fixed_dictionaries(
    {
        "metric": st.sampled_from([m for m, *_ in TEST_PRICES]),
        "quantity": st.one_of(st.integers(0, 60), st.decimals(0, 30, places=3, allow_nan=False)),
        "seconds_back": st.integers(0, 6 * 24 * 3600),
        "duplicate": st.booleans(),
    }
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(event, min_size=1, max_size=40), fmt=st.sampled_from(billing_export.FORMATS))
def test_exported_amounts_equal_the_raw_events_times_prices(events, fmt, billing_scratch, tmp_path_factory):
    url, db = billing_scratch
    now = dt.datetime.now(dt.UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    earliest = max(month_start, now - dt.timedelta(days=6))
    span = max(int((now - earliest).total_seconds()) - 60, 0)
    batch = []
    for n, e in enumerate(events):
        at = now - dt.timedelta(seconds=60 + (e["seconds_back"] % (span + 1)))
        batch.append(
            {
                "event_id": f"e{n - 1 if e['duplicate'] and n else n}",  # retries are duplicates
                "metric": e["metric"],
                "quantity": float(e["quantity"]) if isinstance(e["quantity"], Decimal) else e["quantity"],
                "occurred_at": max(at, earliest).isoformat(),
            }
        )
    with psycopg.connect(url, autocommit=True) as conn:
        # a month of this example's own: reopen it (the test's database only)
        conn.execute("DELETE FROM core.billing_exports")
        conn.execute("DELETE FROM core.invoice_lines")
        conn.execute("DELETE FROM core.billing_periods")
        slug = f"b-{uuid.uuid4().hex[:12]}"
        tenant = conn.execute("SELECT tenant_id FROM core.create_tenant(%s, %s, 'billtest')", (slug, slug)).fetchone()[
            0
        ]
        conn.execute("SELECT * FROM core.ingest_usage(%s, %s, false)", (tenant, Jsonb(batch)))
        while conn.execute("SELECT events FROM ops.rollup_usage(100000)").fetchone()[0]:
            pass
        direct = conn.execute(DIRECT, (tenant, month_start, _next_month(month_start))).fetchall()
    expected = {metric: expected_amount(q, *rest) for metric, q, *rest in direct}
    expected_quantity = {metric: q for metric, q, *_ in direct}

    dest = tmp_path_factory.mktemp("export")
    result = export_period(db, month_start.date(), fmt, dest)
    assert result.status == "exported"
    path = dest / result.file
    if fmt == "csv":
        rows = read_csv(path)
    elif fmt == "json":
        rows = [json.loads(line) for line in path.read_text().splitlines()]
    else:
        relation = duckdb.sql(f"SELECT tenant_id, metric, quantity, amount FROM read_parquet('{path}')")
        rows = [dict(zip(relation.columns, r, strict=True)) for r in relation.fetchall()]
    ours = {r["metric"]: r for r in rows if r["tenant_id"] == str(tenant)}
    assert {m: Decimal(str(r["amount"])) for m, r in ours.items()} == expected
    assert {m: Decimal(str(r["quantity"])) for m, r in ours.items()} == expected_quantity


def _next_month(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)

"""bench/billing_export: closing a month and exporting it, for --tenants tenants x 10 metrics.

A month long past that no run has closed is filled with 'period' rollups (the rollup's
output, written directly: events that old cannot be ingested), one row per tenant and
metric, on the enterprise plan (every metric priced; four metrics `bench_m1..4` are added
to the catalog and priced so that there are 10). Then it is timed: closing the month
(`ops.close_billing_period`: the aggregation into invoice lines) and the export in each
format (`jobs/billing_export.export_period`, as the worker, files in a temporary folder).
The aggregation's plan is printed: on Citus it must show a distributed plan whose
tasks run on the workers (no pull of the rollups to the coordinator).

Run from the repository root:  python bench/billing_export.py  [--tenants N] [--help]
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from db import migrate
from db.context import Context, Database
from db.dsn import redacted
from db.local.services import ensure_database
from db.settings import WORKER_ROLE, Settings, get_settings
from jobs.billing_export import FORMATS, export_period

EXTRA_METRICS = ("bench_m1", "bench_m2", "bench_m3", "bench_m4")

# the aggregation of ops.close_billing_period, as it runs there (for EXPLAIN)
AGGREGATION = """
SELECT r.tenant_id, r.metric, pr.plan_id, r.value, pr.included_units,
       GREATEST(r.value - pr.included_units, 0) AS billable,
       core.billing_amount(GREATEST(r.value - pr.included_units, 0), pr.unit_price, pr.overage, pr.package_size)
  FROM core.usage_rollups AS r
  JOIN core.tenants AS t ON t.tenant_id = r.tenant_id
  LEFT JOIN (SELECT DISTINCT ON (c.tenant_id) c.tenant_id, c.to_plan
               FROM core.subscription_changes AS c
              WHERE c.to_plan IS NOT NULL AND c.effective_at < %(end)s
              ORDER BY c.tenant_id, c.effective_at DESC, c.recorded_at DESC) AS pe
         ON pe.tenant_id = r.tenant_id
  JOIN core.prices AS pr ON pr.plan_id = COALESCE(pe.to_plan, t.plan_id) AND pr.metric = r.metric
 WHERE r.granularity = 'period' AND r.bucket_start = %(start)s
"""


def free_month(conn: psycopg.Connection) -> dt.date:
    """A month of the 1990s that no run has closed yet."""
    closed = {row[0] for row in conn.execute("SELECT period FROM core.billing_periods")}
    for year in range(1990, 2000):
        for month in range(1, 13):
            candidate = dt.date(year, month, 1)
            if candidate not in closed:
                return candidate
    raise SystemExit("every month of the 1990s is closed in this database: use a fresh one")


def prepare(owner_url: str, tenants: int, month: dt.date) -> None:
    tag = secrets.token_hex(4)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for metric in EXTRA_METRICS:
            conn.execute(
                "INSERT INTO core.metrics (metric, unit, aggregation, description)"
                " VALUES (%s, 'units', 'sum', 'bench/billing_export') ON CONFLICT DO NOTHING",
                (metric,),
            )
            conn.execute(
                "INSERT INTO core.prices VALUES ('enterprise', %s, 100, 0.01, 'EUR', 'per_unit', 1)"
                " ON CONFLICT DO NOTHING",
                (metric,),
            )
        metrics = [r[0] for r in conn.execute("SELECT metric FROM core.prices WHERE plan_id = 'enterprise'")]
        ids = []
        for n in range(tenants):
            row = conn.execute(
                "SELECT tenant_id FROM core.create_tenant(%s, %s, 'enterprise')", (f"bb-{tag}-{n}", f"Bench {n}")
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        conn.execute(
            "INSERT INTO core.usage_rollups (tenant_id, metric, granularity, bucket_start, value, events)"
            " SELECT t, m, 'period', %s::timestamp AT TIME ZONE 'UTC', 1000 + (random() * 1e6)::bigint, 1"
            " FROM unnest(%s::uuid[]) AS t CROSS JOIN unnest(%s::text[]) AS m",
            (month, ids, metrics),
        )
    print(f"{tenants} tenants x {len(metrics)} metrics of rolled-up usage in {month:%Y-%m}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=1000)
    args = parser.parse_args(argv)
    settings: Settings = get_settings()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    print(f"server: {redacted(owner_url)}")
    with psycopg.connect(owner_url) as conn:
        month = free_month(conn)
    prepare(owner_url, args.tenants, month)

    start = dt.datetime(month.year, month.month, 1, tzinfo=dt.UTC)
    end = (start + dt.timedelta(days=32)).replace(day=1)
    with psycopg.connect(owner_url) as conn:
        plan = conn.execute("EXPLAIN (COSTS OFF) " + AGGREGATION, {"start": start, "end": end}).fetchall()
    print("the aggregation's plan:")
    for (line,) in plan:
        print("   ", line)

    db = Database(settings, dict_rows=True, name="bench-billing-export")
    began = time.perf_counter()
    with db.transaction(Context(actor_type="system", role=WORKER_ROLE)) as conn:
        closed = conn.execute("SELECT * FROM ops.close_billing_period(%s)", (month,)).fetchone()
    print(f"close (aggregate into invoice lines): {(time.perf_counter() - began) * 1000:,.0f} ms, {closed}")
    with tempfile.TemporaryDirectory() as folder:
        for fmt in FORMATS:
            began = time.perf_counter()
            result = export_period(db, month, fmt, Path(folder))
            elapsed = time.perf_counter() - began
            size = (Path(folder) / result.file).stat().st_size
            print(f"export {fmt:<8} {result.rows:>8,} rows {size:>12,} bytes {elapsed * 1000:>9,.0f} ms")
    db.close()


if __name__ == "__main__":
    main()

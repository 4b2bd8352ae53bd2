"""bench/rollup: a rollup run's cost follows the new events, not the history.

The same number of new events (--new) is rolled up by `ops.rollup_usage` (as
`tenantry_worker`) over a small history (--history events, already rolled up), and
again after the history has grown tenfold. The new events of each measurement are
ingested first (`api.ingest_usage`), then one rollup run is timed; --rounds
measurements per phase, medians compared. The events spread over 5 tenants, every
aggregation kind, 6 days of hours and many distinct users, so the history grows the
rollup tables (rollup rows and the distinct values of unique_count metrics) as well as
the raw events.

The phases run one after the other (the history only grows), so load from elsewhere
on the machine can fall on one more than the other: look at the spread.

`ratio` = time of a run over the 10x history / time over the small history; goal <= 1.2.

Run from the repository root:  python bench/rollup.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import statistics
import time
import uuid
from collections.abc import Sequence

import psycopg

from db import migrate
from db.context import Context, Database, transaction
from db.dsn import redacted
from db.local.services import ensure_database
from db.settings import API_ROLE, WORKER_ROLE, Settings, get_settings

METRICS = ("tokens", "compute_minutes", "jobs_run", "active_users", "storage_gb", "peak_storage_gb")
BATCH = 1000


def make_tenants(owner_url: str, count: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
    tag = secrets.token_hex(4)
    tenants: list[tuple[uuid.UUID, uuid.UUID]] = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for n in range(count):
            row = conn.execute(
                "SELECT tenant_id, user_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
                (f"bench-{tag}-{n}@tenantry.test", f"bench-{tag}-{n}", f"Benchmark {tag} #{n}", f"vfy_{tag}_{n}"),
            ).fetchone()
            assert row is not None
            tenants.append((row[0], row[1]))
            # no plan limit on metered usage (sign-up gives the free plan)
            conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenants[-1][0],))
    return tenants


def ingest(db: Database, tenants: list[tuple[uuid.UUID, uuid.UUID]], prefix: str, count: int) -> None:
    """`count` events, spread over the tenants, 6 days of hours, the metrics and many users."""
    now = dt.datetime.now(dt.UTC)
    for start in range(0, count, BATCH):
        tenant_id, user_id = tenants[(start // BATCH) % len(tenants)]
        events = [
            {
                "event_id": f"{prefix}-{n}",
                "metric": METRICS[n % len(METRICS)],
                "quantity": n % 50,
                "occurred_at": (now - dt.timedelta(minutes=(n * 7) % (6 * 24 * 60))).isoformat(),
                "properties": {"user_id": f"user-{n % 20000}"},
            }
            for n in range(start, min(start + BATCH, count))
        ]
        with transaction(db.pool(API_ROLE), Context(tenant_id, user_id, "user")) as conn:
            conn.execute("SELECT * FROM api.ingest_usage(%s, %s::jsonb)", (tenant_id, json.dumps(events)))


def rollup(db: Database, max_events: int) -> tuple[int, float]:
    start = time.perf_counter()
    with transaction(db.pool(WORKER_ROLE), Context(role=WORKER_ROLE)) as conn:
        row = conn.execute("SELECT events FROM ops.rollup_usage(%s)", (max_events,)).fetchone()
    assert row is not None
    return row[0], time.perf_counter() - start


def drain(db: Database) -> None:
    while rollup(db, 50000)[0]:
        pass


def measure(db: Database, tenants, run: str, phase: str, new: int, rounds: int) -> list[float]:
    times = []
    for round_no in range(rounds):
        ingest(db, tenants, f"{run}-{phase}-new{round_no}", new)
        done, seconds = rollup(db, new)
        assert done == new, (done, new)
        times.append(seconds)
    return times


def history_size(owner_url: str) -> tuple[int, int, int]:
    with psycopg.connect(owner_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM core.usage_events), (SELECT count(*) FROM core.usage_rollups),"
            " (SELECT count(*) FROM core.usage_rollup_values)"
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--history", type=int, default=20000, help="events in the small history")
    parser.add_argument("--new", type=int, default=5000, help="new events per timed run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a smoke test: small sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.history, args.new, args.rounds = 3000, 1000, 3
    settings: Settings = get_settings()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    db = Database(settings, name="bench-rollup")
    tenants = make_tenants(owner_url, 5)
    run = secrets.token_hex(4)
    print(f"server: {redacted(owner_url)}")
    drain(db)  # nothing of earlier runs left pending

    ingest(db, tenants, f"{run}-history", args.history)
    drain(db)
    small_size = history_size(owner_url)
    small = measure(db, tenants, run, "small", args.new, args.rounds)

    ingest(db, tenants, f"{run}-more", 9 * args.history)
    drain(db)
    large_size = history_size(owner_url)
    large = measure(db, tenants, run, "large", args.new, args.rounds)
    db.close()

    print(f"{args.new} new events per run, {args.rounds} runs per phase")
    print(f"{'history':<12}{'events':>12}{'rollup rows':>14}{'values':>12}{'ms/run (median)':>18}{'min':>9}{'max':>9}")
    for name, size, times in (("small", small_size, small), ("10x", large_size, large)):
        ms = [t * 1000 for t in times]
        print(
            f"{name:<12}{size[0]:>12,}{size[1]:>14,}{size[2]:>12,}{statistics.median(ms):>18.1f}"
            f"{min(ms):>9.1f}{max(ms):>9.1f}"
        )
    ratio = statistics.median(large) / statistics.median(small)
    print(f"rolled-up events/s (10x history): {args.new / statistics.median(large):,.0f}; goal ratio <= 1.2")
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()

"""bench/usage_ingest: events/s of the SQL batch ingest against a raw COPY.

Two sides store the same events, in the same run, interleaved:

* ingest   - `api.ingest_usage(tenant, <1000 events as jsonb>)` as `tenantry_api`, one
             transaction per batch (the context set with SET LOCAL, as the API does): it
             checks every event, claims the ids (de-duplication), stores the events in
             their time partition and queues them for the rollup;
* baseline - `COPY` of the same 1000 events into a bare table of the same shape (no key,
             no index, no RLS, no checks), one transaction per COPY, as the owner.

Both sides get their data pre-serialized (a JSON text, a COPY text), so Python's cost is
out of the figures. Each round runs both sides back to back, the side going first
alternating; figures are medians over rounds. Single-event ingest (one call per event)
is reported beside it, without a baseline.

Goals (issue 11): the batch ingest >= 50k events/s and >= 0.7x the raw COPY's events/s,
i.e. a `ratio` (time per event, ingest / COPY, the bench convention) <= 1.43.

Run from the repository root:  python bench/usage_ingest.py  [--quick] [--help]
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
from db.settings import API_ROLE, Settings, get_settings

BATCH = 1000
METRICS = ("tokens", "compute_minutes", "jobs_run", "active_users", "storage_gb")
BARE_TABLE = "public.bench_usage_copy"


def make_tenant(owner_url: str) -> tuple[uuid.UUID, uuid.UUID]:
    tag = secrets.token_hex(4)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT tenant_id, user_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
            (f"bench-{tag}@tenantry.test", f"bench-{tag}", f"Benchmark {tag}", f"vfy_bench_{tag}"),
        ).fetchone()
        assert row is not None
        tenant_id, user_id = row
        conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenant_id,))
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {BARE_TABLE} (tenant_id uuid, event_id text, metric text, quantity numeric,"
            " occurred_at timestamptz, properties jsonb, ingested_at timestamptz DEFAULT now())"
        )
    return tenant_id, user_id


def events(prefix: str, count: int) -> list[dict]:
    now = dt.datetime.now(dt.UTC)
    return [
        {
            "event_id": f"{prefix}-{n}",
            "metric": METRICS[n % len(METRICS)],
            "quantity": n % 97,
            "occurred_at": (now - dt.timedelta(seconds=n % 86400)).isoformat(),
            "properties": {"user_id": f"user-{n % 5000}", "region": "eu"},
        }
        for n in range(count)
    ]


def copy_text(tenant_id: uuid.UUID, batch: list[dict]) -> bytes:
    lines = [
        "\t".join(
            (
                str(tenant_id),
                e["event_id"],
                e["metric"],
                str(e["quantity"]),
                e["occurred_at"],
                json.dumps(e["properties"]),
            )
        )
        for e in batch
    ]
    return ("\n".join(lines) + "\n").encode()


def run_ingest(db: Database, tenant: tuple[uuid.UUID, uuid.UUID], payloads: list[str]) -> float:
    start = time.perf_counter()
    for payload in payloads:
        with transaction(db.pool(API_ROLE), Context(tenant[0], tenant[1], "user")) as conn:
            accepted = conn.execute("SELECT accepted FROM api.ingest_usage(%s, %s::jsonb)", (tenant[0], payload))
            assert accepted.fetchone() != (0,)
    return time.perf_counter() - start


def run_copy(owner_url: str, buffers: list[bytes]) -> float:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        start = time.perf_counter()
        for buffer in buffers:
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    f"COPY {BARE_TABLE} (tenant_id, event_id, metric, quantity, occurred_at, properties) FROM STDIN"
                ) as copy,
            ):
                copy.write(buffer)
        return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=20, help="batches of 1000 events per side and round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--singles", type=int, default=2000, help="single-event calls, once")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 3 rounds of 3 batches")
    args = parser.parse_args(argv)
    if args.quick:
        args.batches, args.rounds, args.singles = 3, 3, 200
    settings: Settings = get_settings()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    db = Database(settings, name="bench-usage")
    tenant = make_tenant(owner_url)
    run = secrets.token_hex(4)
    print(f"server: {redacted(owner_url)}")
    print(f"{args.rounds} rounds x {args.batches} batches x {BATCH} events per side")

    ingest_rates, copy_rates, ratios = [], [], []
    for round_no in range(args.rounds):
        batches = [events(f"{run}-{round_no}-{b}", BATCH) for b in range(args.batches)]
        payloads = [json.dumps(batch) for batch in batches]
        buffers = [copy_text(tenant[0], batch) for batch in batches]
        total = args.batches * BATCH
        if round_no % 2 == 0:
            ingest_s, copy_s = run_ingest(db, tenant, payloads), run_copy(owner_url, buffers)
        else:
            copy_s, ingest_s = run_copy(owner_url, buffers), run_ingest(db, tenant, payloads)
        ingest_rates.append(total / ingest_s)
        copy_rates.append(total / copy_s)
        ratios.append(ingest_s / copy_s)

    singles = events(f"{run}-single", args.singles)
    start = time.perf_counter()
    for single in singles:
        with transaction(db.pool(API_ROLE), Context(tenant[0], tenant[1], "user")) as conn:
            conn.execute("SELECT accepted FROM api.ingest_usage(%s, %s::jsonb)", (tenant[0], json.dumps([single])))
    single_rate = args.singles / (time.perf_counter() - start)
    db.close()

    ingest_rate, copy_rate, ratio = (statistics.median(x) for x in (ingest_rates, copy_rates, ratios))
    print(f"{'side':<28}{'events/s (median)':>20}{'min':>12}{'max':>12}")
    low, high = min(ingest_rates), max(ingest_rates)
    print(f"{'SQL batch ingest (1000/call)':<28}{ingest_rate:>20,.0f}{low:>12,.0f}{high:>12,.0f}")
    print(f"{'raw COPY, bare table':<28}{copy_rate:>20,.0f}{min(copy_rates):>12,.0f}{max(copy_rates):>12,.0f}")
    print(f"{'SQL single-event ingest':<28}{single_rate:>20,.0f}")
    print(
        f"batch ingest / COPY throughput: {ingest_rate / copy_rate:.2f}x (goal >= 0.7x); "
        f"batch ingest {ingest_rate:,.0f} events/s (goal >= 50,000)"
    )
    print(f"ratio spread over rounds: {min(ratios):.3f} .. {max(ratios):.3f}")
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()

"""bench/citus_online: API load while a tenant is isolated and moved and the cluster rebalances.

Needs a Citus coordinator in TENANTRY_DATABASE_URL (e.g. `tenantry citus dev-cluster up
--workers 3`). It migrates it, starts its own redis-server and API server (`tenantry
serve`, as bench/api_throughput.py does), signs up one tenant over HTTP and seeds a
project with tasks. Then client threads call the API at a steady pace - writers
`POST /v1/tasks`, readers `GET /v1/projects/{id}` - through these phases:

  before     `--seconds` of load, nothing else happening;
  isolate    isolate-tenant: the split (block_writes: docs/citus.md, fact 31; the API
             runs again the requests it aborts, api/retry.py);
  moves      move-tenant to another worker and back (logical replication, fact 32);
  rebalance  a rebalance of the whole cluster (citus_rebalance_start, waited for);
  after      `--seconds` of load again.

Per phase: requests, failed requests (anything but 2xx, or no answer), p50 and p99
latency as the client saw it. Then how many requests the API ran again (its /metrics),
and lost acknowledged writes: every task the API answered 201 for must be in core.tasks,
and core.tasks must hold no more than seeded + acknowledged + failed-but-maybe-committed
(a 5xx or timeout may have committed). As every benchmark here, the last line is
`ratio <x>`: p50 during the operations / p50 before.

Run from the repository root:  python bench/citus_online.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg

from api.server import spawn
from db import citus_ops, migrate
from db.dsn import redacted, role_environment
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from db.local.services import ensure_database
from db.settings import Settings, get_settings

REPRODUCE = "python bench/citus_online.py"
PLAN = "enterprise"  # 6000 requests a minute: the paced load stays below it


@contextlib.contextmanager
def services(owner_url: str, state_dir: Path, jwt_secret: str) -> Iterator[str]:
    """Our own redis-server and API server (`tenantry serve`, 2 workers) on free ports."""
    redis = LocalRedis(state_dir / "redis", free_port())
    redis.start()
    try:
        env = role_environment(Settings(database_url=owner_url)) | {
            "TENANTRY_DATABASE_URL": owner_url,
            "TENANTRY_REDIS_URL": redis.url(),
            "TENANTRY_JWT_SECRET": jwt_secret,
            "TENANTRY_STATE_DIR": str(state_dir),
            "TENANTRY_ACCESS_TOKEN_SECONDS": "86400",
        }
        process, url = spawn(env, free_port(), state_dir / "api.log", workers=2, threads=8, timeout=60)
        try:
            yield url
        finally:
            process.terminate()
            process.wait(timeout=15)
    finally:
        redis.stop()


def sign_up(api_url: str, owner_url: str, run_tag: str) -> tuple[str, str]:
    """A tenant signed up over HTTP, moved to PLAN by the owner: (tenant id, access token)."""
    resp = httpx.post(
        f"{api_url}/v1/signup",
        timeout=30,
        json={
            "email": f"bench-{run_tag}@tenantry.test",
            "name": "Benchmark owner",
            "password": "bench-password-" + run_tag,
            "tenant_slug": f"bench-{run_tag}",
            "tenant_name": f"Benchmark {run_tag}",
        },
    )
    if resp.status_code != 201:
        sys.exit(f"sign-up failed ({resp.status_code}): {resp.text}")
    body = resp.json()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (PLAN, body["tenant_id"]))
    return body["tenant_id"], body["access_token"]


@dataclass
class Sample:
    phase: str
    kind: str  # write, read
    seconds: float
    status: int  # 0: no answer


@dataclass
class Load:
    """What the client threads did; the main thread moves `phase` along."""

    phase: str = "warm-up"
    samples: list[Sample] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(load: Load, api_url: str, token: str, project_id: str, kind: str, rate: float) -> None:
    """One thread: `rate` requests a second of one kind until told to stop."""
    headers = {"Authorization": f"Bearer {token}"}
    period, n = 1.0 / rate, 0
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
        next_at = time.monotonic()
        while not load.stop.is_set():
            n += 1
            phase, start, status, task_id = load.phase, time.perf_counter(), 0, None
            try:
                if kind == "write":
                    resp = http.post("/v1/tasks", json={"project_id": project_id, "title": f"online {n}"})
                    if resp.status_code == 201:
                        task_id = resp.json()["task_id"]
                else:
                    resp = http.get(f"/v1/projects/{project_id}")
                status = resp.status_code
            except httpx.HTTPError:
                pass
            elapsed = time.perf_counter() - start
            with load.lock:
                load.samples.append(Sample(phase, kind, elapsed, status))
                if task_id:
                    load.acked.append(task_id)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))


#: the API's counters of requests run again (api/retry.py)
RETRY_METRICS = ("tenantry_transient_retries_total", "tenantry_transient_retries_exhausted_total")


def api_metric(api_url: str, name: str) -> float:
    """A counter from the API's /metrics (loopback clients need no token), NaN if absent."""
    for line in httpx.get(f"{api_url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def timed(label: str, step: Callable[[], object], log: list[tuple[str, float, str]]) -> None:
    start = time.perf_counter()
    outcome = step()
    log.append((label, time.perf_counter() - start, str(outcome) if outcome is not None else ""))
    print(f"  {label}: {log[-1][1]:.1f} s {log[-1][2]}", flush=True)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15, help="load before and after the operations")
    parser.add_argument("--writers", type=int, default=2, help="client threads doing POST /v1/tasks")
    parser.add_argument("--readers", type=int, default=2, help="client threads doing GET /v1/projects/{id}")
    parser.add_argument("--rate", type=float, default=10, help="requests a second per thread")
    parser.add_argument("--seed-tasks", type=int, default=300, help="tasks the tenant has before the load")
    parser.add_argument("--no-rebalance", action="store_true", help="skip the cluster-wide rebalance")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 3 s phases, no rebalance")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.no_rebalance = 3, True
    print(f"reproduce: {' '.join([REPRODUCE, *(sys.argv[1:] if argv is None else argv)])}")

    settings = get_settings()
    owner_url = ensure_database(settings)
    with psycopg.connect(owner_url, autocommit=True) as conn:
        try:
            version = citus_ops.require_citus(conn, owner_url)
        except citus_ops.CitusRequired as exc:
            sys.exit(str(exc))
    migrate.migrate(owner_url, settings=settings)
    run_tag = secrets.token_hex(4)
    jwt_secret = secrets.token_urlsafe(48)
    load = Load()
    operations: list[tuple[str, float, str]] = []
    with contextlib.ExitStack() as stack:
        state_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tenantry-bench-")))
        api_url = stack.enter_context(services(owner_url, state_dir, jwt_secret))
        tenant_id, token = sign_up(api_url, owner_url, run_tag)
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=api_url, headers=headers, timeout=30) as http:
            created = http.post("/v1/projects", json={"name": f"online {run_tag}"})
            if created.status_code != 201:
                sys.exit(f"cannot create a project ({created.status_code}): {created.text}")
            project = created.json()["project_id"]
            for n in range(args.seed_tasks):
                http.post("/v1/tasks", json={"project_id": project, "title": f"seed {n}"}).raise_for_status()
        citus = citus_ops.connect(owner_url)
        stack.callback(citus.close)
        tenant = citus_ops.resolve_tenant(citus, tenant_id)
        home = citus_ops.tenant_placement(citus, tenant)
        others = [n for n in citus_ops.nodes(citus) if not n.is_coordinator and n.should_have_shards]
        target = next((n for n in others if n.node_id != home.node.node_id), None)
        if target is None:
            sys.exit("needs at least 2 workers that hold shards")
        print(f"database: {redacted(owner_url)} - Citus {version}, {len(others)} workers")
        print(
            f"tenant bench-{run_tag}: {args.seed_tasks} tasks, on {home.node.name}; load: {args.writers} writers "
            f"(POST /v1/tasks) + {args.readers} readers (GET /v1/projects/{{id}}) at {args.rate}/s each"
        )

        threads = [
            threading.Thread(target=client, args=(load, api_url, token, project, kind, args.rate), daemon=True)
            for kind in ["write"] * args.writers + ["read"] * args.readers
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            load.phase = "before"
            time.sleep(args.seconds)
            load.phase = "isolate"
            timed(
                "isolate-tenant (split, block_writes)",
                lambda: citus_ops.isolate_tenant(citus, tenant).node.name,
                operations,
            )
            load.phase = "moves"
            timed(
                f"move-tenant to {target.name}",
                lambda: citus_ops.move_tenant(citus, tenant, target)[1].node.name,
                operations,
            )
            timed(
                f"move-tenant back to {home.node.name}",
                lambda: citus_ops.move_tenant(citus, tenant, home.node)[1].node.name,
                operations,
            )
            if not args.no_rebalance:
                load.phase = "rebalance"

                def rebalance() -> str:
                    job = citus_ops.rebalance_start(citus)
                    if job is None:
                        return "nothing to move"
                    done = citus_ops.wait_rebalance(citus, poll_seconds=1)
                    return f"job {job} {done.state if done else '?'}, {done.done if done else 0} moves"

                timed("rebalance (background job, waited for)", rebalance, operations)
            load.phase = "after"
            time.sleep(args.seconds)
        finally:
            load.stop.set()
            for thread in threads:
                thread.join(timeout=60)
        retried = {name: api_metric(api_url, name) for name in RETRY_METRICS}

        with psycopg.connect(owner_url) as db:
            stored = {
                str(row[0]) for row in db.execute("SELECT task_id FROM core.tasks WHERE project_id = %s", (project,))
            }

    print()
    print(f"{'phase':<10} {'kind':<6} {'requests':>9} {'failed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    p50s: dict[str, float] = {}
    during = ("isolate", "moves", "rebalance")
    for phase in ("before", *during, "during", "after"):
        for kind in ("write", "read", "all"):
            rows = [
                s
                for s in load.samples
                if (s.phase == phase or (phase == "during" and s.phase in during)) and (kind == "all" or s.kind == kind)
            ]
            if not rows:
                continue
            ok = [s.seconds * 1000 for s in rows if 200 <= s.status < 300]
            failed = len(rows) - len(ok)
            if kind == "all":
                p50s[phase] = percentile(ok, 50)
            print(
                f"{phase:<10} {kind:<6} {len(rows):>9} {failed:>7} {percentile(ok, 50):>8.1f} "
                f"{percentile(ok, 99):>8.1f} {max(ok, default=float('nan')):>8.1f}"
            )
    failures = [s for s in load.samples if not 200 <= s.status < 300]
    statuses = statistics.multimode([s.status for s in failures]) if failures else []
    lost = [t for t in load.acked if t not in stored]
    unacked_writes = sum(1 for s in failures if s.kind == "write")
    extra = len(stored) - args.seed_tasks - len(load.acked)
    print(f"operations: {', '.join(f'{label} {secs:.1f} s' for label, secs, _ in operations)}")
    print(f"failed requests: {len(failures)}{f' (most often status {statuses})' if failures else ''}")
    print(
        f"run again by the API after a transient failure: {retried[RETRY_METRICS[0]]:.0f} attempts; "
        f"answered the failure after the retry budget: {retried[RETRY_METRICS[1]]:.0f}"
    )
    print(f"acknowledged writes: {len(load.acked)}, lost: {len(lost)}; rows beyond seed + acknowledged: {extra}")
    if extra < 0 or extra > unacked_writes:
        print(f"  inconsistent: {extra} extra rows for {unacked_writes} unacknowledged writes")
    print(f"ratio {p50s['during'] / p50s['before']:.3f}")


if __name__ == "__main__":
    main()

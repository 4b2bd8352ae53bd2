"""bench/quota_overhead: what the quota triggers cost an insert.

The same pgbench script (bench/quota_insert.sql: one task insert as `tenantry_api`, in
the application's transaction shape) runs in two states of the same database, in
interleaved runs:

* quota    - as migrated: the row trigger core.count_task_quota moves the tenant's
             `tasks` and `storage_bytes` counters with one conditional UPDATE;
* baseline - the same, with only that trigger disabled (ALTER TABLE core.tasks DISABLE
             TRIGGER count_task_quota, as the owner); every other trigger, RLS and the
             foreign keys still run.

Runs alternate (quota, baseline, baseline, quota, ...), so drift and load from elsewhere
fall on both alike; per round the two throughputs are paired. The baseline's inserts are
not counted, so the run ends by re-enabling the trigger and reconciling the tenant
(ops.reconcile_quotas): the drift it repairs must be exactly the baseline's inserts.

Last line, as every benchmark here: `ratio <x>`, x = time per insert with the quota
trigger / time without (cost; the issue's goal, throughput >= 0.87 of the baseline, is
x <= 1.15). The throughput ratio is printed above it.

Run from the repository root:  python bench/quota_overhead.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import re
import secrets
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import psycopg

from db import migrate
from db.dsn import redacted, role_url
from db.local import embedded
from db.local.services import ensure_database
from db.settings import API_ROLE, get_settings

SCRIPT = Path(__file__).with_name("quota_insert.sql")
TARGET_THROUGHPUT = 0.87
TRIGGER = "count_task_quota"
_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_DONE = re.compile(r"number of transactions actually processed: (\d+)")


def pgbench() -> str:
    """The embedded server's pgbench, else the one on PATH."""
    try:
        local = embedded.bin_dir() / "pgbench"
        if local.exists():
            return str(local)
    except Exception:  # no embedded install: fall back to PATH
        pass
    found = shutil.which("pgbench")
    if found is None:
        sys.exit("pgbench not found (install PostgreSQL's client tools)")
    return found


def set_up(owner_url: str, clients: int) -> list[tuple[str, str]]:
    """A new tenant per client on the enterprise plan (no task limit: nothing is refused),
    each with a project: (tenant_id, project_id) per client."""
    made = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for n in range(clients):
            tag = f"{secrets.token_hex(4)}-{n}"
            row = conn.execute(
                "SELECT tenant_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
                (f"bench-{tag}@tenantry.test", f"bench-{tag}", f"Benchmark {tag}", f"vfy_bench_{tag}"),
            ).fetchone()
            assert row is not None
            tenant = row[0]
            conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenant,))
            row = conn.execute(
                "INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'benchmark') RETURNING project_id", (tenant,)
            ).fetchone()
            assert row is not None
            project = row[0]
            made.append((str(tenant), str(project)))
    return made


def run(binary: str, url: str, targets: Sequence[tuple[str, str]], seconds: int) -> tuple[float, int]:
    """One run: a pgbench process per target tenant, at once (one client each: a tenant's
    counter row is one lock, so clients of one tenant would measure that queue, not the
    trigger). Returns (total transactions per second, transactions)."""
    processes = [
        subprocess.Popen(
            [
                binary,
                "-n",
                "-f",
                str(SCRIPT),
                "-T",
                str(seconds),
                "-c",
                "1",
                "-D",
                f"tenant={tenant}",
                "-D",
                f"project={project}",
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tenant, project in targets
    ]
    total_tps, total = 0.0, 0
    for process in processes:
        stdout, stderr = process.communicate()
        tps, done = _TPS.search(stdout), _DONE.search(stdout)
        if process.returncode != 0 or tps is None or done is None:
            sys.exit(f"pgbench failed ({process.returncode}):\n{stdout}\n{stderr}")
        total_tps += float(tps.group(1))
        total += int(done.group(1))
    return total_tps, total


def set_trigger(owner_url: str, enabled: bool) -> None:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE core.tasks {'ENABLE' if enabled else 'DISABLE'} TRIGGER {TRIGGER}")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 rounds of 2 s")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 6)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 4)")
    parser.add_argument(
        "--clients", type=int, default=2, help="tenants inserting at once, one client each (default 2: one per core)"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    seconds = args.seconds or (2 if args.quick else 4)

    settings = get_settings()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    targets = set_up(owner_url, args.clients)
    api_url = role_url(settings, API_ROLE)
    binary = pgbench()
    print(f"server: {redacted(owner_url)}; pgbench: {binary}; script: bench/{SCRIPT.name}")
    print(
        f"{rounds} rounds x 2 runs of {seconds} s, {args.clients} tenants x 1 client, as {API_ROLE}; "
        f"baseline: trigger {TRIGGER} disabled, everything else as is"
    )

    quota: list[float] = []
    baseline: list[float] = []
    uncounted = 0
    try:
        for n in range(rounds + 1):  # round 0 warms up
            order = (True, False) if n % 2 == 0 else (False, True)
            for with_quota in order:
                set_trigger(owner_url, with_quota)
                tps, done = run(binary, api_url, targets, seconds)
                if not with_quota:
                    uncounted += done
                if n > 0:
                    (quota if with_quota else baseline).append(tps)
    finally:
        set_trigger(owner_url, True)

    drift = 0
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for tenant, _ in targets:
            fixed = conn.execute(
                "SELECT was, now FROM ops.reconcile_quotas(%s) WHERE resource = 'tasks'", (tenant,)
            ).fetchone()
            drift += int(fixed[1] - fixed[0]) if fixed else 0
    if drift != uncounted:
        sys.exit(
            f"the counters drifted by {drift}, the baseline inserted {uncounted}: the sides are not what they seem"
        )

    pairs = [q / b for q, b in zip(quota, baseline, strict=True)]
    print()
    print(f"{'side':<9} {'median tps':>10} {'min':>8} {'max':>8}")
    for name, values in (("quota", quota), ("baseline", baseline)):
        print(f"{name:<9} {statistics.median(values):>10.0f} {min(values):>8.0f} {max(values):>8.0f}")
    print(f"per-round throughput ratio quota/baseline: {', '.join(f'{p:.3f}' for p in pairs)}")
    throughput = statistics.median(pairs)
    print(f"reconciled after the run: the baseline's {uncounted} uncounted inserts, repaired")
    verdict = "within" if throughput >= TARGET_THROUGHPUT else "BELOW"
    print(
        f"throughput ratio {throughput:.3f} (median; spread {min(pairs):.3f}-{max(pairs):.3f}): "
        f"{verdict} the goal >= {TARGET_THROUGHPUT}"
    )
    print(f"ratio {1 / throughput:.3f}")


if __name__ == "__main__":
    main()

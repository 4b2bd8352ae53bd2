"""bench/audit_overhead: what the audit (and outbox) triggers cost tenant-scoped writes.

The same pgbench script (bench/audit_write.sql: a task insert and an update of the
client's own task as `tenantry_api`, in the application's transaction shape) runs in
two states of the same database, in interleaved runs:

* audited  - as migrated: core.audit_row_change writes an audit row per change (and the
             outbox triggers of core.tasks, when the webhooks feature has them, an event);
* baseline - the same, with those triggers of core.tasks disabled (every trigger whose
             name matches --triggers, default `audit|emit_`, as the owner); the other
             triggers (quotas, timestamps, tenant guards), RLS and the keys still run.

Runs alternate (audited, baseline, baseline, audited, ...), so drift and load from
elsewhere fall on both alike; per round the two throughputs are paired, and the median
and spread of the pairs are printed. Goal (issue 13): audited writes >= 0.6x the
unaudited rate. Last line, as every benchmark here: `ratio <x>`, x = time per write
transaction with the triggers / without.

Run from the repository root:  python bench/audit_overhead.py  [--quick] [--help]
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

SCRIPT = Path(__file__).with_name("audit_write.sql")
TARGET_THROUGHPUT = 0.6
_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)


def run(binary: str, url: str, targets: Sequence[tuple[str, str, str]], seconds: int) -> float:
    """One run: a pgbench process per tenant, at once, one client each (a tenant's quota
    counter row is one lock: clients of one tenant would measure that queue). Returns the
    total transactions per second."""
    processes = [
        subprocess.Popen(
            [
                *(binary, "-n", "-f", str(SCRIPT), "-T", str(seconds), "-c", "1"),
                *("-D", f"tenant={tenant}", "-D", f"project={project}", "-D", f"task={task}", url),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tenant, project, task in targets
    ]
    total = 0.0
    for process in processes:
        stdout, stderr = process.communicate()
        tps = _TPS.search(stdout)
        if process.returncode != 0 or tps is None:
            sys.exit(f"pgbench failed ({process.returncode}):\n{stdout}\n{stderr}")
        total += float(tps.group(1))
    return total


def pgbench() -> str:
    """The embedded server's pgbench, else the one on PATH (as bench/quota_overhead.py)."""
    local = embedded.bin_dir() / "pgbench"
    found = str(local) if local.exists() else shutil.which("pgbench")
    if found is None:
        sys.exit("pgbench not found (install PostgreSQL's client tools)")
    return found


def make_tenants(owner_url: str, clients: int) -> list[tuple[str, str]]:
    """A new enterprise tenant per client (no task limit), each with a project."""
    made = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for n in range(clients):
            tag = f"{secrets.token_hex(4)}-{n}"
            row = conn.execute(
                "SELECT tenant_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
                (f"bench-{tag}@tenantry.test", f"bench-{tag}", f"Benchmark {tag}", f"vfy_bench_{tag}"),
            ).fetchone()
            assert row is not None
            conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (row[0],))
            project = conn.execute(
                "INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'benchmark') RETURNING project_id", (row[0],)
            ).fetchone()
            assert project is not None
            made.append((str(row[0]), str(project[0])))
    return made


def triggers(owner_url: str, pattern: str) -> list[str]:
    """The triggers of core.tasks the audited side has and the baseline lacks."""
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'core.tasks'::regclass AND NOT tgisinternal"
            " AND tgname ~ %s ORDER BY 1",
            (pattern,),
        ).fetchall()
    return [row[0] for row in rows]


def set_triggers(owner_url: str, names: Sequence[str], enabled: bool) -> None:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for name in names:
            conn.execute(f'ALTER TABLE core.tasks {"ENABLE" if enabled else "DISABLE"} TRIGGER "{name}"')


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 2 rounds of 2 s")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 6)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 4)")
    parser.add_argument("--clients", type=int, default=2, help="tenants writing at once, one client each (default 2)")
    parser.add_argument("--triggers", default="audit|emit_", help="regex of the trigger names the baseline disables")
    args = parser.parse_args(argv)
    rounds = args.rounds or (2 if args.quick else 6)
    seconds = args.seconds or (2 if args.quick else 4)

    settings = get_settings()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    names = triggers(owner_url, args.triggers)
    if not any(re.search("audit", name) for name in names):
        sys.exit("core.tasks has no audit trigger: migrate the database first")
    made = make_tenants(owner_url, args.clients)
    targets = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for tenant, project in made:
            row = conn.execute(
                "INSERT INTO core.tasks (tenant_id, project_id, title) VALUES (%s, %s, 'updated by the benchmark')"
                " RETURNING task_id",
                (tenant, project),
            ).fetchone()
            assert row is not None
            targets.append((tenant, project, str(row[0])))
    api_url = role_url(settings, API_ROLE)
    binary = pgbench()
    print(f"server: {redacted(owner_url)}; pgbench: {binary}; script: bench/{SCRIPT.name}")
    print(
        f"{rounds} rounds x 2 runs of {seconds} s, {args.clients} tenants x 1 client, as {API_ROLE}; "
        f"baseline: triggers {', '.join(names)} of core.tasks disabled, everything else as is"
    )

    audited: list[float] = []
    baseline: list[float] = []
    try:
        for n in range(rounds + 1):  # round 0 warms up
            order = (True, False) if n % 2 == 0 else (False, True)
            for with_triggers in order:
                set_triggers(owner_url, names, with_triggers)
                tps = run(binary, api_url, targets, seconds)
                if n > 0:
                    (audited if with_triggers else baseline).append(tps)
    finally:
        set_triggers(owner_url, names, True)

    pairs = [a / b for a, b in zip(audited, baseline, strict=True)]
    print()
    print(f"{'side':<9} {'median tps':>10} {'min':>8} {'max':>8}")
    for name, values in (("audited", audited), ("baseline", baseline)):
        print(f"{name:<9} {statistics.median(values):>10.0f} {min(values):>8.0f} {max(values):>8.0f}")
    print(f"per-round throughput ratio audited/baseline: {', '.join(f'{p:.3f}' for p in pairs)}")
    throughput = statistics.median(pairs)
    verdict = "within" if throughput >= TARGET_THROUGHPUT else "BELOW"
    print(
        f"throughput ratio {throughput:.3f} (median; spread {min(pairs):.3f}-{max(pairs):.3f}): "
        f"{verdict} the goal >= {TARGET_THROUGHPUT}"
    )
    print(f"ratio {1 / throughput:.3f}")


if __name__ == "__main__":
    main()

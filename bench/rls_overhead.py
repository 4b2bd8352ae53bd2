"""bench/rls_overhead: what row-level security costs a tenant-scoped read and write.

Two sides run the same statements, in the same run, against the same rows:

* RLS      - the `tenantry_api` login role, to which the core.projects policies apply,
             so PostgreSQL adds `tenant_id = core.current_tenant_id()` to every query;
* baseline - `tenantry_owner`, which owns the tables and has BYPASSRLS but is no
             superuser (privilege checks run as on the RLS side), so the explicit
             `tenant_id = %s` filter of the statement is the only scoping.

The SQL text is identical on both sides. One operation is one transaction of the shape
the application uses (db.context.transaction): BEGIN; SET LOCAL app.tenant_id;
the statement; COMMIT. The baseline opens the same transaction and sets the same context
(which nothing on its side reads), so the only difference between the sides is RLS.
(Until issue 10 the baseline was the server's superuser, for whom PostgreSQL skips
privilege checks, which counted them as a cost of RLS.)

Every operation runs on both sides back to back, the side going first alternating (A B,
B A, A B, ...), so drift and load from elsewhere on the machine fall equally on both and
both sides run exactly the same operations in the same order. Per round and kind the two
sides' summed times are paired; figures are medians over rounds.

As every benchmark here, the last line is `ratio <x>`: x = time per operation with RLS
divided by time per operation without (>= 1 means RLS is slower).

Run from the repository root:  python bench/rls_overhead.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import gc
import random
import secrets
import shlex
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from db import migrate
from db.context import Connection, Context, Database, configure_connection, transaction
from db.dsn import redacted
from db.local.services import ensure_database
from db.settings import API_ROLE, OWNER_ROLE, Settings, get_settings

REPRODUCE = "python bench/rls_overhead.py"
#: The issue's goal for the overall ratio (reported, not enforced).
TARGET_RATIO = 1.05
PAGE_SIZE = 20

# The measured statements: the same text on both sides. Reads fetch every row they
# return, so both sides also pay for transferring and decoding the result.
POINT_READ = (
    "SELECT project_id, name, description, created_at, updated_at"
    " FROM core.projects WHERE tenant_id = %s AND project_id = %s"
)
PAGE_READ = (
    "SELECT project_id, name, created_at"
    " FROM core.projects WHERE tenant_id = %s"
    f" ORDER BY created_at, project_id LIMIT {PAGE_SIZE}"
)
WRITE = "UPDATE core.projects SET description = %s WHERE tenant_id = %s AND project_id = %s"

Target = tuple[uuid.UUID, uuid.UUID]  # (tenant_id, project_id)
Params = tuple[object, ...]


@dataclass(frozen=True)
class Kind:
    """One kind of measured operation."""

    name: str
    statement: str
    rows_per_op: int  # rows each operation must return (reads) or change (writes)
    params: Callable[[Target, int], Params]  # (target, serial number of the op) -> parameters


def kinds_for(projects: int) -> list[Kind]:
    return [
        Kind("point read", POINT_READ, 1, lambda target, _: target),
        Kind("page read", PAGE_READ, min(PAGE_SIZE, projects), lambda target, _: target[:1]),
        Kind("write", WRITE, 1, lambda target, serial: (f"bench write {serial}", *target)),
    ]


@dataclass(frozen=True)
class Side:
    name: str
    pool: ConnectionPool[Any]


@dataclass
class Block:
    """Timing of one side running one kind's operations in one round."""

    total: float  # seconds for all operations, transaction included
    statements: float  # seconds inside the statements alone (execute + fetch)


@dataclass
class Results:
    """Blocks per (kind, side), in round order."""

    blocks: dict[tuple[str, str], list[Block]] = field(default_factory=dict)

    def add(self, kind: str, side: str, block: Block) -> None:
        self.blocks.setdefault((kind, side), []).append(block)


@dataclass(frozen=True)
class Config:
    tenants: int
    projects: int
    ops: int
    rounds: int
    seed: int


# ---------------------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------------------


def create_data(owner_url: str, tenants: int, projects: int) -> list[tuple[uuid.UUID, list[uuid.UUID]]]:
    """Create `tenants` new tenants with `projects` projects each; return their ids.

    Slugs are bench-<random>-<n>, so runs never collide; nothing is cleaned up. The
    'enterprise' plan has no project limit. Projects get distinct created_at values, as
    real ones would, so the page read walks the (tenant_id, created_at, project_id) index.
    """
    run_tag = secrets.token_hex(4)
    data: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for n in range(tenants):
            # signed up like any tenant (its owner never logs in: a placeholder hash, and
            # its verification token is never used), then moved to the enterprise plan
            # (sign-up always gives the free plan)
            tenant_id = conn.execute(
                "SELECT tenant_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
                (
                    f"bench-{run_tag}-{n}@tenantry.test",
                    f"bench-{run_tag}-{n}",
                    f"Benchmark {run_tag} #{n}",
                    f"vfy_bench_{run_tag}_{n}",
                ),
            ).fetchone()[0]
            conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenant_id,))
            project_ids = [
                row[0]
                for row in conn.execute(
                    "INSERT INTO core.projects (tenant_id, name, description, created_at, updated_at)"
                    " SELECT %(t)s, 'project ' || g, 'benchmark project',"
                    "        now() - g * interval '1 minute', now() - g * interval '1 minute'"
                    "   FROM generate_series(1, %(n)s) AS g"
                    " RETURNING project_id",
                    {"t": tenant_id, "n": projects},
                ).fetchall()
            ]
            data.append((tenant_id, project_ids))
        conn.execute("ANALYZE core.tenants")
        conn.execute("ANALYZE core.projects")
    return data


def check_sides(rls: Side, baseline: Side, tenant_id: uuid.UUID, projects: int) -> str:
    """Refuse to measure unless RLS applies to one side and not to the other.

    Returns the baseline's role, described for the output.
    """
    # two statements: on Citus a subquery beside an aggregate over a distributed table
    # cannot be pushed down
    probe = (
        "SELECT row_security_active('core.projects'), current_user,"
        " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    )
    count = "SELECT count(*) FROM core.projects"
    with transaction(rls.pool, Context(tenant_id)) as conn:
        active, user, _ = conn.execute(probe).fetchone()
        visible = conn.execute(count).fetchone()[0]
    if not active or visible != projects:
        sys.exit(f"{rls.name} side ({user}): RLS not in effect (active={active}, rows={visible}); not measuring")
    with transaction(baseline.pool, Context(tenant_id)) as conn:
        active, user, superuser = conn.execute(probe).fetchone()
    if active:
        sys.exit(
            f"{baseline.name} side ({user}): RLS applies to this role; the baseline needs a "
            "superuser or BYPASSRLS owner DSN"
        )
    return f"{user} (superuser: no privilege checks either)" if superuser else f"{user} (BYPASSRLS)"


def describe_server(owner_url: str) -> str:
    with psycopg.connect(owner_url, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
        citus = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
        rows = conn.execute("SELECT count(*) FROM core.projects").fetchone()[0]
    return f"PostgreSQL {version}, {'Citus ' + citus[0] if citus else 'no Citus'}; core.projects holds {rows} rows"


# ---------------------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------------------


def run_paired(
    sides: Sequence[Side], statement: str, ops: Sequence[tuple[uuid.UUID, Params]], flip: bool
) -> tuple[list[Block], list[int]]:
    """Run each operation on every side, back to back; return per side its timing and rows.

    The sides take turns going first (flipped from one operation to the next), so drift
    and any advantage of going second (a row just read or written by the other side)
    fall equally on both.
    """
    clock = time.perf_counter
    totals = [0.0] * len(sides)
    statements = [0.0] * len(sides)
    rows = [0] * len(sides)
    forward = list(enumerate(sides))
    backward = forward[::-1]
    for n, (tenant_id, params) in enumerate(ops):
        for i, side in backward if (n % 2 == 1) != flip else forward:
            started = clock()
            with transaction(side.pool, Context(tenant_id)) as conn:
                begun = clock()
                cur = conn.execute(statement, params)
                rows[i] += len(cur.fetchall()) if cur.description is not None else cur.rowcount
                statements[i] += clock() - begun
            totals[i] += clock() - started
    return [Block(total=t, statements=s) for t, s in zip(totals, statements, strict=True)], rows


def plan_round(
    rng: random.Random, kinds: Sequence[Kind], targets: Sequence[Target], ops: int, serial: int
) -> dict[str, list[tuple[uuid.UUID, Params]]]:
    """The operations of one round, per kind: random targets, shared by both sides."""
    return {
        kind.name: [
            (target[0], kind.params(target, serial + i)) for i, target in enumerate(rng.choices(targets, k=ops))
        ]
        for kind in kinds
    }


def measure(sides: Sequence[Side], kinds: Sequence[Kind], targets: Sequence[Target], config: Config) -> Results:
    """One warm-up round, then `rounds` measured rounds of every kind on every side."""
    rng = random.Random(config.seed)
    results = Results()
    gc.collect()
    gc.disable()  # no collector pauses inside timed code
    try:
        for round_no in range(config.rounds + 1):  # round 0 warms up caches and prepared statements
            plan = plan_round(rng, kinds, targets, config.ops, serial=round_no * config.ops)
            for kind in kinds:
                blocks, rows = run_paired(sides, kind.statement, plan[kind.name], flip=round_no % 2 == 1)
                for side, block, seen in zip(sides, blocks, rows, strict=True):
                    if seen != kind.rows_per_op * config.ops:
                        sys.exit(
                            f"{side.name} {kind.name}: {seen} rows for {config.ops} operations, "
                            f"expected {kind.rows_per_op} each; not a fair comparison"
                        )
                    if round_no > 0:
                        results.add(kind.name, side.name, block)
    finally:
        gc.enable()
    return results


# ---------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------


def report(results: Results, kinds: Sequence[Kind], rls: str, baseline: str, ops: int) -> float:
    """Print the table; return the overall ratio (median over rounds of the paired ratio)."""

    def us_per_op(blocks: list[Block], attr: str, n_ops: int) -> float:
        return statistics.median(getattr(b, attr) for b in blocks) / n_ops * 1e6

    def paired_ratio(a: list[Block], b: list[Block], attr: str) -> float:
        return statistics.median(getattr(x, attr) / getattr(y, attr) for x, y in zip(a, b, strict=True))

    def summed(side: str) -> list[Block]:
        """Per round, one block summing every kind (each has `ops` operations)."""
        per_kind = [results.blocks[(kind.name, side)] for kind in kinds]
        return [
            Block(total=sum(b.total for b in blocks), statements=sum(b.statements for b in blocks))
            for blocks in zip(*per_kind, strict=True)
        ]

    lines = [
        (kind.name, results.blocks[(kind.name, rls)], results.blocks[(kind.name, baseline)], ops) for kind in kinds
    ]
    everything = (summed(rls), summed(baseline))
    lines.append(("all", *everything, ops * len(kinds)))

    header = (
        f"{'operation':<11} {'RLS us/op':>10} {'base us/op':>10} {'RLS op/s':>9} {'base op/s':>9} "
        f"{'ratio':>6}   {'stmt RLS us':>11} {'stmt base us':>12} {'stmt ratio':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, a, b, n_ops in lines:
        a_us, b_us = us_per_op(a, "total", n_ops), us_per_op(b, "total", n_ops)
        print(
            f"{name:<11} {a_us:>10.1f} {b_us:>10.1f} {1e6 / a_us:>9.0f} {1e6 / b_us:>9.0f} "
            f"{paired_ratio(a, b, 'total'):>6.3f}   "
            f"{us_per_op(a, 'statements', n_ops):>11.1f} {us_per_op(b, 'statements', n_ops):>12.1f} "
            f"{paired_ratio(a, b, 'statements'):>10.3f}"
        )
    per_round = sorted(x.total / y.total for x, y in zip(*everything, strict=True))
    quartiles = statistics.quantiles(per_round, n=4) if len(per_round) > 1 else per_round * 3
    print(
        f"spread of the overall ratio over {len(per_round)} rounds: min {per_round[0]:.3f}, "
        f"quartiles {quartiles[0]:.3f} / {quartiles[1]:.3f} / {quartiles[2]:.3f}, max {per_round[-1]:.3f}"
    )
    return paired_ratio(*everything, "total")


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small, fast run (smoke test; noisy figures)")
    parser.add_argument("--tenants", type=int, help="tenants to create (default 50; quick 10)")
    parser.add_argument("--projects", type=int, help="projects per tenant (default 200; quick 50)")
    parser.add_argument("--ops", type=int, help="operations per kind, side and round (default 200; quick 50)")
    parser.add_argument("--rounds", type=int, help="measured rounds, after one warm-up (default 50; quick 5)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the operation sequence (default 1)")
    args = parser.parse_args(argv)
    defaults = (10, 50, 50, 5) if args.quick else (50, 200, 200, 50)
    config = Config(
        tenants=args.tenants or defaults[0],
        projects=args.projects or defaults[1],
        ops=args.ops or defaults[2],
        rounds=args.rounds or defaults[3],
        seed=args.seed,
    )
    if min(config.tenants, config.projects, config.ops, config.rounds) < 1:
        parser.error("--tenants, --projects, --ops and --rounds must be at least 1")
    return config


def _as_table_owner(conn: psycopg.Connection) -> None:
    """Act as `tenantry_owner` for the whole session (it logs in without a password only
    where the server trusts it, so the baseline connects as the server's owner and
    switches), and send the context as the RLS side does: the same folding decision as
    the application's pool (db.context.configure_connection: none on Citus), and on Citus the
    SET LOCALs propagated to the workers, which the application's roles have by default
    (policies/00_roles.sql) and the owner has not. Without both, the baseline on Citus
    saved a round trip to the worker per transaction that the RLS side paid, and that
    was counted as a cost of RLS (1.10 on the dev cluster)."""
    configure_connection(conn)
    conn.execute(f"SET ROLE {OWNER_ROLE}")
    if not getattr(conn, "fold", True):
        conn.execute("SET citus.propagate_set_commands = 'local'")
    conn.commit()


def _baseline_pool(owner_url: str, settings: Settings) -> ConnectionPool[Connection]:
    """The baseline's pool: `tenantry_owner`, which owns the tables and has BYPASSRLS but
    is no superuser, so privilege checks run on both sides and only RLS differs (a
    superuser skips them). Connections of the same class as the RLS side's
    (db.context.Connection), so both open their transactions the same way: the opening
    is then the same string on both sides."""
    pool = ConnectionPool(
        owner_url,
        connection_class=Connection,
        configure=_as_table_owner,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        name="bench-baseline",
        open=False,
    )
    pool.open(wait=True, timeout=30)
    return pool


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    given = sys.argv[1:] if argv is None else list(argv)
    print(f"reproduce: {' '.join([REPRODUCE, *map(shlex.quote, given)])}")
    settings: Settings = get_settings()

    setup_start = time.perf_counter()
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    data = create_data(owner_url, config.tenants, config.projects)
    targets: list[Target] = [(t, p) for t, projects in data for p in projects]
    print(f"server: {redacted(owner_url)} - {describe_server(owner_url)}")
    print(
        f"setup: {config.tenants} new tenants x {config.projects} projects in {time.perf_counter() - setup_start:.1f} s"
    )

    kinds = kinds_for(config.projects)
    rls = Side("RLS", Database(settings, name="bench-rls").pool(API_ROLE))
    baseline = Side("baseline", _baseline_pool(owner_url, settings))
    try:
        baseline_role = check_sides(rls, baseline, data[0][0], config.projects)
        print(
            f"RLS: {API_ROLE}, policy adds tenant_id = core.current_tenant_id(); "
            f"baseline: owner {baseline_role}, RLS not applied, only the explicit tenant_id filter "
            "(same SQL text)"
        )
        print(
            "one op = one transaction: BEGIN; SET LOCAL app.tenant_id; statement; COMMIT - "
            "the same shape on both sides, context included"
        )
        print(
            f"{config.rounds} rounds (+1 warm-up) x {config.ops} ops per kind and side; "
            "every op runs on both sides back to back, alternating which goes first; "
            "medians over rounds; ratio = RLS / baseline paired per round; "
            "stmt = the statement alone, without the transaction around it"
        )
        measure_start = time.perf_counter()
        results = measure([rls, baseline], kinds, targets, config)
        print(f"measured in {time.perf_counter() - measure_start:.1f} s")
        print()
        ratio = report(results, kinds, rls.name, baseline.name, config.ops)
    finally:
        rls.pool.close()
        baseline.pool.close()
    print()
    verdict = "within" if ratio <= TARGET_RATIO else "ABOVE"
    print(f"{verdict} the target ratio <= {TARGET_RATIO:.2f}")
    print(f"ratio {ratio:.3f}")


if __name__ == "__main__":
    main()

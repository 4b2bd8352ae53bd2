"""Citus operations for DBAs, over Citus's own functions: what `tenantry citus …` runs.

Nodes and their health, shards and bytes per node, colocation groups, skew, the largest
and busiest tenants (`status`); adding and draining nodes; the background rebalancer
(`citus_rebalance_start` / `_status` / `_stop`); isolating a tenant to a shard of its own
(`isolate_tenant_to_new_shard(…, 'CASCADE')`, every colocated table at once) and moving a
tenant's shard group to another node (`citus_move_shard_placement`). Nothing here
re-implements what Citus does: these are the calls, the checks a DBA would make first,
and answers that name the tenant and the node.

Every function takes an autocommit connection as a superuser or the tables' owner (the
owner DSN): shard moves, splits and node changes are not for the application roles. The
notes behind the choices are docs/citus.md, facts 28-32, and docs/citus-ops.md.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from db import dsn

#: The table that anchors the tenant colocation group (every tenant table is colocated with it).
ANCHOR_TABLE = "core.tenants"

#: How many tables `largest_tenants` counts rows in (the largest tenant tables by size).
COUNTED_TABLES = 3


class CitusRequired(LookupError):
    """The database is single-node PostgreSQL: the command needs a Citus coordinator."""


class TransferMode(StrEnum):
    """Citus's `shard_transfer_mode`: how a move or split copies the shards.

    auto: logical replication when every table has a replica identity (ours all have
    primary keys), else it refuses; writes go on during the copy and pause only for the
    final switch. force_logical: the same, and tables without a replica identity would
    fail their UPDATE/DELETE during the move. block_writes: COPY with writes blocked on
    the moving shards for the whole copy (no logical replication needed)."""

    auto = "auto"
    force_logical = "force_logical"
    block_writes = "block_writes"


# -- connection ---------------------------------------------------------------------------


def connect(url: str) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection to the coordinator at `url`; CitusRequired if it has no Citus."""
    conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
    try:
        require_citus(conn, url)
    except BaseException:
        conn.close()
        raise
    return conn


def require_citus(conn: psycopg.Connection[Any], url: str) -> str:
    """Citus's version on this server, or CitusRequired saying what to do."""
    row = conn.execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'citus'").fetchone()
    if row is None:
        raise CitusRequired(
            f"this needs Citus: {dsn.redacted(url)} is single-node PostgreSQL (no citus extension). "
            "Point TENANTRY_DATABASE_URL at a Citus coordinator "
            "(for a local one: `tenantry citus dev-cluster up`)."
        )
    return str(row["extversion"] if isinstance(row, dict) else row[0])


# -- nodes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    node_id: int
    host: str
    port: int
    group_id: int
    role: str
    active: bool
    should_have_shards: bool
    healthy: bool | None = None  # None: not checked

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def is_coordinator(self) -> bool:
        return self.group_id == 0


def nodes(conn: psycopg.Connection[Any], *, check_health: bool = False) -> list[Node]:
    """Every node of pg_dist_node (the coordinator first); with `check_health`, whether
    every node can reach it (citus_check_cluster_node_health: each node to each)."""
    rows = conn.execute(
        "SELECT nodeid, nodename, nodeport, groupid, noderole::text AS noderole, isactive, shouldhaveshards"
        " FROM pg_catalog.pg_dist_node ORDER BY groupid, nodeid"
    ).fetchall()
    health: dict[tuple[str, int], bool] = {}
    if check_health:
        health = node_health(conn)
    return [
        Node(
            node_id=r["nodeid"],
            host=r["nodename"],
            port=r["nodeport"],
            group_id=r["groupid"],
            role=r["noderole"],
            active=r["isactive"],
            should_have_shards=r["shouldhaveshards"],
            healthy=health.get((r["nodename"], r["nodeport"])) if check_health else None,
        )
        for r in rows
    ]


def node_health(conn: psycopg.Connection[Any]) -> dict[tuple[str, int], bool]:
    """(host, port) -> whether every node could connect to it (and it to the others)."""
    healthy: dict[tuple[str, int], bool] = {}
    for r in conn.execute(
        "SELECT from_nodename, from_nodeport, to_nodename, to_nodeport, result"
        " FROM pg_catalog.citus_check_cluster_node_health()"
    ):
        ok = bool(r["result"])
        for key in ((r["from_nodename"], r["from_nodeport"]), (r["to_nodename"], r["to_nodeport"])):
            healthy[key] = healthy.get(key, True) and ok
    return healthy


def find_node(conn: psycopg.Connection[Any], spec: str) -> Node:
    """A node by its id (`3`) or address (`host:port`); LookupError naming the nodes there are."""
    known = nodes(conn)
    spec = spec.strip()
    for node in known:
        if spec == str(node.node_id) or spec == node.name:
            return node
    listing = ", ".join(f"{n.node_id} ({n.name})" for n in known)
    raise LookupError(f"no Citus node {spec!r}: the nodes are {listing}")


def add_node(conn: psycopg.Connection[Any], host: str, port: int) -> Node:
    """Add a worker (citus_add_node: copies the metadata and the reference tables to it).
    Idempotent: a node already there is returned as it is. It gets shards only from a
    rebalance (`rebalance_start`)."""
    conn.execute("SELECT pg_catalog.citus_add_node(%s, %s)", (host, port))
    return find_node(conn, f"{host}:{port}")


# -- shards, colocation, skew -------------------------------------------------------------


@dataclass(frozen=True)
class NodeShards:
    node: str
    shards: int
    bytes: int


def shards_per_node(conn: psycopg.Connection[Any]) -> list[NodeShards]:
    """Distributed shards and their bytes per node (reference tables, copied to every
    node, are left out: they do not tell one node from another)."""
    rows = conn.execute(
        "SELECT nodename || ':' || nodeport AS node, count(*) AS shards, coalesce(sum(shard_size), 0) AS bytes"
        " FROM pg_catalog.citus_shards WHERE citus_table_type = 'distributed'"
        " GROUP BY nodename, nodeport ORDER BY nodename, nodeport"
    ).fetchall()
    return [NodeShards(r["node"], r["shards"], int(r["bytes"])) for r in rows]


def skew(per_node: list[NodeShards], shard_nodes: list[Node]) -> float | None:
    """Bytes on the fullest node over bytes on the emptiest, among the nodes that should
    have shards (a node with none counts: it is the imbalance a rebalance fixes). None
    when fewer than two nodes, or when the emptiest has no bytes and the fullest has some
    (infinite: a new node)."""
    sizes = {n.name: 0 for n in shard_nodes if n.should_have_shards}
    for entry in per_node:
        if entry.node in sizes:
            sizes[entry.node] = entry.bytes
    if len(sizes) < 2:
        return None
    low, high = min(sizes.values()), max(sizes.values())
    if low == 0:
        return None if high else 1.0
    return high / low


@dataclass(frozen=True)
class ColocationGroup:
    colocation_id: int
    kind: str
    distribution_column: str
    shard_count: int
    tables: list[str]
    bytes: int


def colocation_groups(conn: psycopg.Connection[Any]) -> list[ColocationGroup]:
    """Citus's colocation groups: the tables that move together, and their total size."""
    rows = conn.execute(
        "SELECT colocation_id, citus_table_type AS kind, distribution_column, max(shard_count) AS shard_count,"
        " array_agg(table_name::text ORDER BY table_name::text) AS tables,"
        " coalesce(sum(pg_catalog.citus_total_relation_size(table_name)), 0) AS bytes"
        " FROM public.citus_tables GROUP BY colocation_id, citus_table_type, distribution_column"
        " ORDER BY colocation_id"
    ).fetchall()
    return [
        ColocationGroup(
            r["colocation_id"], r["kind"], r["distribution_column"], r["shard_count"], r["tables"], r["bytes"]
        )
        for r in rows
    ]


def tables_without_replica_identity(conn: psycopg.Connection[Any]) -> list[str]:
    """Distributed tables that logical replication cannot move online (no primary key and
    no REPLICA IDENTITY): with them, 'auto' moves fail and 'force_logical' moves break
    their UPDATE/DELETE while the move runs (docs/citus.md, fact 30)."""
    rows = conn.execute(
        "SELECT c.oid::regclass::text AS name FROM pg_catalog.pg_dist_partition p"
        " JOIN pg_catalog.pg_class c ON c.oid = p.logicalrelid"
        " WHERE p.partmethod = 'h' AND c.relkind IN ('r', 'p')"
        " AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS ("
        "   SELECT 1 FROM pg_catalog.pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))"
        " ORDER BY 1"
    ).fetchall()
    return [r["name"] for r in rows]


# -- tenants ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tenant:
    tenant_id: uuid.UUID
    slug: str


def resolve_tenant(conn: psycopg.Connection[Any], spec: str) -> Tenant:
    """A tenant by id or slug; LookupError when there is none."""
    try:
        tenant_id: uuid.UUID | None = uuid.UUID(spec)
    except ValueError:
        tenant_id = None
    if tenant_id is not None:
        row = conn.execute("SELECT tenant_id, slug FROM core.tenants WHERE tenant_id = %s", (tenant_id,)).fetchone()
    else:
        row = conn.execute("SELECT tenant_id, slug FROM core.tenant_slugs WHERE slug = lower(%s)", (spec,)).fetchone()
    if row is None:
        raise LookupError(f"no tenant {spec!r} (give its id or its slug)")
    return Tenant(row["tenant_id"], row["slug"])


@dataclass(frozen=True)
class TenantPlacement:
    tenant: Tenant
    shard_id: int  # the shard of core.tenants; its colocated shards move with it
    node: Node
    isolated: bool  # the shard holds this tenant's hash value only
    bytes: int  # the shard group's size (every colocated table)
    other_tenants: int  # tenants sharing the shard (they move with it)


def tenant_placement(conn: psycopg.Connection[Any], tenant: Tenant) -> TenantPlacement:
    """Where a tenant's rows are: its shard group, the node, whether it is alone there."""
    shard = conn.execute(
        "SELECT s.shardid, s.shardminvalue::int AS lo, s.shardmaxvalue::int AS hi, g.groupid"
        " FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement g USING (shardid)"
        " WHERE s.shardid = pg_catalog.get_shard_id_for_distribution_column(%s, %s)",
        (ANCHOR_TABLE, tenant.tenant_id),
    ).fetchone()
    assert shard is not None, "every hash value has a shard"
    node = next(n for n in nodes(conn) if n.group_id == shard["groupid"])
    size = conn.execute(
        # the shards of every colocated table with the same hash range, on that node
        "SELECT coalesce(sum(cs.shard_size), 0) AS bytes FROM pg_catalog.citus_shards cs"
        " JOIN pg_catalog.pg_dist_shard s USING (shardid)"
        " WHERE cs.colocation_id = (SELECT colocationid FROM pg_catalog.pg_dist_partition"
        "   WHERE logicalrelid = %s::regclass)"
        " AND s.shardminvalue = %s::text AND s.shardmaxvalue = %s::text",
        (ANCHOR_TABLE, shard["lo"], shard["hi"]),
    ).fetchone()
    others = conn.execute(
        "SELECT count(*) AS n FROM core.tenants"
        " WHERE pg_catalog.worker_hash(tenant_id) BETWEEN %s AND %s AND tenant_id <> %s",
        (shard["lo"], shard["hi"], tenant.tenant_id),
    ).fetchone()
    return TenantPlacement(
        tenant=tenant,
        shard_id=shard["shardid"],
        node=node,
        isolated=shard["lo"] == shard["hi"],
        bytes=int(size["bytes"]) if size else 0,
        other_tenants=int(others["n"]) if others else 0,
    )


@dataclass(frozen=True)
class TenantSize:
    tenant: Tenant
    rows: int  # rows in the counted tables (COUNTED_TABLES largest)
    isolated_bytes: int | None  # the tenant's own shard group's size, if isolated


def largest_tenants(conn: psycopg.Connection[Any], limit: int = 5) -> tuple[list[str], list[TenantSize]]:
    """The tenants with the most rows in the largest tenant tables (a cheap estimate: one
    GROUP BY tenant_id per table, pushed down to every shard), and the tables counted."""
    tables = [
        r["table_name"]
        for r in conn.execute(
            # a partition's size counts for its parent, whose GROUP BY covers it
            "SELECT coalesce(i.inhparent, t.table_name)::regclass::text AS table_name"
            " FROM public.citus_tables t LEFT JOIN pg_catalog.pg_inherits i ON i.inhrelid = t.table_name"
            " WHERE t.colocation_id = (SELECT colocationid FROM pg_catalog.pg_dist_partition"
            "   WHERE logicalrelid = %s::regclass) AND t.distribution_column = 'tenant_id'"
            " GROUP BY 1 ORDER BY sum(pg_catalog.citus_total_relation_size(t.table_name)) DESC, 1 LIMIT %s",
            (ANCHOR_TABLE, COUNTED_TABLES),
        )
    ]
    counts: dict[uuid.UUID, int] = {}
    for table in tables:
        for r in conn.execute(
            sql.SQL("SELECT tenant_id, count(*) AS n FROM {} GROUP BY tenant_id").format(
                sql.Identifier(*table.split(".", 1))
            )
        ):
            counts[r["tenant_id"]] = counts.get(r["tenant_id"], 0) + r["n"]
    top = sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0])))[:limit]
    isolated = {t.tenant.tenant_id: t.bytes for t in isolated_tenants(conn)}
    slugs = _slugs(conn, [tenant_id for tenant_id, _ in top])
    return tables, [
        TenantSize(Tenant(tenant_id, slugs.get(tenant_id, "?")), rows, isolated.get(tenant_id))
        for tenant_id, rows in top
    ]


@dataclass(frozen=True)
class IsolatedTenant:
    tenant: Tenant
    shard_id: int
    node: str
    bytes: int


def isolated_tenants(conn: psycopg.Connection[Any]) -> list[IsolatedTenant]:
    """Tenants with a shard group of their own (a hash range of one value), largest first."""
    shards = conn.execute(
        "SELECT s.shardid, s.shardminvalue::int AS hash, n.nodename || ':' || n.nodeport AS node"
        " FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid)"
        " JOIN pg_catalog.pg_dist_node n USING (groupid)"
        " WHERE s.logicalrelid = %s::regclass AND s.shardminvalue = s.shardmaxvalue",
        (ANCHOR_TABLE,),
    ).fetchall()
    if not shards:
        return []
    by_hash = {r["hash"]: r for r in shards}
    sizes = {
        r["hash"]: int(r["bytes"])
        for r in conn.execute(
            "SELECT s.shardminvalue::int AS hash, coalesce(sum(cs.shard_size), 0) AS bytes"
            " FROM pg_catalog.citus_shards cs JOIN pg_catalog.pg_dist_shard s USING (shardid)"
            " WHERE cs.colocation_id = (SELECT colocationid FROM pg_catalog.pg_dist_partition"
            "   WHERE logicalrelid = %s::regclass)"
            " AND s.shardminvalue = s.shardmaxvalue AND s.shardminvalue::int = ANY(%s)"
            " GROUP BY 1",
            (ANCHOR_TABLE, list(by_hash)),
        )
    }
    found = []
    for r in conn.execute(
        "SELECT tenant_id, slug, pg_catalog.worker_hash(tenant_id) AS hash FROM core.tenants"
        " WHERE pg_catalog.worker_hash(tenant_id) = ANY(%s)",
        (list(by_hash),),
    ):
        shard = by_hash[r["hash"]]
        found.append(
            IsolatedTenant(Tenant(r["tenant_id"], r["slug"]), shard["shardid"], shard["node"], sizes.get(r["hash"], 0))
        )
    return sorted(found, key=lambda t: (-t.bytes, t.tenant.slug))


@dataclass(frozen=True)
class BusyTenant:
    tenant: str  # the distribution value as Citus saw it (a tenant id)
    slug: str
    queries: int  # in the current and the last period (citus.stat_tenants_period)
    cpu_seconds: float


def _value(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the one row `query` returns."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def stat_tenants_track(conn: psycopg.Connection[Any]) -> str:
    return str(_value(conn, "SELECT current_setting('citus.stat_tenants_track')"))


def busiest_tenants(conn: psycopg.Connection[Any], limit: int = 5) -> list[BusyTenant] | None:
    """The tenants with the most queries (citus_stat_tenants: router queries by tenant,
    counted on every node); None when citus.stat_tenants_track is 'none' (the default)."""
    if stat_tenants_track(conn) == "none":
        return None
    rows = conn.execute(
        "SELECT tenant_attribute,"
        " sum(query_count_in_this_period + query_count_in_last_period) AS queries,"
        " sum(cpu_usage_in_this_period + cpu_usage_in_last_period) AS cpu"
        " FROM pg_catalog.citus_stat_tenants GROUP BY tenant_attribute ORDER BY queries DESC, cpu DESC LIMIT %s",
        (limit,),
    ).fetchall()
    ids = {r["tenant_attribute"]: _as_uuid(r["tenant_attribute"]) for r in rows}
    slugs = _slugs(conn, [i for i in ids.values() if i is not None])
    return [
        BusyTenant(
            r["tenant_attribute"],
            slugs.get(ids[r["tenant_attribute"]] or uuid.UUID(int=0), "?"),
            int(r["queries"]),
            float(r["cpu"] or 0),
        )
        for r in rows
    ]


def _as_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        return None


def _slugs(conn: psycopg.Connection[Any], ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    if not ids:
        return {}
    rows = conn.execute("SELECT tenant_id, slug FROM core.tenant_slugs WHERE tenant_id = ANY(%s)", (ids,))
    return {r["tenant_id"]: r["slug"] for r in rows}


# -- the whole picture --------------------------------------------------------------------


@dataclass
class ClusterStatus:
    citus_version: str
    nodes: list[Node]
    shards: list[NodeShards]
    skew: float | None
    groups: list[ColocationGroup]
    counted_tables: list[str]
    largest: list[TenantSize]
    isolated: list[IsolatedTenant]
    busiest: list[BusyTenant] | None
    stat_tenants_track: str
    no_replica_identity: list[str]
    rebalance: RebalanceProgress | None
    warnings: list[str] = field(default_factory=list)


def status(conn: psycopg.Connection[Any], url: str, *, limit: int = 5) -> ClusterStatus:
    version = require_citus(conn, url)
    all_nodes = nodes(conn, check_health=True)
    per_node = shards_per_node(conn)
    has_tenants = _value(conn, "SELECT to_regclass(%s) IS NOT NULL", (ANCHOR_TABLE,))
    counted: list[str] = []
    largest: list[TenantSize] = []
    isolated: list[IsolatedTenant] = []
    warnings: list[str] = []
    if has_tenants:
        counted, largest = largest_tenants(conn, limit)
        isolated = isolated_tenants(conn)
    else:
        warnings.append("the project's tables are not there yet: run `tenantry db migrate`")
    workers = [n for n in all_nodes if not n.is_coordinator or n.should_have_shards]
    return ClusterStatus(
        citus_version=version,
        nodes=all_nodes,
        shards=per_node,
        skew=skew(per_node, workers),
        groups=colocation_groups(conn),
        counted_tables=counted,
        largest=largest,
        isolated=isolated,
        busiest=busiest_tenants(conn, limit),
        stat_tenants_track=stat_tenants_track(conn),
        no_replica_identity=tables_without_replica_identity(conn),
        rebalance=rebalance_progress(conn),
        warnings=warnings,
    )


# -- the rebalancer -----------------------------------------------------------------------

#: Job states after which nothing more happens (citus_job_status).
FINAL_STATES = frozenset({"finished", "cancelled", "failed"})


@dataclass(frozen=True)
class RebalanceProgress:
    job_id: int
    state: str  # scheduled, running, cancelling, failing, finished, cancelled, failed
    description: str
    done: int
    total: int
    running: list[str]  # "shard 102008 127.0.0.1:9711 -> 127.0.0.1:9712 (Catching Up)"
    errors: list[str]

    @property
    def finished(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state == "finished"


def rebalance_progress(conn: psycopg.Connection[Any]) -> RebalanceProgress | None:
    """The newest rebalance job as citus_rebalance_status() reports it (None: never ran)."""
    row = conn.execute(
        "SELECT job_id, state::text AS state, description, details FROM pg_catalog.citus_rebalance_status()"
    ).fetchone()
    if row is None:
        return None
    details = row["details"] or {}
    counts: dict[str, int] = details.get("task_state_counts") or {}
    running, errors = [], []
    for task in details.get("tasks") or []:
        hosts = task.get("hosts") or {}
        line = f"{_shard_of(task.get('command', ''))} {hosts.get('source', '?')} -> {hosts.get('target', '?')}"
        if task.get("phase"):
            line += f" ({task['phase']})"
        running.append(line)
        if task.get("message"):
            errors.append(f"{line}: {task['message']}")
    return RebalanceProgress(
        job_id=row["job_id"],
        state=row["state"],
        description=row["description"],
        done=counts.get("done", 0),
        total=sum(counts.values()),
        running=running,
        errors=errors,
    )


def _shard_of(command: str) -> str:
    # "SELECT pg_catalog.citus_move_shard_placement(102677,4,3,'auto')" -> "shard 102677"
    inside = command.partition("(")[2].partition(",")[0]
    return f"shard {inside}" if inside.isdigit() else "move"


def rebalance_start(conn: psycopg.Connection[Any], mode: TransferMode = TransferMode.auto) -> int | None:
    """Start the background rebalancer; its job id, or None when nothing needs to move.
    A rebalance already running is not an error: its job id is returned."""
    running = rebalance_progress(conn)
    if running is not None and not running.finished:
        return running.job_id
    row = conn.execute(
        "SELECT pg_catalog.citus_rebalance_start(shard_transfer_mode => %s::citus.shard_transfer_mode) AS job",
        (mode.value,),
    ).fetchone()
    return row["job"] if row else None


def drain_node(conn: psycopg.Connection[Any], node: Node, mode: TransferMode = TransferMode.auto) -> int | None:
    """Stop placing shards on `node` and start moving its shards away, in the background
    (the rebalancer with drain_only: the same job, progress and stop as `rebalance_start`).
    Its job id, or None when the node holds no shards. Reference tables stay on it until
    the node is removed (citus_remove_node)."""
    if node.is_coordinator and not node.should_have_shards:
        raise LookupError(f"{node.name} is the coordinator and holds no distributed shards")
    running = rebalance_progress(conn)
    if running is not None and not running.finished:
        raise LookupError(
            f"rebalance job {running.job_id} is {running.state}: wait for it "
            "(`tenantry citus rebalance --wait`) or stop it (`tenantry citus rebalance stop`) first"
        )
    conn.execute("SELECT pg_catalog.citus_set_node_property(%s, %s, 'shouldhaveshards', false)", (node.host, node.port))
    row = conn.execute(
        "SELECT pg_catalog.citus_rebalance_start(drain_only => true,"
        " shard_transfer_mode => %s::citus.shard_transfer_mode) AS job",
        (mode.value,),
    ).fetchone()
    return row["job"] if row else None


def undrain_node(conn: psycopg.Connection[Any], node: Node) -> None:
    """Let `node` hold shards again (the next rebalance moves some back)."""
    conn.execute("SELECT pg_catalog.citus_set_node_property(%s, %s, 'shouldhaveshards', true)", (node.host, node.port))


def rebalance_stop(conn: psycopg.Connection[Any]) -> RebalanceProgress | None:
    """Cancel the running rebalance (moves done so far stay done; the one in flight is
    rolled back by Citus). The job as it is then, or None if none was running."""
    running = rebalance_progress(conn)
    if running is None or running.finished:
        return None
    conn.execute("SELECT pg_catalog.citus_rebalance_stop()")
    return rebalance_progress(conn)


def wait_rebalance(
    conn: psycopg.Connection[Any],
    on_progress: Callable[[RebalanceProgress], None] = lambda _: None,
    *,
    poll_seconds: float = 0.5,
    timeout: float | None = None,
) -> RebalanceProgress | None:
    """Poll citus_rebalance_status() until the newest job ends, calling `on_progress`
    on each poll; the last progress (None: no job). TimeoutError after `timeout` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        progress = rebalance_progress(conn)
        if progress is None:
            return None
        on_progress(progress)
        if progress.finished:
            return progress
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"rebalance job {progress.job_id} still {progress.state} after {timeout} s")
        time.sleep(poll_seconds)


# -- tenants: isolate, move ---------------------------------------------------------------


def isolate_tenant(
    conn: psycopg.Connection[Any], tenant: Tenant, split_mode: TransferMode = TransferMode.block_writes
) -> TenantPlacement:
    """Give the tenant a shard group of its own: isolate_tenant_to_new_shard on the anchor
    table with CASCADE splits every colocated table (partitioned ones included) at the
    tenant's hash value, on the node that holds it. A tenant already alone is left as it
    is.

    The split blocks writes to the shard group by default (`block_writes`): a split by
    logical replication ('auto') never ends when a row of the shard group is updated
    while it copies (citusdata/citus#6790; every task insert updates the tenant's quota
    counter), docs/citus.md, fact 31. A small shard group splits in a few seconds; then
    `move_tenant` moves it with logical replication, writes going on."""
    placement = tenant_placement(conn, tenant)
    if placement.isolated:
        return placement
    conn.execute(
        "SELECT pg_catalog.isolate_tenant_to_new_shard(%s, %s, 'CASCADE', %s::citus.shard_transfer_mode)",
        (ANCHOR_TABLE, tenant.tenant_id, split_mode.value),
    )
    return tenant_placement(conn, tenant)


def move_tenant(
    conn: psycopg.Connection[Any], tenant: Tenant, target: Node, mode: TransferMode = TransferMode.auto
) -> tuple[TenantPlacement, TenantPlacement]:
    """Move the tenant's shard group (every colocated table's shard, and the other tenants
    sharing it unless it is isolated) to `target`: citus_move_shard_placement, which
    returns when the move is done. (before, after)."""
    before = tenant_placement(conn, tenant)
    if target.is_coordinator and not target.should_have_shards:
        raise LookupError(f"{target.name} is the coordinator, which holds no shards here: pick a worker")
    if not target.should_have_shards:
        raise LookupError(f"{target.name} is being drained (shouldhaveshards is false): pick another node")
    if before.node.node_id == target.node_id:
        return before, before
    conn.execute(
        "SELECT pg_catalog.citus_move_shard_placement(%s, %s, %s, %s::citus.shard_transfer_mode)",
        (before.shard_id, before.node.node_id, target.node_id, mode.value),
    )
    return before, tenant_placement(conn, tenant)

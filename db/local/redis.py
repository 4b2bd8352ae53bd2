"""A local Redis on loopback for rate limits, started like the embedded PostgreSQL.

With no TENANTRY_REDIS_URL, `tenantry serve` and the demo start `redis-server` from the
machine's package (Debian: redis-server) in <state_dir>/redis, without persistence:
rate-limit buckets are short-lived by nature.

"Running" means the process named in our pidfile is alive and answers PING on our port:
another Redis that happens to listen on the port is not ours, so we neither adopt nor
shut it down (start() reports the busy port instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from db.local.postgres import port_is_free

#: how long start() waits for PING and stop() for the process to exit
WAIT_SECONDS = 10.0


class RedisServerError(RuntimeError):
    """The local Redis cannot be started; the message says what to do."""


def _process_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie has exited: in containers whose PID 1 does not
    reap orphans, the daemonized server can linger as one after SHUTDOWN."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    try:
        # /proc/<pid>/stat: "pid (comm) state ..."; comm may contain spaces or parentheses
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): os.kill said it exists
    return state != "Z"


@dataclass
class LocalRedis:
    home: Path  # holds redis.pid and redis.log (and nothing else: no persistence)
    port: int
    host: str = "127.0.0.1"

    @property
    def pid_file(self) -> Path:
        return self.home / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "redis.log"

    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _client(self) -> redis.Redis:
        # a probe, so no retries: redis-py 8 retries 10 times with backoff by default,
        # which turns every "is it down?" into seconds of waiting
        return redis.Redis(
            host=self.host, port=self.port, socket_timeout=1, socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip

    def _pid(self) -> int | None:
        """The pid our pidfile names, if that process is alive."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _process_alive(pid) else None

    def _answers(self) -> bool:
        client = self._client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def is_running(self) -> bool:
        return self._pid() is not None and self._answers()

    def start(self) -> bool:
        """Start redis-server if it is not running. Returns False if it already was."""
        if self.is_running():
            return False
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError(
                "redis-server is not installed: install the redis-server package "
                "(apt-get install redis-server), or set TENANTRY_REDIS_URL."
            )
        if not port_is_free(self.port, self.host):
            raise RedisServerError(
                f"port {self.port} on {self.host} is in use by another program: "
                "set TENANTRY_REDIS_PORT to a free port, or TENANTRY_REDIS_URL."
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)  # stale, from a server that did not exit cleanly
        result = subprocess.run([
            binary, "--port", str(self.port), "--bind", self.host, "--daemonize", "yes",
            "--pidfile", str(self.pid_file), "--logfile", str(self.log_file),
            "--dir", str(self.home), "--save", "", "--appendonly", "no", "--protected-mode", "yes",
            # never evict: it holds the job queues and the API-call counts (docs/jobs.md)
            "--maxmemory-policy", "noeviction",
        ], capture_output=True, text=True, timeout=30)  # fmt: skip
        if result.returncode != 0:
            raise RedisServerError(
                f"redis-server did not start on port {self.port}:\n{(result.stderr or result.stdout).strip()}"
            )
        # daemonized: the launcher has returned; the server writes its pidfile, then listens
        deadline = time.monotonic() + WAIT_SECONDS
        while not self.is_running():
            if time.monotonic() > deadline:
                tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
                raise RedisServerError(
                    f"redis-server did not answer on port {self.port} (log: {self.log_file}):\n{tail}"
                )
            time.sleep(0.02)
        return True

    def stop(self) -> bool:
        """Stop it if it runs. Returns False if it was not running."""
        pid = self._pid()
        if pid is None or not self._answers():
            return False
        client = self._client()
        try:
            client.shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        finally:
            client.close()
        # the socket closes before the process exits: wait for the process, so that the
        # port and the folder are really free when we return
        deadline = time.monotonic() + WAIT_SECONDS
        while _process_alive(pid):
            if time.monotonic() > deadline:
                raise RedisServerError(f"redis-server (pid {pid}) did not exit after SHUTDOWN")
            time.sleep(0.02)
        return True

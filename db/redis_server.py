"""A local Redis on loopback for rate limits, started like the embedded PostgreSQL.

With no TENANTRY_REDIS_URL, `tenantry serve` and the demo start `redis-server` from the
machine's package (Debian: redis-server) in <state_dir>/redis, without persistence:
rate-limit buckets are short-lived by nature.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from db.server import port_is_free


class RedisServerError(RuntimeError):
    """The local Redis cannot be started; the message says what to do."""


@dataclass
class LocalRedis:
    home: Path
    port: int
    host: str = "127.0.0.1"

    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def _client(self) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def is_running(self) -> bool:
        try:
            return bool(self._client().ping())
        except redis.RedisError:
            return False

    def start(self) -> bool:
        """Start redis-server if it is not running. Returns False if it already was."""
        if self.is_running():
            return False
        binary = shutil.which("redis-server")
        if binary is None:
            raise RedisServerError("redis-server is not installed: install the redis-server package "
                                   "(apt-get install redis-server), or set TENANTRY_REDIS_URL.")
        if not port_is_free(self.port, self.host):
            raise RedisServerError(f"port {self.port} on {self.host} is in use by another program: "
                                   "set TENANTRY_REDIS_PORT to a free port.")
        self.home.mkdir(parents=True, exist_ok=True)
        subprocess.run([
            binary, "--port", str(self.port), "--bind", self.host, "--daemonize", "yes",
            "--pidfile", str(self.home / "redis.pid"), "--logfile", str(self.home / "redis.log"),
            "--dir", str(self.home), "--save", "", "--appendonly", "no", "--protected-mode", "yes",
        ], check=True, capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while not self.is_running():
            if time.monotonic() > deadline:
                raise RedisServerError(f"redis-server did not answer on port {self.port}: see {self.home / 'redis.log'}")
            time.sleep(0.05)
        return True

    def stop(self) -> bool:
        """Stop it if it runs. Returns False if it was not running."""
        if not self.is_running():
            return False
        try:
            self._client().shutdown(nosave=True)
        except redis.ConnectionError:
            pass  # the server closes the connection as it goes
        deadline = time.monotonic() + 10
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        return True

"""Local servers and the CLI's messages: real processes, a port of their own."""

from __future__ import annotations

import glob
import socket
import subprocess
import sys

import psycopg
import pytest
from typer.testing import CliRunner

from db import migrate
from db.local.embedded import bin_dir
from db.local.postgres import LocalServer, ServerError, free_port
from db.settings import get_settings
from tenantry.cli import app


@pytest.fixture
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("pg") / "node"
    srv = LocalServer(bin_dir=bin_dir(), home=home, port=free_port())
    yield srv
    srv.stop()


def test_start_and_stop_are_idempotent(server):
    assert server.start() is True
    assert server.start() is False  # already running: nothing to do
    assert server.ensure_database("app") is True
    assert server.ensure_database("app") is False
    with psycopg.connect(server.url("app")) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == "app"
    assert server.stop() is True
    assert server.stop() is False
    assert server.start() is True  # data kept across restarts
    with psycopg.connect(server.url("app")) as conn:
        assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_a_busy_port_gives_a_clear_message(server):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", server.port))
        squatter.listen()
        with pytest.raises(ServerError, match=rf"port {server.port} on 127.0.0.1 is in use.*TENANTRY_EMBEDDED_PORT"):
            server.start()
    assert not server.is_running()


def test_status_reports_revision_and_citus(owner_url, is_citus, monkeypatch):
    monkeypatch.setenv("TENANTRY_DATABASE_URL", owner_url)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    head = migrate.status(owner_url).head
    assert f"revision: {head}\nhead:     {head}\n" in result.output
    assert ("citus:    14" in result.output) if is_citus else ("citus:    not installed" in result.output)


@pytest.mark.skipif(bool(glob.glob("/usr/lib/postgresql/*/lib/citus.so")), reason="Citus packages installed here")
def test_dev_cluster_says_when_citus_is_not_installed(tmp_path):
    # a PostgreSQL without citus.so, and nothing else on PATH to find
    env = {"PATH": "/nonexistent", "TENANTRY_CITUS_PG_BIN": str(bin_dir()), "TENANTRY_STATE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "tenantry", "citus", "dev-cluster", "up"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 1
    assert "Citus is not installed" in result.stderr
    assert "TENANTRY_CITUS_PG_BIN" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_is_a_message_not_a_traceback(monkeypatch):
    monkeypatch.setenv("TENANTRY_DATABASE_URL", f"postgresql://nobody@127.0.0.1:{free_port()}/x")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["db", "status"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)

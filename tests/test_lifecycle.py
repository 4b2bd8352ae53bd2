"""Tenant lifecycle (issue 14): export, erase, import (db/lifecycle.py, `tenantry tenant`)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from db import lifecycle
from tests.helpers import OWNERS, call, one
from tests.test_races import together

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def populate(api_pool, tenant: uuid.UUID) -> None:
    """Projects, tasks, an API key and usage events, through the API functions (triggers fire)."""
    for p in range(2):
        project = one(api_pool, tenant, "create_project", f"project {p}")
        for t in range(3):
            call(api_pool, tenant, "create_task", project["project_id"], f"task {p}.{t}", p_assignee_id=OWNERS[tenant])
    call(api_pool, tenant, "create_api_key", f"pfx{uuid.uuid4().hex[:9]}", b"\x01" * 32, "ci key", ["projects:read"])
    events = [{"event_id": f"e{i}", "metric": "tokens", "quantity": 10 + i} for i in range(3)]
    call(api_pool, tenant, "ingest_usage", Jsonb(events))


def tenant_rows(owner_url: str, tenant: uuid.UUID) -> dict[str, int]:
    with psycopg.connect(owner_url) as conn:
        return lifecycle.holders(conn, tenant)


def delete_long_ago(owner_url: str, as_admin, tenant: uuid.UUID, days: int = 31) -> None:
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'deleted')", (tenant,))
    # time travel, as the owner: the status trigger stamps deleted_at with now()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(
            "UPDATE core.tenants SET deleted_at = now() - make_interval(days => %s) WHERE tenant_id = %s",
            (days, tenant),
        )


def normalized(path: Path) -> list[str]:
    """The export's lines, sorted, with every uuid but the members' (users are global and
    keep theirs) replaced by the same placeholder."""
    text = path.read_text(encoding="utf-8")
    users = {json.loads(line)["row"]["user_id"] for line in text.splitlines() if '"reference":true' in line}
    return sorted(UUID.sub(lambda m: m.group(0) if m.group(0) in users else "<id>", line) for line in text.splitlines())


def test_export_has_every_row_but_no_secret_and_a_matching_manifest(api_pool, new_tenant, owner_url, tmp_path):
    tenant, other = new_tenant(), new_tenant()
    populate(api_pool, tenant)
    populate(api_pool, other)
    out = tmp_path / "t.jsonl"
    manifest = lifecycle.export_tenant(owner_url, tenant, out)

    assert manifest["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert lifecycle.verify_export(out) == manifest
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(item["row"]["tenant_id"] == str(tenant) for item in lines if not item.get("reference"))
    counts = {t: n for t, n in manifest["tables"].items() if n}
    in_db = tenant_rows(owner_url, tenant)
    assert {t: n for t, n in counts.items() if t != "core.users"} == {
        t: n for t, n in in_db.items() if t.startswith("core.")
    }
    assert counts["core.projects"] == 2 and counts["core.tasks"] == 6 and counts["core.api_keys"] == 1
    assert counts["core.usage_events"] == 3 and counts["core.memberships"] == 1 and counts["core.users"] == 1
    secret = re.compile("hash|secret|token|password|ciphertext")
    assert not [(item["table"], k) for item in lines for k in item["row"] if secret.search(k)]
    assert "key_hash" in manifest["omitted_columns"]["core.api_keys"]
    assert set(lines[-1]["row"]) == {"user_id", "email", "name"}  # users: public fields only

    out.write_text(out.read_text().replace("project 1", "project X"))
    with pytest.raises(lifecycle.LifecycleError, match="checksum"):
        lifecycle.verify_export(out)


def test_export_reads_through_a_server_side_cursor(api_pool, new_tenant, owner_url, tmp_path, monkeypatch):
    tenant = new_tenant()
    populate(api_pool, tenant)
    names: list[str | None] = []
    real = psycopg.Connection.cursor

    def spy(self, *args: Any, **kwargs: Any):
        if kwargs.get("name"):
            names.append(kwargs["name"])
        return real(self, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "cursor", spy)  # observe, not replace: the real cursor runs
    lifecycle.export_tenant(owner_url, tenant, tmp_path / "t.jsonl")
    with psycopg.connect(owner_url) as conn:
        tables = len(lifecycle.tenant_tables(conn))
    assert len(names) == tables + 1  # one named (server-side) cursor per table, and the users


def erase(owner_url: str, tenant: uuid.UUID, days: int = 30) -> dict[str, int]:
    return lifecycle.erase_tenant(owner_url, tenant, timedelta(days=days), "test")


def erase_refusal(owner_url: str, tenant: uuid.UUID, days: int = 30) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as refused:
        erase(owner_url, tenant, days)
    return refused.value


def test_erase_is_refused_for_a_live_tenant_and_within_the_grace_period(new_tenant, owner_url, as_admin):
    # the rule is the database's (core.assert_tenant_erasable): TN004, a message that says what to do
    live = new_tenant()
    refused = erase_refusal(owner_url, live)
    assert refused.sqlstate == "TN004" and f"tenant {live} is active: only a deleted tenant" in str(refused)
    recent = new_tenant()
    delete_long_ago(owner_url, as_admin, recent, days=3)
    refused = erase_refusal(owner_url, recent)
    assert refused.sqlstate == "TN004" and "within the grace period (30 days)" in str(refused)
    with psycopg.connect(owner_url) as conn:
        (deleted_at,) = conn.execute("SELECT deleted_at FROM core.tenants WHERE tenant_id = %s", (recent,)).fetchone()
    erasable = (deleted_at + timedelta(days=30)).astimezone(dt.UTC)
    assert f"it can be erased from {erasable:%Y-%m-%d %H:%M:%S} UTC" in str(refused)  # it says when
    assert tenant_rows(owner_url, recent)["core.tenants"] == 1
    assert erase_refusal(owner_url, uuid.uuid4()).sqlstate == "P0002"  # unknown: not found, as every lookup
    assert erase_refusal(owner_url, recent, days=-1).sqlstate == "22023"

    assert erase(owner_url, recent, days=3)["core.tenants"] == 1  # past a shorter grace
    again = erase_refusal(owner_url, recent)
    assert again.sqlstate == "TN004" and "was erased at" in str(again) and "by test" in str(again)


# -- races: the erase locks the tenant's row first (FOR UPDATE) ----------------------------------

#: rounds of each race (one fresh tenant each)
ROUNDS = 4


def erase_on_release(owner_url: str, tenant: uuid.UUID) -> Callable[[threading.Barrier], dict[str, int]]:
    """A racer for `together`: erases the tenant once the barrier releases it."""

    def erase_at(barrier: threading.Barrier) -> dict[str, int]:
        barrier.wait(timeout=30)
        return erase(owner_url, tenant)

    return erase_at


def test_two_erases_at_once_erase_once_and_the_other_is_told(new_tenant, owner_url, as_admin):
    # before the lock: both passed the check, and the second failed on the tombstone's
    # primary key (23505) or on a tenant it could no longer find -- every round
    for _ in range(ROUNDS):
        tenant = new_tenant()
        delete_long_ago(owner_url, as_admin, tenant)

        erase_at = erase_on_release(owner_url, tenant)

        results = together(erase_at, erase_at)
        erased = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if not isinstance(r, dict)]
        assert len(erased) == 1 and erased[0]["core.tenants"] == 1, results
        assert [getattr(r, "sqlstate", None) for r in refused] == ["TN004"], results
        assert "was erased at" in str(refused[0])
        assert tenant_rows(owner_url, tenant) == {}
        with psycopg.connect(owner_url) as conn:
            assert conn.execute(
                "SELECT count(*) FROM core.tenant_tombstones WHERE erased_tenant_id = %s", (tenant,)
            ).fetchone() == (1,)


def test_a_reactivation_racing_an_erase_never_brings_an_erased_tenant_back(new_tenant, owner_url, as_admin):
    # Nothing restores a deleted tenant: 'deleted' is final (TN003, 100_tenants.sql). A
    # platform administrator's reactivation at the moment of the erase waits for the
    # erase's lock, then finds no tenant (P0002); or, first, is refused (TN003). Exactly
    # one wins, always the erase, and no half-erased or reactivated tenant remains.
    for _ in range(ROUNDS):
        tenant = new_tenant()
        delete_long_ago(owner_url, as_admin, tenant)

        erase_at = erase_on_release(owner_url, tenant)

        def reactivate_at(barrier: threading.Barrier, tenant: uuid.UUID = tenant) -> Any:
            with as_admin() as conn:
                barrier.wait(timeout=30)
                return conn.execute("SELECT status FROM admin.set_tenant_status(%s, 'active')", (tenant,)).fetchone()

        erased, reactivated = together(erase_at, reactivate_at)
        assert isinstance(erased, dict) and erased["core.tenants"] == 1, erased
        assert getattr(reactivated, "sqlstate", None) in {"TN003", "P0002"}, reactivated
        assert tenant_rows(owner_url, tenant) == {}


def test_round_trip_export_erase_import_export_is_identical_but_ids(
    api_pool, new_tenant, owner_url, as_admin, tmp_path
):
    tenant, bystander = new_tenant(), new_tenant()
    populate(api_pool, tenant)
    populate(api_pool, bystander)
    before_bystander = tenant_rows(owner_url, bystander)
    with psycopg.connect(owner_url, autocommit=True) as conn:  # a closed month's bill
        conn.execute(
            "INSERT INTO core.invoice_lines (tenant_id, period, usage_period, metric, plan_id, quantity, included,"
            " billable, unit_price, amount, currency, overage, package_size)"
            " VALUES (%s, '2026-01-01', '2026-01-01', 'tokens', 'pro', 1000, 0, 1000, 0.01, 10.5, 'EUR', 'bill', 1)",
            (tenant,),
        )
    first = tmp_path / "first.jsonl"
    delete_long_ago(owner_url, as_admin, tenant)
    lifecycle.export_tenant(owner_url, tenant, first)
    assert tenant_rows(owner_url, tenant)["core.audit_log"] > 0  # the audit log is erased too

    deleted = lifecycle.erase_tenant(owner_url, tenant, timedelta(days=30), "test")
    assert deleted["core.projects"] == 2
    assert tenant_rows(owner_url, tenant) == {}  # catalog-driven: no table holds the id
    assert tenant_rows(owner_url, bystander) == before_bystander
    with psycopg.connect(owner_url) as conn:
        tomb = conn.execute(
            "SELECT erased_by, deleted_at IS NOT NULL FROM core.tenant_tombstones WHERE erased_tenant_id = %s",
            (tenant,),
        ).fetchone()
    assert tomb == ("test", True)
    with psycopg.connect(owner_url) as conn:
        (billing,) = conn.execute(
            "SELECT billing FROM core.tenant_tombstones WHERE erased_tenant_id = %s", (tenant,)
        ).fetchone() or (None,)
    assert billing == [{"period": "2026-01-01", "currency": "EUR", "amount": 10.5, "lines": 1}]

    new_id, counts = lifecycle.import_tenant(owner_url, first, as_new_tenant=True)
    assert counts["core.tasks"] == 6 and counts["core.users"] == 0  # the member exists: kept as is
    assert new_id != tenant
    second = tmp_path / "second.jsonl"
    lifecycle.export_tenant(owner_url, new_id, second)
    assert normalized(second) == normalized(first)
    assert str(tenant) not in second.read_text()
    with psycopg.connect(owner_url) as conn:
        (tasks,) = conn.execute(
            "SELECT used FROM core.quota_counters WHERE tenant_id = %s AND resource = 'tasks'", (new_id,)
        ).fetchone() or (None,)
    assert tasks == 6  # the counters recounted from the rows (ops.reconcile_quotas)
    with psycopg.connect(owner_url) as conn:  # foreign keys still match under the new ids
        (linked,) = conn.execute(
            "SELECT count(*) FROM core.tasks t JOIN core.projects p USING (tenant_id, project_id)"
            " JOIN core.memberships m ON m.tenant_id = t.tenant_id AND m.user_id = t.assignee_id"
            " WHERE t.tenant_id = %s",
            (new_id,),
        ).fetchone() or (0,)
    assert linked == 6

    # an export of a tenant that exists is refused unless it gets new ids
    with pytest.raises(lifecycle.LifecycleError, match="exists"):
        lifecycle.import_tenant(owner_url, second)


def test_cli_exports_and_refuses_an_early_erase_with_exit_1(new_tenant, owner_url, as_admin, tmp_path):
    tenant = new_tenant()
    delete_long_ago(owner_url, as_admin, tenant, days=10)
    env = dict(os.environ) | {"TENANTRY_DATABASE_URL": owner_url, "TENANTRY_STATE_DIR": str(tmp_path)}

    def tenantry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tenantry", "tenant", *args], env=env, capture_output=True, text=True, timeout=120
        )

    exported = tenantry("export", str(tenant), "--out", str(tmp_path / "t.jsonl"))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "t.jsonl.manifest.json").exists()
    refused = tenantry("erase", str(tenant))  # 10 days ago, default grace 30 days
    assert refused.returncode == 1
    assert "within the grace period (30 days)" in refused.stderr and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: TN004 tenant_not_erasable: tenant ")  # db/friendly.py, one line
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    erased = tenantry("erase", str(tenant), "--grace-days", "7")
    assert erased.returncode == 0, erased.stderr
    assert tenant_rows(owner_url, tenant) == {}


def test_import_into_an_empty_database_restores_the_same_rows(
    api_pool, new_tenant, owner_url, scratch_database, tmp_path
):
    tenant = new_tenant()
    populate(api_pool, tenant)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    lifecycle.export_tenant(owner_url, tenant, first)
    empty = scratch_database("lifecycle_import", migrated=True)

    imported, counts = lifecycle.import_tenant(empty, first)
    assert imported == tenant and counts["core.users"] == 1  # the member's account, without a password
    lifecycle.export_tenant(empty, tenant, second)
    assert second.read_text() == first.read_text()  # same ids, same rows, same order
    with psycopg.connect(empty) as conn:
        assert conn.execute("SELECT password_hash FROM core.users").fetchall() == [(None,)]


def test_import_as_new_tenant_beside_the_source_names_the_taken_slug(api_pool, new_tenant, owner_url, tmp_path):
    tenant = new_tenant()
    out = tmp_path / "t.jsonl"
    lifecycle.export_tenant(owner_url, tenant, out)
    with pytest.raises(lifecycle.LifecycleError, match=r"core.tenant_slugs: .*nothing was imported"):
        lifecycle.import_tenant(owner_url, out, as_new_tenant=True)
    assert lifecycle.verify_export(out)["tenant_id"] == str(tenant)

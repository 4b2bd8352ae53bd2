"""Analytics for analysts (analytics/*.sql, sql/repeatable/450_analytics.sql): the rollup
tables and materialized views that ops.refresh_analytics fills, the live views, the
analyst role's limits (no secret, no write, its own statement timeout), parallel
refreshes, the usage report, and the README's example queries.

Exact cross-tenant numbers (plan mix, growth, the report) are checked in a database of the
test's own (`scratch_database`): the session's holds every other test's tenants.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import uuid
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from typer.testing import CliRunner

from db import PROJECT_ROOT, dsn
from db.settings import ANALYST_ROLE, WORKER_ROLE, Settings, get_settings
from jobs import report
from tests.helpers import one

README = PROJECT_ROOT / "analytics" / "README.md"
UTC = dt.UTC
MONTH = dt.date(2003, 7, 1)  # a generated month far from every other test's data


def role_url(database_url: str, role: str) -> str:
    return dsn.role_url(Settings(database_url=database_url), role)


def connect(url: str, role: str | None = None, **kwargs: Any) -> psycopg.Connection[dict[str, Any]]:
    return psycopg.connect(role_url(url, role) if role else url, row_factory=dict_row, **kwargs)


def at(day: int, hour: int = 12, month: dt.date = MONTH) -> dt.datetime:
    return dt.datetime(month.year, month.month, day, hour, tzinfo=UTC)


def add_tenant(conn, plan: str = "pro", created_at: dt.datetime | None = None, slug: str | None = None) -> uuid.UUID:
    """A tenant row straight in core.tenants (as the owner), created when the test says."""
    slug = slug or f"a-{uuid.uuid4().hex[:10]}"
    return conn.execute(
        "INSERT INTO core.tenants (slug, name, plan_id, created_at) VALUES (%s, %s, %s, COALESCE(%s, now()))"
        " RETURNING tenant_id",
        (slug, f"Tenant {slug}", plan, created_at),
    ).fetchone()["tenant_id"]


def add_rollup(conn, tenant, metric: str, granularity: str, start: dt.datetime, value: int, events: int) -> None:
    conn.execute(
        "INSERT INTO core.usage_rollups (tenant_id, metric, granularity, bucket_start, value, events)"
        " VALUES (%s, %s, %s, %s, %s, %s)",
        (tenant, metric, granularity, start, value, events),
    )


def admin_action(conn, tenant, action: str, when: dt.datetime) -> None:
    conn.execute(
        "INSERT INTO core.platform_admin_actions (tenant_id, admin_user_id, action, at) VALUES (%s, %s, %s, %s)",
        (tenant, uuid.uuid4(), action, when),
    )


def refresh(url: str, since: dt.date | None = None) -> dict[str, Any]:
    """ops.refresh_analytics as the worker role (the job's way in)."""
    with connect(url, WORKER_ROLE) as conn:
        row = conn.execute("SELECT * FROM ops.refresh_analytics(%s)", (since,)).fetchone()
    assert row is not None
    return row


def usage_month(url: str) -> dict[str, uuid.UUID]:
    """Two tenants with known usage in MONTH (as rollups: analytics never reads raw
    events) and known writes; the report and the rollup tests read them."""
    with connect(url, autocommit=True) as conn:
        big = add_tenant(conn, created_at=at(1), slug="big-corp")
        small = add_tenant(conn, plan="free", created_at=at(2), slug="small-shop")
        for tenant, calls in ((big, (100, 50)), (small, (7, 0))):
            for day, n in zip((3, 4), calls, strict=True):
                if n:
                    add_rollup(conn, tenant, "api_calls", "day", at(day, 0), n, n)
            add_rollup(conn, tenant, "api_calls", "period", at(1, 0), sum(calls), sum(calls))
        add_rollup(conn, big, "tokens", "day", at(3, 0), 5000, 2)
        add_rollup(conn, big, "tokens", "period", at(1, 0), 5000, 2)
        # writes: triggers off, so that the test's timestamps stay as written
        conn.execute("SET session_replication_role = replica")
        project = conn.execute(
            "INSERT INTO core.projects (tenant_id, name, created_at, updated_at) VALUES (%s, 'p', %s, %s)"
            " RETURNING project_id",
            (small, at(5), at(6)),
        ).fetchone()["project_id"]
        for _ in range(2):
            conn.execute(
                "INSERT INTO core.tasks (tenant_id, project_id, title, created_at, updated_at)"
                " VALUES (%s, %s, 't', %s, %s)",
                (small, project, at(5), at(5)),
            )
        conn.execute("SET session_replication_role = DEFAULT")
    return {"big": big, "small": small}


# -- the rollup tables -------------------------------------------------------------------------


def test_refresh_fills_the_rollups_from_usage_rollups_and_writes(scratch_database):
    url = scratch_database("rollups", migrated=True)
    tenants = usage_month(url)
    big, small = tenants["big"], tenants["small"]

    done = refresh(url, MONTH)
    assert not done["skipped"] and done["since"] == MONTH

    with connect(url, ANALYST_ROLE) as conn:
        daily = {
            (r["tenant_id"], r["metric"], r["day"]): (r["value"], r["events"])
            for r in conn.execute("SELECT * FROM analytics.usage_daily")
        }
        assert daily == {
            (big, "api_calls", dt.date(2003, 7, 3)): (100, 100),
            (big, "api_calls", dt.date(2003, 7, 4)): (50, 50),
            (big, "tokens", dt.date(2003, 7, 3)): (5000, 2),
            (small, "api_calls", dt.date(2003, 7, 3)): (7, 7),
        }
        monthly = {
            (r["tenant_id"], r["metric"]): r["value"]
            for r in conn.execute("SELECT * FROM analytics.usage_monthly WHERE month = %s", (MONTH,))
        }
        assert monthly == {(big, "api_calls"): 150, (big, "tokens"): 5000, (small, "api_calls"): 7}
        activity = {
            (r["tenant_id"], r["day"]): (
                r["api_calls"],
                r["projects_created"],
                r["projects_updated"],
                r["tasks_created"],
            )
            for r in conn.execute("SELECT * FROM analytics.activity_daily")
        }
        assert activity == {
            (big, dt.date(2003, 7, 3)): (100, 0, 0, 0),
            (big, dt.date(2003, 7, 4)): (50, 0, 0, 0),
            (small, dt.date(2003, 7, 3)): (7, 0, 0, 0),
            (small, dt.date(2003, 7, 5)): (0, 1, 0, 2),
            (small, dt.date(2003, 7, 6)): (0, 0, 1, 0),
        }
        month = {
            r["tenant_id"]: (
                r["api_calls"],
                r["writes"],
                r["active_days"],
                r["active_by_api_calls"],
                r["active_by_writes"],
            )
            for r in conn.execute("SELECT * FROM analytics.tenant_activity_monthly WHERE month = %s", (MONTH,))
        }
        assert month == {big: (150, 0, 2, True, False), small: (7, 4, 3, True, True)}
        active = conn.execute("SELECT * FROM analytics.active_tenants_monthly WHERE month = %s", (MONTH,)).fetchone()
        assert (active["by_api_calls"], active["by_writes"], active["by_either"]) == (2, 1, 2)

    # idempotent: a second run writes the same numbers; a late rollup change inside the
    # window is picked up, one before the window is left alone
    with connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE core.usage_rollups SET value = 120 WHERE tenant_id = %s AND granularity = 'day'"
            " AND metric = 'api_calls' AND bucket_start = %s",
            (big, at(4, 0)),
        )
        conn.execute(
            "UPDATE core.usage_rollups SET value = 999 WHERE tenant_id = %s AND granularity = 'day'"
            " AND metric = 'api_calls' AND bucket_start = %s",
            (big, at(3, 0)),
        )
    refresh(url, dt.date(2003, 7, 4))
    with connect(url, ANALYST_ROLE) as conn:
        values = {
            r["day"]: r["value"]
            for r in conn.execute(
                "SELECT day, value FROM analytics.usage_daily WHERE tenant_id = %s AND metric = 'api_calls'", (big,)
            )
        }
    assert values == {dt.date(2003, 7, 3): 100, dt.date(2003, 7, 4): 120}


def test_the_default_window_covers_the_usage_lateness_window(owner):
    window = owner.execute("SELECT core.analytics_refresh_window() AS w").fetchone()["w"]
    lateness = owner.execute("SELECT core.usage_lateness_window() AS w").fetchone()["w"]
    assert window > lateness
    done = owner.execute("SELECT * FROM ops.refresh_analytics()").fetchone()
    assert done["since"] == (dt.datetime.now(UTC) - window).date()


# -- plan mix, MRR and growth (materialized views) -----------------------------------------------


def test_plan_mix_mrr_and_growth_are_precomputed_and_exact(scratch_database):
    url = scratch_database("growth", migrated=True)
    jan, feb, mar = dt.date(2004, 1, 1), dt.date(2004, 2, 1), dt.date(2004, 3, 1)
    with connect(url, autocommit=True) as conn:
        pro1 = add_tenant(conn, "pro", at(5, month=jan))
        add_tenant(conn, "pro", at(6, month=jan))
        free = add_tenant(conn, "free", at(7, month=jan))
        ent = add_tenant(conn, "enterprise", at(3, month=feb))
        # pro1: suspended in February, reactivated in March (by administrators)
        admin_action(conn, pro1, "suspend", at(10, month=feb))
        admin_action(conn, pro1, "reactivate", at(2, month=mar))
        # free: suspended in February, then deleted in March (one churn, not two)
        admin_action(conn, free, "suspend", at(11, month=feb))
        admin_action(conn, free, "delete", at(1, month=mar))
        conn.execute("UPDATE core.tenants SET status = 'suspended' WHERE tenant_id = %s", (free,))
        conn.execute("UPDATE core.tenants SET status = 'deleted' WHERE tenant_id = %s", (free,))
        # ent: suspended now by something other than an administrator (e.g. billing)
        conn.execute("UPDATE core.tenants SET status = 'suspended' WHERE tenant_id = %s", (ent,))

    with connect(url, ANALYST_ROLE) as conn:
        stale = conn.execute("SELECT sum(active_tenants) AS n FROM analytics.plan_mix").fetchone()["n"]
    assert stale == 0  # precomputed: nothing changes until the refresh

    refresh(url)
    with connect(url, ANALYST_ROLE) as conn:
        mix = {r["plan_id"]: r for r in conn.execute("SELECT * FROM analytics.plan_mix")}
        mrr = conn.execute("SELECT * FROM analytics.mrr").fetchall()
        growth = {
            r["month"]: (r["new_tenants"], r["churned_tenants"], r["reactivated_tenants"], r["active_at_month_end"])
            for r in conn.execute("SELECT * FROM analytics.growth_monthly WHERE month BETWEEN %s AND %s", (jan, mar))
        }
        now_month = conn.execute("SELECT * FROM analytics.growth_monthly ORDER BY month DESC LIMIT 1").fetchone()
    assert {p: (m["active_tenants"], m["suspended_tenants"], m["mrr_cents"]) for p, m in mix.items()} == {
        "free": (0, 0, 0),  # deleted tenants are left out
        "pro": (2, 0, 2 * 4900),
        "enterprise": (0, 1, 0),  # suspended: pays nothing
    }
    assert mix["pro"]["share_of_active_percent"] == Decimal("100.0")
    assert [(r["currency"], r["mrr_cents"], r["active_tenants"], r["paying_tenants"]) for r in mrr] == [
        ("EUR", 9800, 2, 2)
    ]
    assert growth == {jan: (3, 0, 0, 3), feb: (1, 2, 0, 2), mar: (0, 0, 1, 3)}
    # the billing-style suspension shows in the current month; everything adds up
    assert now_month["churned_tenants"] == 1 and now_month["active_at_month_end"] == 2


# -- quota pressure (live) -------------------------------------------------------------------------


def test_quota_pressure_flags_what_get_quotas_flags(api_pool, analyst_pool, owner, new_tenant, as_admin):
    tenant = new_tenant(plan="free")  # 3 projects at most
    for i in range(3):
        one(api_pool, tenant, "create_project", f"p{i}", "")

    def pressure() -> dict[str, tuple]:
        with analyst_pool.connection() as conn:
            rows = conn.execute(
                "SELECT resource, used, quota_limit, percent_used, near_limit, over_limit"
                " FROM analytics.quota_pressure WHERE tenant_id = %s",
                (tenant,),
            ).fetchall()
        return {r[0]: r[1:] for r in rows}

    def expected() -> dict[str, tuple]:
        quotas = owner.execute("SELECT core.quota_report(%s) AS q", (tenant,)).fetchone()["q"]
        return {r["resource"]: (r["warning"], r["over_limit"]) for r in quotas["resources"] if r["limit"] is not None}

    found = pressure()
    assert found["projects"][:4] == (3, 3, Decimal("100.0"), True) and not found["projects"][4]
    assert {k: v[3:] for k, v in found.items()} == expected()

    with as_admin() as conn:
        conn.execute("SELECT admin.set_quota_override(%s, 'projects', 2)", (tenant,))
    found = pressure()
    assert found["projects"][1:] == (2, Decimal("150.0"), True, True)
    assert {k: v[3:] for k, v in found.items()} == expected()


# -- the analyst role: no secret, no write, its own timeout -------------------------------------------------


SECRET_COLUMNS = r"""
SELECT format('%I.%I', n.nspname, c.relname) AS tbl, a.attname AS col
  FROM pg_attribute AS a
  JOIN pg_class AS c ON c.oid = a.attrelid
  JOIN pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('core', 'auth', 'audit', 'billing', 'usage') AND c.relkind IN ('r', 'p', 'v', 'm')
   AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped
   AND a.attname ~ '(hash|secret|token)'
 ORDER BY 1, 2
"""


def refused(conn, statement: str, sqlstate: str = "42501") -> None:
    with pytest.raises(psycopg.Error) as exc, conn.transaction():
        conn.execute(statement)
    assert exc.value.sqlstate == sqlstate, (statement, exc.value.sqlstate, str(exc.value))


def test_the_analyst_reaches_no_secret(owner, owner_url):
    secrets = owner.execute(SECRET_COLUMNS).fetchall()
    found = {(r["tbl"], r["col"]) for r in secrets}
    # the catalog search finds the known secrets (else it searches the wrong place)
    assert {("core.users", "password_hash"), ("core.api_keys", "key_hash")} <= found
    assert any("token" in col for _, col in found)
    with connect(owner_url, ANALYST_ROLE, autocommit=True) as conn:
        for table, column in sorted(found):
            refused(conn, f'SELECT "{column}" FROM {table} LIMIT 1')
        # and no core table at all
        for row in owner.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n"
            " ON n.oid = c.relnamespace WHERE n.nspname = 'core' AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        ):
            refused(conn, f"SELECT 1 FROM {row['t']} LIMIT 1")


def test_the_analyst_writes_nothing_and_calls_no_function_but_analytics(owner, owner_url):
    relations = owner.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) AS rel, c.relkind::text AS kind"
        " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'analytics' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
    ).fetchall()
    assert {"analytics.usage_daily", "analytics.plan_mix", "analytics.quota_pressure"} <= {r["rel"] for r in relations}
    functions = owner.execute(
        "SELECT p.oid::regprocedure::text AS sig, p.pronamespace::regnamespace::text AS schema,"
        " p.proname, p.pronargs FROM pg_proc p"
        " WHERE p.pronamespace::regnamespace::text IN ('api', 'ops', 'admin', 'auth') ORDER BY 1"
    ).fetchall()
    assert {"ops.refresh_analytics(timestamp with time zone)"} <= {f["sig"] for f in functions}
    with connect(owner_url, ANALYST_ROLE, autocommit=True) as conn:
        for rel in relations:
            name = rel["rel"]
            for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
                allowed = conn.execute("SELECT has_table_privilege(%s, %s) AS ok", (name, privilege)).fetchone()
                assert not allowed["ok"], (name, privilege)
            column = conn.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 1", (name,)
            ).fetchone()["attname"]
            # a view PostgreSQL cannot write through (an aggregate, a function's rows) says
            # so before it checks privileges (55000); the privilege is missing all the same
            updatable = (
                rel["kind"] in ("r", "p", "m")
                or conn.execute(
                    "SELECT is_insertable_into = 'YES' AS ok FROM information_schema.tables"
                    " WHERE format('%%I.%%I', table_schema, table_name) = %s",
                    (name,),
                ).fetchone()["ok"]
            )
            state = "42501" if updatable else "55000"
            refused(conn, f"INSERT INTO {name} DEFAULT VALUES", state)
            refused(conn, f'UPDATE {name} SET "{column}" = "{column}"', state)
            refused(conn, f"DELETE FROM {name}", state)
            if rel["kind"] in ("r", "p"):
                refused(conn, f"TRUNCATE {name}")
            if rel["kind"] == "m":
                refused(conn, f"REFRESH MATERIALIZED VIEW {name}")
        for function in functions:
            args = ", ".join(["NULL"] * function["pronargs"])
            refused(conn, f"SELECT {function['schema']}.{function['proname']}({args})")


def test_the_analyst_has_its_own_statement_timeout(owner_url):
    with connect(owner_url, ANALYST_ROLE, autocommit=True) as conn:
        rows = {
            r["name"]: (r["setting"], r["source"])
            for r in conn.execute(
                "SELECT name, setting, source FROM pg_settings"
                " WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout')"
            )
        }
        assert rows == {
            "statement_timeout": ("120000", "user"),  # 2 min, set for the role (policies/00_roles.sql)
            "lock_timeout": ("5000", "user"),
            "idle_in_transaction_session_timeout": ("300000", "user"),
        }
        # the bound cancels an analyst's query (shortened here so the test is quick)
        conn.execute("SET statement_timeout = '200ms'")
        refused(conn, "SELECT count(*) FROM analytics.metrics, pg_sleep(1)", "57014")


# -- refreshes at once, and readers during a refresh ---------------------------------------------------------


def test_parallel_refreshes_are_safe_and_exact(scratch_database):
    url = scratch_database("parallel", migrated=True)
    tenants = usage_month(url)
    worker = role_url(url, WORKER_ROLE)
    for round_ in range(5):
        with connect(url, autocommit=True) as conn:  # new usage between rounds
            conn.execute(
                "UPDATE core.usage_rollups SET value = value + 1 WHERE tenant_id = %s AND granularity = 'day'",
                (tenants["big"],),
            )
        barrier = threading.Barrier(6)
        results: list[Any] = []

        def run(barrier: threading.Barrier, results: list[Any]) -> None:
            with psycopg.connect(worker, row_factory=dict_row) as conn:
                barrier.wait()
                try:
                    results.append(conn.execute("SELECT * FROM ops.refresh_analytics(%s)", (MONTH,)).fetchone())
                except psycopg.Error as exc:
                    results.append(exc)

        threads = [threading.Thread(target=run, args=(barrier, results)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [r for r in results if isinstance(r, Exception)]
        assert not errors, (round_, errors)
        assert any(not r["skipped"] for r in results)
        with connect(url, ANALYST_ROLE) as conn:
            got = conn.execute(
                "SELECT sum(value) AS v FROM analytics.usage_daily WHERE tenant_id = %s", (tenants["big"],)
            ).fetchone()["v"]
        with connect(url) as conn:
            want = conn.execute(
                "SELECT sum(value) AS v FROM core.usage_rollups WHERE tenant_id = %s AND granularity = 'day'",
                (tenants["big"],),
            ).fetchone()["v"]
        assert got == want == 150 + 5000 + 3 * (round_ + 1)


def test_readers_never_wait_for_a_refresh(scratch_database):
    # a plain REFRESH takes an ACCESS EXCLUSIVE lock and would wait for the reader
    url = scratch_database("concurrently", migrated=True)
    with connect(url, ANALYST_ROLE) as reader:
        reader.execute("SELECT * FROM analytics.plan_mix").fetchall()  # holds its lock until commit
        with connect(url, WORKER_ROLE) as conn:
            conn.execute("SET lock_timeout = '2s'")
            done = conn.execute("SELECT * FROM ops.refresh_analytics()").fetchone()
        assert not done["skipped"]
        reader.execute("SELECT * FROM analytics.growth_monthly").fetchall()


# -- comments, README, report, CLI ---------------------------------------------------------------------------


def test_every_analytics_relation_and_column_has_a_comment(owner):
    missing = owner.execute(
        "SELECT format('%I.%I', n.nspname, c.relname) AS rel, a.attname AS col"
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        "  LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE n.nspname = 'analytics' AND c.relkind IN ('r', 'p', 'v', 'm')"
        "   AND (obj_description(c.oid, 'pg_class') IS NULL OR col_description(c.oid, a.attnum) IS NULL)"
    ).fetchall()
    assert missing == []


def readme_queries() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_documents_every_view_and_its_example_queries_run_as_the_analyst(owner, owner_url):
    text = README.read_text()
    relations = [
        r["rel"]
        for r in owner.execute(
            "SELECT c.relname AS rel FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'analytics' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
        )
    ]
    assert [r for r in relations if f"analytics.{r}`" not in text] == []
    queries = readme_queries()
    assert len(queries) >= 4
    with connect(owner_url, ANALYST_ROLE, autocommit=True) as conn:
        for query in queries:
            conn.execute(query).fetchall()


def test_the_usage_report_renders_a_generated_month(scratch_database, tmp_path):
    url = scratch_database("report", migrated=True)
    usage_month(url)
    refresh(url, MONTH)

    path = report.usage_report(role_url(url, ANALYST_ROLE), "2003-07", tmp_path / "out")
    page = path.read_text()
    assert "Usage report 2003-07" in page
    # the month's totals and the top tenants, in order
    assert re.search(r"<td>api_calls</td><td>calls</td><td>157</td>", page)
    assert re.search(r"<td>tokens</td><td>tokens</td><td>5000</td>", page)
    assert page.index("<td>big-corp</td><td>150</td>") < page.index("<td>small-shop</td><td>7</td>")
    for image in ("usage_per_metric.svg", "top_tenants.svg", "quota_pressure.svg"):
        assert f'src="{image}"' in page
        root = ET.parse(path.parent / image).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert "big-corp" in (path.parent / "top_tenants.svg").read_text()
    assert "api_calls" in (path.parent / "usage_per_metric.svg").read_text()


def test_the_cli_prints_the_analyst_dsn_and_writes_the_report(owner_url, monkeypatch, tmp_path):
    from tenantry.cli import app

    monkeypatch.setenv("TENANTRY_DATABASE_URL", owner_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        printed = runner.invoke(app, ["analytics", "psql", "--dsn"])
        written = runner.invoke(app, ["report", "usage", "--period", "2003-07", "--out", str(tmp_path)])
        wrong = runner.invoke(app, ["report", "usage", "--period", "2003-13", "--out", str(tmp_path)])
    finally:
        get_settings.cache_clear()
    assert printed.exit_code == 0, printed.output
    with psycopg.connect(printed.output.strip()) as conn:
        assert conn.execute("SELECT current_user").fetchone()[0] == ANALYST_ROLE
    assert written.exit_code == 0, written.output
    assert Path(written.output.strip()).read_text().startswith("<!doctype html>")
    assert wrong.exit_code != 0 and "YYYY-MM" in wrong.output


def test_lint_holds_analytics_tables_to_analyst_reads(scratch_database):
    from db import lint

    url = scratch_database("lint", migrated=True)
    assert [p for p in lint.lint(url) if p.obj.startswith("analytics.")] == []
    with connect(url, autocommit=True) as conn:
        conn.execute('CREATE POLICY "analysts write" ON analytics.usage_daily FOR ALL TO tenantry_analyst USING (true)')
    assert [str(p) for p in lint.lint(url) if p.obj.startswith("analytics.")] == [
        "analytics.usage_daily: an analytics table's policies are FOR SELECT TO tenantry_analyst"
    ]

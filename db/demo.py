"""`tenantry demo`: start, migrate, and show the tenancy core at work.

Two tenants work side by side through the api role; the demo shows that each sees only
its own rows, that another tenant's ids are simply not found, that a transaction
without a tenant sees nothing, and that a suspended tenant can read but not write.
Re-runnable: each run makes tenants with fresh slugs.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import psycopg
from psycopg.types.json import Jsonb

from db import embedded, lint, migrate
from db.context import open_pool, tenant_transaction
from db.settings import ANALYST_ROLE, API_ROLE, PLATFORM_ADMIN_ROLE, Settings

Echo = Callable[[str], None]

WORKLOAD = {
    "acme": {"Website relaunch": ["Wireframes", "Copy review", "Launch"], "Billing": ["Invoice PDF"]},
    "globex": {"Doomsday device": ["Procure magma", "Hire henchmen"]},
}


def run(settings: Settings, echo: Echo = print) -> None:
    url = embedded.ensure_database(settings)
    echo(f"database   {embedded.redacted(url)}")
    migrate.migrate(url, settings=settings)
    st = migrate.status(url)
    echo(f"schema     revision {st.current}; citus: {st.citus_version or 'no (single node)'}")
    problems = lint.lint(url)
    echo(f"lint       {'ok' if not problems else f'{len(problems)} problem(s)'}")

    settings = settings.model_copy(update={"database_url": url})
    pools = {role: open_pool(settings.role_url(role), settings, role)
             for role in (API_ROLE, PLATFORM_ADMIN_ROLE, ANALYST_ROLE)}
    try:
        _traffic(pools, echo)
    finally:
        for pool in pools.values():
            pool.close()


def _traffic(pools: dict, echo: Echo) -> None:
    api, admin, analyst = pools[API_ROLE], pools[PLATFORM_ADMIN_ROLE], pools[ANALYST_ROLE]
    run_id = secrets.token_hex(2)
    tenants: dict[str, str] = {}
    echo("\n-- a platform admin creates two tenants")
    for name in WORKLOAD:
        with admin.connection() as conn:
            tenant_id = conn.execute("SELECT tenant_id FROM admin.create_tenant(%s, %s, 'pro')",
                                     (f"{name}-{run_id}", name.title())).fetchone()[0]
        tenants[name] = tenant_id
        echo(f"tenant     {name}-{run_id}  {tenant_id}")

    echo("\n-- each tenant creates its projects and tasks through api.* as tenantry_api")
    first_project: dict[str, str] = {}
    for name, projects in WORKLOAD.items():
        tenant = tenants[name]
        with tenant_transaction(api, tenant, actor_type="system", request_id=f"demo-{run_id}") as conn:
            for project, tasks in projects.items():
                pid = conn.execute("SELECT project_id FROM api.create_project(%s, %s)", (tenant, project)).fetchone()[0]
                first_project.setdefault(name, pid)
                for title in tasks:
                    conn.execute("SELECT api.create_task(%s, %s, %s)", (tenant, pid, title))
            conn.execute("SELECT api.update_task(%s, task_id, %s) FROM api.list_tasks(%s, p_limit => 1)",
                         (tenant, Jsonb({"status": "done"}), tenant))
        echo(f"{name:<10} {len(projects)} project(s), {sum(map(len, projects.values()))} task(s)")

    echo("\n-- isolation: what each tenant sees")
    for name, tenant in tenants.items():
        with tenant_transaction(api, tenant) as conn:
            names = [r[0] for r in conn.execute("SELECT name FROM api.list_projects(%s)", (tenant,))]
            raw = conn.execute("SELECT count(*) FROM core.tasks").fetchone()[0]
        echo(f"{name:<10} projects {names}; SELECT count(*) FROM core.tasks -> {raw} (RLS: own rows only)")

    with tenant_transaction(api, tenants["acme"]) as conn:
        try:
            conn.execute("SELECT api.get_project(%s, %s)", (tenants["acme"], first_project["globex"]))
        except psycopg.Error as exc:
            echo(f"acme asks for globex's project id -> {exc.sqlstate}: {exc.diag.message_primary}")
    with tenant_transaction(api, tenants["acme"]) as conn:
        try:
            conn.execute("INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'planted')", (tenants["globex"],))
        except psycopg.Error as exc:
            echo(f"acme inserts a row for globex -> {exc.sqlstate}: {exc.diag.message_primary}")
    with tenant_transaction(api, None) as conn:
        count = conn.execute("SELECT count(*) FROM core.projects").fetchone()[0]
    echo(f"no tenant context: SELECT count(*) FROM core.projects -> {count}")

    echo("\n-- a suspended tenant can read but not write")
    with admin.connection() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (tenants["globex"],))
    with tenant_transaction(api, tenants["globex"]) as conn:
        count = conn.execute("SELECT count(*) FROM api.list_projects(%s)", (tenants["globex"],)).fetchone()[0]
    echo(f"globex reads: {count} project(s)")
    try:
        with tenant_transaction(api, tenants["globex"]) as conn:
            conn.execute("SELECT api.create_project(%s, 'Plan B')", (tenants["globex"],))
    except psycopg.Error as exc:
        echo(f"globex writes -> {exc.sqlstate}: {exc.diag.message_primary} ({exc.diag.message_hint})")

    echo("\n-- an analyst reads analytics.tenant_overview (cross-tenant, no raw tables)")
    with analyst.connection() as conn:
        rows = conn.execute(
            "SELECT slug, plan_id, status, live_projects, open_tasks, done_tasks FROM analytics.tenant_overview"
            " WHERE tenant_id = ANY(%s) ORDER BY slug", (list(tenants.values()),)).fetchall()
    echo(f"{'slug':<14}{'plan':<6}{'status':<11}{'projects':>9}{'open':>6}{'done':>6}")
    for slug, plan, status, projects, open_tasks, done in rows:
        echo(f"{slug:<14}{plan:<6}{status:<11}{projects:>9}{open_tasks:>6}{done:>6}")

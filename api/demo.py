"""`tenantry demo`: start everything, migrate, and run a real flow over HTTP.

PostgreSQL (embedded by default) and Redis are started if needed, the API runs as a
`tenantry serve` subprocess, and the demo talks to it like any client: sign-ups, an
invitation accepted by a new member, an API key, projects and tasks, isolation between
tenants, a suspended tenant, rate-limit headers, and the analysts' view. Re-runnable:
each run makes new tenants and users.
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable

import httpx
import psycopg

from api.server import spawn
from db import dsn, lint, migrate
from db.local import services
from db.local.postgres import port_is_free
from db.platform import grant_platform_admin
from db.settings import ANALYST_ROLE, Settings

Echo = Callable[[str], None]


def run(settings: Settings, echo: Echo = print) -> None:
    settings = services.up(settings)  # database and Redis up
    url = settings.database_url or ""
    migrate.migrate(url, settings=settings)
    st = migrate.status(url)
    echo(
        f"database   revision {st.current}; citus: {st.citus_version or 'no (single node)'}; "
        f"lint: {'ok' if not lint.lint(url) else 'PROBLEMS (run tenantry db lint)'}"
    )
    server, base = _start_api(settings)
    echo(f"api        {base}  (tenantry serve, redis {settings.redis_url})")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            _flow(http, settings, echo)
    finally:
        server.terminate()
        server.wait(timeout=15)


def _start_api(settings: Settings) -> tuple[subprocess.Popen, str]:
    port = settings.api_port
    while not port_is_free(port):
        port += 1
    return spawn(
        {"TENANTRY_DATABASE_URL": settings.database_url or "", "TENANTRY_REDIS_URL": settings.redis_url or ""},
        port,
        settings.state_dir / "demo-api.log",
        ready_path="/ready",
    )


def _show(echo: Echo, label: str, resp: httpx.Response) -> dict:
    body = resp.json() if resp.content else {}
    extra = f"{body.get('code')}: {body.get('detail')}" if resp.status_code >= 400 else ""
    echo(f"  {label:<52} {resp.status_code} {extra}")
    return body


def _flow(http: httpx.Client, settings: Settings, echo: Echo) -> None:
    run_id = secrets.token_hex(3)
    password = f"demo-password-{run_id}"

    echo("\n-- two companies sign up (each gets a tenant and is its owner)")
    accounts = {}
    for name in ("acme", "globex"):
        body = _show(
            echo,
            f"POST /v1/signup {name}",
            http.post(
                "/v1/signup",
                json={
                    "email": f"owner@{name}-{run_id}.test",
                    "name": f"{name.title()} Owner",
                    "password": password,
                    "tenant_slug": f"{name}-{run_id}",
                    "tenant_name": name.title(),
                    "plan": "pro",
                },
            ),
        )
        accounts[name] = body
    acme = {"Authorization": f"Bearer {accounts['acme']['access_token']}"}
    globex = {"Authorization": f"Bearer {accounts['globex']['access_token']}"}

    echo("\n-- acme invites a developer, who accepts and logs in")
    invite = _show(
        echo,
        "POST /v1/invitations (developer)",
        http.post("/v1/invitations", headers=acme, json={"email": f"dev@acme-{run_id}.test", "role": "developer"}),
    )
    _show(
        echo,
        "POST /v1/invitations/accept (new account)",
        http.post(
            "/v1/invitations/accept", json={"token": invite["token"], "name": "Dee Veloper", "password": password}
        ),
    )
    login = _show(
        echo,
        "POST /v1/auth/login",
        http.post("/v1/auth/login", json={"email": f"dev@acme-{run_id}.test", "password": password}),
    )
    dev = {"Authorization": f"Bearer {login['access_token']}"}
    echo(f"  the developer's scopes: {', '.join(login['scopes'])}")

    echo("\n-- the developer creates an API key; a script uses it to create projects and tasks")
    key = _show(
        echo,
        "POST /v1/api-keys (projects:read, projects:write)",
        http.post("/v1/api-keys", headers=dev, json={"name": "ci", "scopes": ["projects:read", "projects:write"]}),
    )
    machine = {"X-API-Key": key["key"]}
    echo(f"  key shown once: {key['key'][:20]}... (only its SHA-256 is stored)")
    project = _show(
        echo,
        "POST /v1/projects (API key, Idempotency-Key)",
        http.post(
            "/v1/projects", headers=machine | {"Idempotency-Key": f"demo-{run_id}"}, json={"name": "Website relaunch"}
        ),
    )
    again = http.post(
        "/v1/projects", headers=machine | {"Idempotency-Key": f"demo-{run_id}"}, json={"name": "Website relaunch"}
    )
    echo(
        f"  the same POST again: {again.status_code}, replayed={again.headers.get('Idempotent-Replayed')}, "
        f"same project={again.json().get('project_id') == project['project_id']}"
    )
    for title in ("Wireframes", "Copy review", "Launch"):
        http.post("/v1/tasks", headers=machine, json={"project_id": project["project_id"], "title": title})
    tasks = http.get("/v1/tasks", headers=dev, params={"project_id": project["project_id"]})
    echo(f"  GET /v1/tasks?project_id=...  {tasks.status_code}: {[t['title'] for t in tasks.json()['items']]}")
    echo(
        f"  rate limit: {tasks.headers.get('RateLimit-Remaining')} of {tasks.headers.get('RateLimit-Limit')} "
        f"left this minute; request id {tasks.headers.get('X-Request-ID')}"
    )
    _show(
        echo,
        "POST /v1/invitations with the API key (no members:manage)",
        http.post("/v1/invitations", headers=machine, json={"email": "x@example.test"}),
    )

    echo("\n-- isolation: globex cannot see or touch acme's data")
    _show(
        echo,
        "GET acme's project with globex's token",
        http.get(f"/v1/projects/{project['project_id']}", headers=globex),
    )
    _show(
        echo,
        "PATCH acme's project with globex's token",
        http.patch(f"/v1/projects/{project['project_id']}", headers=globex, json={"name": "pwned"}),
    )
    listing = http.get("/v1/projects", headers=globex).json()
    echo(f"  globex's project list: {len(listing['items'])} project(s)")

    echo("\n-- a platform operator suspends globex: reads still work, writes do not")
    admin = _make_platform_admin(http, settings, run_id, password)
    _show(
        echo,
        "POST /v1/admin/tenants/{globex}/suspend",
        http.post(f"/v1/admin/tenants/{accounts['globex']['tenant_id']}/suspend", headers=admin),
    )
    _show(echo, "GET /v1/projects as globex", http.get("/v1/projects", headers=globex))
    _show(echo, "POST /v1/projects as globex", http.post("/v1/projects", headers=globex, json={"name": "Plan B"}))

    echo("\n-- an analyst reads analytics.tenant_overview (cross-tenant; no raw tables)")
    with psycopg.connect(dsn.role_url(settings, ANALYST_ROLE)) as conn:
        rows = conn.execute(
            "SELECT slug, plan_id, status, live_projects, open_tasks FROM analytics.tenant_overview"
            " WHERE slug LIKE %s ORDER BY slug",
            (f"%-{run_id}",),
        ).fetchall()
    for slug, plan, status, projects, open_tasks in rows:
        echo(f"  {slug:<16} {plan:<5} {status:<10} projects={projects} open_tasks={open_tasks}")


def _make_platform_admin(http: httpx.Client, settings: Settings, run_id: str, password: str) -> dict:
    """Sign up an operator and grant them platform admin, as `tenantry platform-admin grant` does."""
    email = f"operator@ops-{run_id}.test"
    http.post(
        "/v1/signup",
        json={
            "email": email,
            "name": "Ops",
            "password": password,
            "tenant_slug": f"ops-{run_id}",
            "tenant_name": "Operations",
        },
    )
    grant_platform_admin(settings.database_url or "", email)
    token = http.post("/v1/auth/login", json={"email": email, "password": password}).json()["access_token"]
    return {"Authorization": f"Bearer {token}"}

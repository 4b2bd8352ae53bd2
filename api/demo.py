"""`tenantry demo`: start everything, migrate, and run a real flow over HTTP.

PostgreSQL (embedded by default) and Redis are started if needed, the API runs as a
`tenantry serve` subprocess, and the demo talks to it like any client: sign-ups (on the
free plan) with email verification, an invitation accepted by a new member, an API key,
projects and tasks, isolation between tenants, a suspended tenant, rate-limit headers,
the analysts' view, and then the features around them: acme's audit trail (sealed and
verified), a webhook delivered to a local receiver that checks its signature, the
subscription, a billing export and a usage report. Re-runnable: each run makes new tenants
and users; a step that fails prints why and the demo goes on.

Tokens that reach people by mail (email verification, invitations) are read where the
API's transaction queued them, core.mail_outbox, as the database owner: the demo plays
the recipient's mailbox (delivery, `tenantry mail deliver`, would send them on).
"""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from http.server import ThreadingHTTPServer

import httpx
import psycopg

from api.server import spawn
from db import dsn, lint, migrate
from db.local import services
from db.local.postgres import port_is_free
from db.platform import grant_platform_admin
from db.settings import ANALYST_ROLE, Settings

Echo = Callable[[str], None]


@dataclass(frozen=True)
class Acme:
    """acme's tenant id, its owner's headers, and the platform operator's headers."""

    tenant_id: str
    owner: dict[str, str]
    admin: dict[str, str]


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
    runners = _start_job_runner(settings)
    echo(f"jobs       tenantry worker and tenantry scheduler --speed {DEMO_SPEED} (logs in {settings.state_dir})")
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            acme = _flow(http, settings, echo)
            _jobs(http, settings, echo)
            for section in (_audit, _webhooks, _billing):
                try:
                    section(http, settings, echo, acme)
                except Exception as exc:  # the demo goes on: one line says what failed
                    echo(f"  {section.__name__.strip('_')} step failed: {type(exc).__name__}: {exc}")
    finally:
        for process in (server, *runners):
            process.terminate()
        for process in (server, *runners):
            process.wait(timeout=40)


#: the demo's API and worker may call http:// and loopback webhook URLs (its local receiver);
#: a real deployment leaves this off, so endpoints cannot reach internal addresses (SSRF)
DEMO_WEBHOOK_ENV = {"TENANTRY_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES": "true"}


def _start_api(settings: Settings) -> tuple[subprocess.Popen, str]:
    port = settings.api_port
    while not port_is_free(port):
        port += 1
    return spawn(
        {"TENANTRY_DATABASE_URL": settings.database_url or "", "TENANTRY_REDIS_URL": settings.redis_url or ""}
        | DEMO_WEBHOOK_ENV,
        port,
        settings.state_dir / "demo-api.log",
        ready_path="/ready",
    )


#: the demo's scheduler runs a minute's jobs every 5 seconds
DEMO_SPEED = 12


def _start_job_runner(settings: Settings) -> list[subprocess.Popen]:
    """`tenantry worker` and `tenantry scheduler` as subprocesses (api/ does not import jobs/:
    it runs them as an operator would), logging into the state folder."""
    import os
    import sys

    from db.local.postgres import free_port

    env = (
        dict(os.environ)
        | {
            "TENANTRY_DATABASE_URL": settings.database_url or "",
            "TENANTRY_REDIS_URL": settings.redis_url or "",
            # the API and the worker must share the webhook keys (<state_dir>/webhook_keys)
            "TENANTRY_STATE_DIR": str(settings.state_dir),
        }
        | DEMO_WEBHOOK_ENV
    )
    commands = {
        "demo-worker.log": ["worker", "--threads", "2", "--metrics-port", str(free_port())],
        "demo-scheduler.log": ["scheduler", "--speed", str(DEMO_SPEED)],
    }
    processes = []
    for log_name, args in commands.items():
        with open(settings.state_dir / log_name, "w") as log:  # the child keeps its own descriptor
            processes.append(
                subprocess.Popen([sys.executable, "-m", "tenantry", *args], env=env, stdout=log, stderr=log)
            )
    return processes


def _jobs(http: httpx.Client, settings: Settings, echo: Echo) -> None:
    """Usage ingest, a rollup run by the worker (the scheduler enqueues it), a quota refusal."""
    import json
    import time

    run_id = secrets.token_hex(3)
    email = f"owner@initech-{run_id}.test"
    echo("\n-- the job runner: usage ingested over HTTP, rolled up by the worker; a plan limit refuses")
    body = _show(
        echo,
        "POST /v1/signup initech",
        http.post(
            "/v1/signup",
            json={"email": email, "name": "Initech Owner", "password": f"demo-password-{run_id}",
                  "tenant_slug": f"initech-{run_id}", "tenant_name": "Initech"},
        ),
    )  # fmt: skip
    http.post("/v1/auth/verify-email", json={"token": _mailed_token(settings, email, "verify_email")})
    owner = {"Authorization": f"Bearer {body['access_token']}"}
    events = [
        {"event_id": f"demo-{run_id}-{i}", "metric": "tokens", "quantity": 400, "properties": {"model": "small"}}
        for i in range(3)
    ]
    for label in ("POST /v1/usage/events (a batch of 3)", "the same batch again (a retry)"):
        sent = _show(echo, label, http.post("/v1/usage/events", headers=owner, json={"events": events}))
        echo(f"    accepted {sent.get('accepted')}, duplicates {sent.get('duplicates')}")
    # the scheduler enqueues a rollup every few seconds; the worker runs it
    log = settings.state_dir / "demo-worker.log"
    deadline = time.monotonic() + 30
    params = {"metric": "tokens", "granularity": "day"}
    history = http.get("/v1/usage/history", headers=owner, params=params)
    while not history.json().get("items") and time.monotonic() < deadline:
        time.sleep(0.5)
        history = http.get("/v1/usage/history", headers=owner, params=params)
    runs = [
        json.loads(line)
        for line in log.read_text(errors="replace").splitlines()
        if line.startswith("{") and '"actor": "rollup_usage"' in line and '"job run"' in line
    ]
    if runs:
        last = runs[-1]
        echo(f"  worker: {len(runs)} rollup_usage runs so far; the last {last['outcome']} in {last['ms']} ms")
    _show(echo, "GET /v1/usage/history?metric=tokens&granularity=day", history)
    for item in history.json().get("items", []):
        echo(f"    {item['bucket_start']} {item['metric']}: {item['value']} ({item['events']} events)")
    if not history.json().get("items"):
        echo(f"  no rollup within 30 s (see {log})")
    for i in range(1, 6):  # the free plan allows 3 projects
        resp = http.post("/v1/projects", headers=owner, json={"name": f"Project {i}"})
        if resp.status_code >= 400:
            _show(echo, f"POST /v1/projects #{i} (over the plan's limit)", resp)
            break
    else:
        echo("  unexpected: the free plan's limit of 3 projects refused none of 5")
    _show(echo, "GET /v1/quotas", http.get("/v1/quotas", headers=owner))


def _mailed_token(settings: Settings, to: str, template: str) -> str:
    """The token in the newest `template` mail queued for `to` (the recipient's mailbox)."""
    with psycopg.connect(settings.database_url or "") as conn:
        found = conn.execute(
            "SELECT data ->> 'token' FROM core.mail_outbox WHERE lower(to_address) = lower(%s) AND template = %s"
            " ORDER BY created_at DESC LIMIT 1",
            (to, template),
        ).fetchone()
    if found is None:
        raise RuntimeError(f"no {template} mail to {to} in core.mail_outbox")
    return found[0]


def _show(echo: Echo, label: str, resp: httpx.Response) -> dict:
    body = resp.json() if resp.content else {}
    extra = f"{body.get('code')}: {body.get('detail')}" if resp.status_code >= 400 else ""
    echo(f"  {label:<52} {resp.status_code} {extra}")
    return body


def _flow(http: httpx.Client, settings: Settings, echo: Echo) -> Acme:
    """The main flow; returns what the later sections need of acme (and the operator)."""
    run_id = secrets.token_hex(3)
    password = f"demo-password-{run_id}"

    echo("\n-- two companies sign up (each gets a free-plan tenant and is its owner) and verify their email")
    accounts = {}
    for name in ("acme", "globex"):
        email = f"owner@{name}-{run_id}.test"
        body = _show(
            echo,
            f"POST /v1/signup {name}",
            http.post(
                "/v1/signup",
                json={
                    "email": email,
                    "name": f"{name.title()} Owner",
                    "password": password,
                    "tenant_slug": f"{name}-{run_id}",
                    "tenant_name": name.title(),
                },
            ),
        )
        accounts[name] = body
        _show(
            echo,
            "POST /v1/auth/verify-email (the mailed token)",
            http.post("/v1/auth/verify-email", json={"token": _mailed_token(settings, email, "verify_email")}),
        )
    acme = {"Authorization": f"Bearer {accounts['acme']['access_token']}"}
    globex = {"Authorization": f"Bearer {accounts['globex']['access_token']}"}

    echo("\n-- acme invites a developer (the token goes to the invitee by mail), who accepts and logs in")
    _show(
        echo,
        "POST /v1/invitations (developer)",
        http.post("/v1/invitations", headers=acme, json={"email": f"dev@acme-{run_id}.test", "role": "developer"}),
    )
    invitation_token = _mailed_token(settings, f"dev@acme-{run_id}.test", "invitation")
    _show(
        echo,
        "POST /v1/invitations/accept (new account)",
        http.post(
            "/v1/invitations/accept", json={"token": invitation_token, "name": "Dee Veloper", "password": password}
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

    _password_reset(http, settings, echo, f"dev@acme-{run_id}.test")
    return Acme(tenant_id=accounts["acme"]["tenant_id"], owner=acme, admin=admin)


def _password_reset(http: httpx.Client, settings: Settings, echo: Echo, email: str) -> None:
    """A forgotten password, reset by mail: `tenantry mail deliver --once` writes the queued
    mail to the file sink (<state_dir>/mail/, the local default), and the demo opens it."""
    import os
    import re
    import sys
    import time
    from email import message_from_bytes, policy

    echo("\n-- the developer forgot the password: a reset mail (delivered to the file sink), then a new one")
    _show(echo, "POST /v1/auth/password-reset", http.post("/v1/auth/password-reset", json={"email": email}))
    env = os.environ | {
        "TENANTRY_DATABASE_URL": settings.database_url or "",
        "TENANTRY_STATE_DIR": str(settings.state_dir),
    }
    # the worker delivers queued mail every few seconds; `mail deliver --once` does it by
    # hand (it finds nothing left when the worker was first)
    delivered = subprocess.run(
        [sys.executable, "-m", "tenantry", "mail", "deliver", "--once"], env=env, capture_output=True, text=True
    )
    echo(f"  tenantry mail deliver --once: {(delivered.stdout or delivered.stderr).strip()}")
    if settings.smtp_host:
        echo(f"  (sent over SMTP to {settings.smtp_host}: the demo cannot open that mailbox)")
        return
    mails: list = []
    deadline = time.monotonic() + 20
    while not mails and time.monotonic() < deadline:
        for path in sorted((settings.state_dir / "mail").glob("*.eml"), key=lambda p: p.stat().st_mtime):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            text = message.get_body(("plain",))
            found = re.search(r"prt_[A-Za-z0-9_-]+", text.get_content() if text else "")
            if message["To"] == email and found:
                mails.append((path, found.group(0)))
        if not mails:
            time.sleep(0.5)
    if not mails:
        echo("  no reset mail found in the file sink")
        return
    path, token = mails[-1]
    echo(f"  {path}: a reset mail, token {token[:12]}...")
    _show(
        echo,
        "POST /v1/auth/password-reset/confirm (every session ends)",
        http.post("/v1/auth/password-reset/confirm", json={"token": token, "password": "a new demo password"}),
    )
    _show(
        echo,
        "POST /v1/auth/login with the new password",
        http.post("/v1/auth/login", json={"email": email, "password": "a new demo password"}),
    )


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


def _tenantry(settings: Settings, *args: str) -> tuple[int, str]:
    """Run `tenantry ARGS` as an operator would; its exit code and its last line of output."""
    import os
    import sys

    env = os.environ | {
        "TENANTRY_DATABASE_URL": settings.database_url or "",
        "TENANTRY_STATE_DIR": str(settings.state_dir),
    }
    done = subprocess.run([sys.executable, "-m", "tenantry", *args], env=env, capture_output=True, text=True)
    lines = (done.stdout.strip() or done.stderr.strip() or "(no output)").splitlines()
    return done.returncode, lines[-1]


def _audit(http: httpx.Client, settings: Settings, echo: Echo, acme: Acme) -> None:
    """acme's audit trail (written by the database), then its hash chain sealed and verified."""
    echo("\n-- audit: acme's trail (the database writes it), sealed into a hash chain and verified")
    page = _show(
        echo, "GET /v1/audit?limit=5 (oldest first)", http.get("/v1/audit", headers=acme.owner, params={"limit": 5})
    )
    for entry in page.get("items", []):
        echo(
            f"    {entry['occurred_at'][:19]} {entry['action']:<14} {entry['table_name'] or '-':<26} "
            f"by {entry['actor_type'] or '-'} {entry['actor_id'] or ''}"
        )
    for args in (("audit", "seal"), ("audit", "verify", "--tenant", acme.tenant_id)):
        code, line = _tenantry(settings, *args)
        echo(f"  tenantry {' '.join(args[:2])}{' --tenant <acme>' if len(args) > 2 else ''}: {line}"
             f"{'' if code == 0 else f' (exit {code})'}")  # fmt: skip


def _receiver() -> tuple[ThreadingHTTPServer, dict[str, str], str, list[dict]]:
    """A local webhook receiver on a free port, in a thread: each delivery is recorded with
    whether its Standard Webhooks signature verified (the secret is set once it is known)."""
    import base64
    import hashlib
    import hmac
    import json
    import threading
    import time
    from http.server import BaseHTTPRequestHandler

    received: list[dict] = []
    secret: dict[str, str] = {}

    def verify(body: bytes, headers) -> bool:  # docs/webhooks.md's receiver, by hand
        msg_id, stamp = headers["webhook-id"], headers["webhook-timestamp"]
        if abs(time.time() - int(stamp)) > 300:
            return False
        key = base64.b64decode(secret["value"].removeprefix("whsec_"))
        expected = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
        return any(
            version == "v1" and hmac.compare_digest(base64.b64decode(sig), expected)
            for version, _, sig in (s.partition(",") for s in headers["webhook-signature"].split())
        )

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                ok = "value" in secret and verify(body, self.headers)
                event = json.loads(body)
            except (KeyError, ValueError):
                ok, event = False, {}
            received.append({"id": self.headers.get("webhook-id"), "type": event.get("type"), "verified": ok})
            self.send_response(204 if ok else 401)  # a refused signature is a failed attempt
            self.end_headers()

        def log_message(self, *args: object) -> None:  # quiet: the demo prints what it got
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, secret, f"http://127.0.0.1:{server.server_address[1]}/hook", received


def _webhooks(http: httpx.Client, settings: Settings, echo: Echo, acme: Acme) -> None:
    """acme moves to pro (webhooks are a plan feature), registers a local endpoint and sends
    it a test event; the worker delivers it and the receiver checks the signature."""
    import time

    echo(
        "\n-- webhooks (a Pro feature: acme upgrades): a local receiver checks each delivery's signature"
        "\n   (the demo's API and worker run with TENANTRY_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES=true because the"
        "\n   receiver is http://127.0.0.1; left off, as in production, such addresses are refused: SSRF)"
    )
    server, secret, url, received = _receiver()
    try:
        # through the subscription, so that billing and the plan agree: the operator records
        # the payment method (the provider's events would), then acme's owner upgrades
        admin_sub = f"/v1/admin/tenants/{acme.tenant_id}/subscription"
        paid = http.put(f"{admin_sub}/payment-method", headers=acme.admin, json={"on_file": True})
        _show(echo, "PUT /v1/admin/.../payment-method (the operator)", paid)
        upgraded = http.post("/v1/billing/subscription/upgrade", headers=acme.owner, json={"plan": "pro"})
        _show(echo, "POST /v1/billing/subscription/upgrade pro", upgraded)
        if upgraded.status_code != 200:  # the operator's direct way (the subscription keeps its plan)
            moved = http.put(f"/v1/admin/tenants/{acme.tenant_id}/plan", headers=acme.admin, json={"plan": "pro"})
            _show(echo, "PUT /v1/admin/tenants/{acme}/plan pro (the operator)", moved)
        created = http.post("/v1/webhooks", headers=acme.owner, json={"url": url, "event_types": ["*"]})
        endpoint = _show(echo, "POST /v1/webhooks (every event type)", created)
        if created.status_code != 201:
            echo("  no endpoint registered: nothing to deliver")
            return
        secret["value"] = endpoint["secret"]
        echo(f"  secret shown once: {endpoint['secret'][:12]}...")
        sent = http.post(f"/v1/webhooks/{endpoint['endpoint_id']}/test", headers=acme.owner)
        test = _show(echo, "POST /v1/webhooks/{id}/test", sent)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done = [r for r in list(received) if r["verified"] and r["id"] == test.get("event_id")]
            if done:
                echo(f"  delivered and verified: {done[0]['type']} {done[0]['id']}")
                break
            time.sleep(0.3)
        else:
            refused = sum(1 for r in received if not r["verified"])
            echo(
                f"  no verified delivery within 30 s ({len(received)} received, {refused} failed the signature;"
                f" see {settings.state_dir / 'demo-worker.log'})"
            )
    finally:
        server.shutdown()
        server.server_close()


def _billing(http: httpx.Client, settings: Settings, echo: Echo, acme: Acme) -> None:
    """The subscription, last month's invoice lines exported (exactly once), and this
    month's usage report, as an operator runs them."""
    import datetime as dt

    echo("\n-- billing and analytics: the subscription, last month's export (twice: once only), a usage report")
    resp = http.get("/v1/billing/subscription", headers=acme.owner)
    sub = _show(echo, "GET /v1/billing/subscription", resp)
    if resp.status_code == 200:
        echo(
            f"    plan {sub.get('plan')}, {sub.get('status')}, period {str(sub.get('current_period_start'))[:10]}"
            f" .. {str(sub.get('current_period_end'))[:10]}, payment method: {sub.get('payment_method_on_file')}"
        )
    this_month = dt.datetime.now(dt.UTC).date().replace(day=1)
    last_month = (this_month - dt.timedelta(days=1)).replace(day=1)
    exports = settings.state_dir / "exports"
    for _ in range(2):
        code, line = _tenantry(
            settings, "billing", "export", "--period", f"{last_month:%Y-%m}", "--format", "csv", "--dest", str(exports)
        )
        echo(f"  tenantry billing export --period {last_month:%Y-%m} --format csv: {line}"
             f"{'' if code == 0 else f' (exit {code})'}")  # fmt: skip
    code, line = _tenantry(
        settings, "report", "usage", "--period", f"{this_month:%Y-%m}", "--out", str(settings.state_dir / "report")
    )
    outcome = f"wrote {line}" if code == 0 else f"{line} (exit {code})"
    echo(f"  tenantry report usage --period {this_month:%Y-%m}: {outcome}")

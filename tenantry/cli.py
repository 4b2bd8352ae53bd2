"""The `tenantry` entry point (`python -m tenantry`, or `tenantry` in the venv)."""

from __future__ import annotations

import typer

from api.cli import api_app
from db.cli import citus_app, db_app, platform_admin_app, tenant_app
from db.local.cli import services_app
from jobs.analytics_cli import analytics_app, report_app
from jobs.audit_cli import audit_app
from jobs.billing_cli import billing_app
from jobs.cli import jobs_app, mail_app, runner_app

HELP = """tenantry: multi-tenant SaaS platform on PostgreSQL + Citus.

Each sub-command lives beside what it drives: `services` and `citus dev-cluster` in
db/local/ (what runs on this machine), `db`, `citus`, `platform-admin` and `tenant` in db/
(the database), `serve` and `demo` in api/ (the HTTP API), `worker`, `scheduler`, `jobs`,
`mail`, `audit`, `analytics` and `report` in jobs/ (the job runner, outgoing mail, the
audit log's seal chain, analysts' access and reports).
Settings are TENANTRY_* environment variables (README, "Settings")."""

app = typer.Typer(help=HELP, no_args_is_help=True, rich_markup_mode=None)
app.add_typer(services_app, name="services")
app.add_typer(db_app, name="db")
app.add_typer(citus_app, name="citus")
app.add_typer(platform_admin_app, name="platform-admin")
app.add_typer(tenant_app, name="tenant")
app.add_typer(api_app)  # serve, demo
app.add_typer(runner_app)  # worker, scheduler
app.add_typer(jobs_app, name="jobs")
app.add_typer(mail_app, name="mail")
app.add_typer(audit_app, name="audit")
app.add_typer(analytics_app, name="analytics")
app.add_typer(report_app, name="report")
app.add_typer(billing_app, name="billing")

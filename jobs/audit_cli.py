"""`tenantry audit seal` and `tenantry audit verify [--tenant T]`: the audit log's hash
chain by hand, as the worker role (the same ops.* functions the seal_audit job calls)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import typer
from psycopg.rows import dict_row

from db.context import Context, Database
from db.friendly import friendly
from db.local import services
from db.settings import WORKER_ROLE, get_settings

audit_app = typer.Typer(help="The audit log's tamper evidence: seal new rows, verify the chain.", no_args_is_help=True)

Tenant = Annotated[uuid.UUID | None, typer.Option("--tenant", help="Only this tenant (its id).")]
WORKER = Context(actor_type="system", role=WORKER_ROLE)


def _ops(function: str, **arguments: Any) -> list[dict[str, Any]]:
    """The rows of ops.<function>(p_name => value, ...) in one worker transaction."""
    settings = get_settings()
    settings = settings.model_copy(update={"database_url": services.ensure_database(settings)})
    db = Database(settings, name="audit-cli")
    try:
        with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
            named = ", ".join(f"p_{name} => %({name})s" for name in arguments)
            cur.execute(f"SELECT * FROM ops.{function}({named})", arguments)
            return cur.fetchall()
    finally:
        db.close()


@audit_app.command("seal")
@friendly
def audit_seal(tenant: Tenant = None) -> None:
    """Seal every tenant's (or one tenant's) unsealed audit rows into its hash chain now."""
    rows = _ops("seal_audit", tenant_id=tenant)
    for row in rows:
        state = "busy (writers held its lock: next run)" if row["busy"] else f"{row['sealed']} rows sealed"
        typer.echo(f"{row['tenant_id']}: {state}")
    typer.echo(f"sealed {sum(row['sealed'] for row in rows)} rows of {len(rows)} tenants")


@audit_app.command("verify")
@friendly
def audit_verify(tenant: Tenant = None) -> None:
    """Recompute every tenant's (or one tenant's) seal chain; exit 1 naming the first seal
    or row that no longer matches."""
    rows = _ops("verify_audit", tenant_id=tenant)
    broken = [row for row in rows if not row["ok"]]
    for row in broken:
        typer.secho(f"{row['tenant_id']}: BROKEN: {row['problem']}", fg="red", err=True)
    checked = sum(row["rows_checked"] for row in rows)
    seals = sum(row["seals"] for row in rows)
    if broken:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(rows)} tenants, {seals} seals, {checked} sealed rows verified")

"""`tenantry billing …`: the billing export, by hand (the `export_billing` job does the same
for the month that just closed)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from db.context import Database
from db.friendly import friendly
from db.local import services
from db.settings import get_settings

billing_app = typer.Typer(help="Billing: export a closed month's invoice lines.", no_args_is_help=True)


@billing_app.command("export")
@friendly
def export_command(
    period: Annotated[str, typer.Option(help="The calendar month (UTC), YYYY-MM; it must have ended.")],
    dest: Annotated[Path, typer.Option(help="The folder to write into (created if missing).")],
    format: Annotated[str, typer.Option("--format", help="csv (with a header), json (JSON lines) or parquet.")] = (
        "parquet"
    ),
    force: Annotated[
        bool, typer.Option("--force", help="Export again although the ledger has it: a new version, recorded.")
    ] = False,
) -> None:
    """Write the month's invoice lines (usage, and adjustments for late events of earlier
    months) to DEST as billing-<YYYY-MM>-v<version>.<ext>, exactly once per month, format and
    folder: a second run says it was already exported and changes nothing."""
    from jobs import billing_export

    try:
        month = billing_export.parse_period(period)
        if format not in billing_export.FORMATS:
            raise billing_export.ExportError(f"--format is one of {', '.join(billing_export.FORMATS)}, not {format!r}")
    except billing_export.ExportError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    settings = get_settings()
    settings = settings.model_copy(update={"database_url": services.ensure_database(settings)})
    db = Database(settings, dict_rows=True, name="billing-export")
    try:
        result = billing_export.export_period(
            db, month, format, dest, force=force, pause_after_rows=settings.billing_export_pause_after_rows
        )
    finally:
        db.close()
    typer.echo(result.describe())

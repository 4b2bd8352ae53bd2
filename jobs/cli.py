"""`tenantry mail …`: the jobs' commands (mail delivery now; the job runner later)."""

from __future__ import annotations

from typing import Annotated

import typer

from db.friendly import friendly
from db.local import services
from db.settings import get_settings

mail_app = typer.Typer(
    help="Outgoing mail (email verification, invitations, password resets), delivered from the outbox.",
    no_args_is_help=True,
)


@mail_app.command("deliver")
@friendly
def mail_deliver(
    once: Annotated[bool, typer.Option("--once", help="Deliver what is due now, then exit.")] = False,
    batch: Annotated[int, typer.Option(min=1, max=1000, help="Messages claimed at a time.")] = 20,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between passes (without --once).")] = 5.0,
) -> None:
    """Send queued mail over SMTP (TENANTRY_SMTP_*), or, with no SMTP host, write it as .eml
    files into <state_dir>/mail/. Keeps polling until Ctrl-C, unless --once."""
    from jobs import mail

    settings = get_settings()
    settings = settings.model_copy(update={"database_url": services.ensure_database(settings)})
    report = mail.run(settings, once=once, batch=batch, interval=interval, echo=typer.echo)
    if once and report.failed:
        raise typer.Exit(1)

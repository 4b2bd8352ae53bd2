"""Mail delivery: the outbox (core.mail_outbox) drained by the worker role.

SQL queues a message in the transaction that causes it (core.enqueue_mail: a template
name and its data). This module renders it -- plain text and HTML, from the files in
jobs/templates/ (`<template>.txt`, whose first line is `Subject: ...`, and
`<template>.html`), with `string.Template` placeholders (`${token}`; HTML gets its values
escaped) -- and sends it over SMTP, or, when no SMTP host is set (the local default),
writes it as `<mail_id>.eml` into `<state_dir>/mail/`.

Each message is claimed (ops.claim_mail, FOR UPDATE SKIP LOCKED: deliverers never take
the same message), sent, then marked sent (its data, which may hold a token, cleared) or
failed (backoff, given up after settings.mail_max_attempts or at once when the server
refuses the recipient), each step a short transaction of its own: delivery is at least
once. A message that cannot be rendered (an unknown template, missing data) is marked
failed with that reason; it never stops the others.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from string import Template
from typing import Any, Protocol

from psycopg.rows import dict_row

from db.context import Context, Database
from db.settings import WORKER_ROLE, Settings

log = logging.getLogger("tenantry.mail")

TEMPLATES = Path(__file__).parent / "templates"
#: the names core.mail_outbox accepts (its CHECK), so a name is never a path
TEMPLATE_NAME = re.compile(r"[a-z][a-z_]*")
PRODUCT = "tenantry"
SMTP_TIMEOUT_SECONDS = 30
#: how long a claimed message is left to one deliverer before another may try it
LEASE = dt.timedelta(minutes=5)


class RenderError(ValueError):
    """The message cannot be rendered (unknown template, missing data): marked failed."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def template_names() -> list[str]:
    """The templates that have both their parts."""
    return sorted(p.stem for p in TEMPLATES.glob("*.txt") if p.with_suffix(".html").is_file())


def render(template: str, data: Mapping[str, Any], *, app_url: str) -> Rendered:
    """Subject, text and HTML of `template` with `data` (plus `app_url` and `product`)."""
    text_file, html_file = TEMPLATES / f"{template}.txt", TEMPLATES / f"{template}.html"
    if not TEMPLATE_NAME.fullmatch(template) or not (text_file.is_file() and html_file.is_file()):
        raise RenderError(f"unknown mail template {template!r} (known: {', '.join(template_names())})")
    values = {name: "" if value is None else str(value) for name, value in data.items()}
    values |= {"app_url": app_url.rstrip("/"), "product": PRODUCT}
    head, _, text = text_file.read_text().partition("\n\n")
    if not head.startswith("Subject:"):
        raise RenderError(f"mail template {template}.txt does not start with a Subject: line")
    try:
        subject = Template(head.removeprefix("Subject:").strip()).substitute(values)
        body = Template(text).substitute(values)
        markup = Template(html_file.read_text()).substitute({k: html.escape(v) for k, v in values.items()})
    except KeyError as exc:
        raise RenderError(f"mail template {template} needs {exc.args[0]!r}, which the message's data lacks") from None
    except ValueError as exc:  # a malformed placeholder in the template itself
        raise RenderError(f"mail template {template}: {exc}") from None
    # one line: a value cannot add headers
    return Rendered(" ".join(subject.split()), body, markup)


def build_message(mail_id: uuid.UUID, to: str, rendered: Rendered, mail_from: str) -> EmailMessage:
    """A multipart/alternative message (text, then HTML) with a Message-ID made from the mail
    id: a message sent twice (delivery is at least once) is recognisably the same one."""
    domain = parseaddr(mail_from)[1].rpartition("@")[2] or "tenantry.localhost"
    message = EmailMessage()
    message["From"] = mail_from
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = f"<{mail_id}@{domain}>"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


# -- transports ------------------------------------------------------------------------------


class Transport(Protocol):
    def send(self, mail_id: uuid.UUID, message: EmailMessage) -> None: ...

    def close(self) -> None: ...


class FileSink:
    """Writes each message to `<folder>/<mail_id>.eml` (the local default: no mail server)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, mail_id: uuid.UUID, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / f".{mail_id}.partial"
        partial.write_bytes(bytes(message))
        partial.replace(self.folder / f"{mail_id}.eml")  # a reader never sees half a message

    def close(self) -> None:
        pass


class SmtpTransport:
    """One SMTP connection per delivery pass, opened at the first message."""

    def __init__(self, settings: Settings) -> None:
        if not settings.smtp_host:
            raise ValueError("SmtpTransport needs settings.smtp_host")
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        host = s.smtp_host or ""
        context = ssl.create_default_context()
        smtp: smtplib.SMTP
        if s.smtp_tls == "ssl":
            smtp = smtplib.SMTP_SSL(host, s.smtp_port, timeout=SMTP_TIMEOUT_SECONDS, context=context)
        else:
            smtp = smtplib.SMTP(host, s.smtp_port, timeout=SMTP_TIMEOUT_SECONDS)
            if s.smtp_tls == "starttls":
                smtp.starttls(context=context)
        if s.smtp_user:
            password = s.smtp_password.get_secret_value() if s.smtp_password else ""
            smtp.login(s.smtp_user, password)
        return smtp

    def send(self, mail_id: uuid.UUID, message: EmailMessage) -> None:
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            self._smtp.send_message(message)
        except (smtplib.SMTPServerDisconnected, OSError):
            self._smtp = None  # reconnect for the next message
            raise
        except smtplib.SMTPException:
            try:
                self._smtp.rset()  # a refused message leaves the session usable
            except (smtplib.SMTPException, OSError):
                self.close()
            raise

    def close(self) -> None:
        if self._smtp is not None:
            smtp, self._smtp = self._smtp, None
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()


def transport_for(settings: Settings) -> Transport:
    """SMTP when a host is set, else the file sink in <state_dir>/mail/."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    return FileSink(settings.state_dir / "mail")


def _permanent(exc: Exception) -> bool:
    """The server refused this message for good (5xx for its recipient or its data)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return bool(exc.recipients) and all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False


def _server_unusable(exc: Exception) -> bool:
    """The mail server cannot be reached, dropped us, or refuses our login or TLS: the rest
    of the batch would fail the same way."""
    unusable = (
        smtplib.SMTPConnectError,
        smtplib.SMTPServerDisconnected,
        smtplib.SMTPAuthenticationError,
        smtplib.SMTPNotSupportedError,
        OSError,
    )
    return isinstance(exc, unusable)


# -- delivery --------------------------------------------------------------------------------


@dataclass
class Report:
    sent: int = 0
    failed: int = 0
    given_up: int = 0

    def __str__(self) -> str:
        return f"mail: {self.sent} sent, {self.failed} failed ({self.given_up} given up)"


WORKER = Context(actor_type="system", role=WORKER_ROLE)


def _mark(db: Database, statement: str, params: tuple) -> dict | None:
    with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(statement, params).fetchone()


def deliver(
    db: Database,
    settings: Settings,
    transport: Transport | None = None,
    *,
    batch: int = 20,
    lease: dt.timedelta = LEASE,
) -> Report:
    """One pass: claim due messages batch by batch and deliver them, until none is due.

    A mail server that cannot be reached ends the pass: the message being sent is marked
    failed, and the rest of its batch is left to its claim's end (`lease`), then retried.
    """
    transport = transport or transport_for(settings)
    report = Report()
    try:
        while True:
            with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
                claimed = cur.execute("SELECT * FROM ops.claim_mail(%s, %s)", (batch, lease)).fetchall()
            for mail in claimed:
                error = _deliver_one(db, settings, transport, mail, report)
                if error is not None and _server_unusable(error):
                    log.warning("mail server unreachable, pass ended: %s", error)
                    return report
            if len(claimed) < batch:
                return report
    finally:
        transport.close()


def _deliver_one(
    db: Database, settings: Settings, transport: Transport, mail: dict, report: Report
) -> Exception | None:
    try:
        rendered = render(mail["template"], mail["data"] or {}, app_url=settings.app_url)
        transport.send(
            mail["mail_id"], build_message(mail["mail_id"], mail["to_address"], rendered, settings.mail_from)
        )
    except (RenderError, smtplib.SMTPException, OSError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
        marked = _mark(
            db,
            "SELECT * FROM ops.mark_mail_failed(%s, %s, %s, %s)",
            (mail["mail_id"], reason, _permanent(exc), settings.mail_max_attempts),
        )
        report.failed += 1
        report.given_up += bool(marked and marked["given_up"])
        log.warning("mail %s (%s) not delivered: %s", mail["mail_id"], mail["template"], reason)
        return exc
    _mark(db, "SELECT ops.mark_mail_sent(%s)", (mail["mail_id"],))
    report.sent += 1
    return None


def run(
    settings: Settings,
    *,
    once: bool = False,
    batch: int = 20,
    interval: float = 5.0,
    echo: Callable[[str], None] = print,
) -> Report:
    """`tenantry mail deliver`: one pass (`once`), or a pass every `interval` seconds until
    interrupted. Returns the last pass's report."""
    db = Database(settings, name="mail")
    report = Report()
    try:
        while True:
            report = deliver(db, settings, batch=batch)
            if once or report.sent or report.failed:
                echo(str(report))
            if once:
                return report
            time.sleep(interval)
    except KeyboardInterrupt:
        return report
    finally:
        db.close()

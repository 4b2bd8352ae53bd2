"""A real SMTP server on loopback (aiosmtpd, on a free port) that keeps what it receives:
the mail tests send through it what `tenantry mail deliver` would send to a real one.

`Mailbox.deliver(db, settings)` runs one delivery pass (jobs.mail.deliver) against it;
`messages_to(address)` returns what arrived for an address, parsed; `token_in(message,
prefix)` finds a token in a message's text part.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from db.context import Database
from db.local.postgres import free_port
from db.settings import Settings
from jobs import mail


@dataclass(frozen=True)
class Received:
    mail_from: str
    recipients: list[str]
    message: EmailMessage
    login: str | None  # the SMTP login the client authenticated with, if any


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        if address.lower() in self.box.refuse:
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        message = message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        with self.box.lock:
            self.box.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), message, login))
        return "250 OK"


class Mailbox:
    """aiosmtpd on 127.0.0.1:<free port>; with `credentials`, it requires that login (no TLS)."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.credentials = credentials
        self.received: list[Received] = []
        self.refuse: set[str] = set()  # recipients answered with 550
        self.lock = threading.Lock()
        kwargs: dict[str, Any] = {}
        if credentials:
            kwargs = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        given = (
            (auth_data.login.decode(), auth_data.password.decode()) if isinstance(auth_data, LoginPassword) else None
        )
        if given == self.credentials:
            return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(success=False, handled=False)  # 535: credentials invalid

    def start(self) -> Mailbox:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def settings(self, base: Settings) -> Settings:
        """`base` sending to this server (plain SMTP on loopback, and its login if it has one)."""
        update: dict[str, Any] = {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_tls": "none"}
        if self.credentials:
            update |= {"smtp_user": self.credentials[0], "smtp_password": SecretStr(self.credentials[1])}
        return base.model_copy(update=update)

    def deliver(self, db: Database, settings: Settings) -> mail.Report:
        """One delivery pass of the outbox of `settings`' database, to this server."""
        return mail.deliver(db, self.settings(settings))

    def messages_to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received if address.lower() in (a.lower() for a in r.recipients)]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None, message
    return part.get_content()


def html_of(message: EmailMessage) -> str:
    part = message.get_body(("html",))
    assert part is not None, message
    return part.get_content()


def token_in(message: EmailMessage, prefix: str) -> str:
    """The token `<prefix>...` (base64url) in the message's text part."""
    found = re.search(re.escape(prefix) + r"[A-Za-z0-9_-]+", text_of(message))
    assert found, text_of(message)
    return found.group(0)

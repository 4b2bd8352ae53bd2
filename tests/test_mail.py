"""Mail delivery (jobs/mail.py, `tenantry mail deliver`): the outbox drained by the worker
role to a real SMTP server on loopback (aiosmtpd, tests/mailbox.py), or to the file sink.

Delivery tests use a database of their own (a clone of the migrated template), so the
outbox holds only what they queue; they queue with core.enqueue_mail as the owner (no
application role may).
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import SecretStr

from db.context import Database
from db.dsn import role_environment
from db.local.postgres import free_port
from db.settings import Settings
from jobs import mail
from tests.mailbox import Mailbox, html_of, text_of

#: the data each template is queued with (by the SQL that queues it)
DATA: dict[str, dict[str, Any]] = {
    "verify_email": {"token": "vfy_" + "v" * 43, "name": "Ann"},
    "invitation": {"token": "inv_" + "i" * 75, "tenant_name": "Acme", "role": "developer", "invited_by": "Bob"},
    "password_reset": {"token": "prt_" + "p" * 43, "name": "Ann", "valid_minutes": 30},
}


@dataclass
class Outbox:
    url: str
    db: Database
    settings: Settings

    def queue(self, to: str, template: str, data: dict[str, Any]) -> uuid.UUID:
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute("SELECT core.enqueue_mail(%s, %s, %s)", (to, template, Jsonb(data))).fetchone()[0]

    def row(self, mail_id: uuid.UUID) -> dict[str, Any]:
        with psycopg.connect(self.url, autocommit=True, row_factory=dict_row) as conn:
            found = conn.execute("SELECT *, now() AS db_now FROM core.mail_outbox WHERE mail_id = %s", (mail_id,))
            row = found.fetchone()
        assert row is not None
        return row

    def make_due(self) -> None:
        """As if the backoff had passed: every unsent message is due now."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("UPDATE core.mail_outbox SET next_attempt_at = now() WHERE sent_at IS NULL")


@pytest.fixture
def outbox(scratch_database) -> Iterator[Outbox]:
    url = scratch_database("mail", migrated=True)
    settings = Settings(database_url=url)
    db = Database(settings, name="mail-tests")
    yield Outbox(url, db, settings)
    db.close()


def address() -> str:
    return f"m-{uuid.uuid4().hex[:10]}@tenantry.test"


# -- rendering --------------------------------------------------------------------------------


@pytest.mark.parametrize("template", sorted(DATA))
def test_every_template_renders_text_and_html(template):
    rendered = mail.render(template, DATA[template], app_url="https://app.example/")
    token = DATA[template]["token"]
    assert token in rendered.text and token in rendered.html
    assert f"https://app.example/{'' if template != 'invitation' else 'invitations/'}" in rendered.text
    assert "\n" not in rendered.subject and "${" not in rendered.subject + rendered.text + rendered.html
    assert rendered.html.lstrip().startswith("<!DOCTYPE html>")


def test_html_escapes_values_and_the_subject_stays_one_line():
    data = DATA["invitation"] | {"tenant_name": "<script>x</script>\r\nBcc: victim@example.com"}
    rendered = mail.render("invitation", data, app_url="http://x")
    assert "<script>" not in rendered.html and "&lt;script&gt;" in rendered.html
    assert "\r" not in rendered.subject and "\n" not in rendered.subject


def test_unknown_templates_and_missing_data_are_render_errors():
    with pytest.raises(mail.RenderError, match="unknown mail template 'no_such_thing'"):
        mail.render("no_such_thing", {}, app_url="http://x")
    with pytest.raises(mail.RenderError, match="unknown mail template"):
        mail.render("../templates/invitation", {}, app_url="http://x")  # never a path
    with pytest.raises(mail.RenderError, match="needs 'token'"):
        mail.render("password_reset", {"name": "Ann", "valid_minutes": 30}, app_url="http://x")


# -- delivery over SMTP ------------------------------------------------------------------------


def test_queued_mail_is_delivered_over_smtp_once_and_its_data_cleared(outbox, mailbox):
    to = address()
    mail_id = outbox.queue(to, "password_reset", DATA["password_reset"] | {"name": "Ann <Admin>"})
    report = mailbox.deliver(outbox.db, outbox.settings)
    assert (report.sent, report.failed) == (1, 0)

    [message] = mailbox.messages_to(to)
    assert message["Subject"] == "Reset your tenantry password"
    assert message["From"] == outbox.settings.mail_from and message["To"] == to
    assert message["Message-ID"] == f"<{mail_id}@tenantry.localhost>"
    assert message.get_content_type() == "multipart/alternative"
    token = DATA["password_reset"]["token"]
    assert f"http://127.0.0.1:8000/reset-password?token={token}" in text_of(message)
    assert "Hello Ann <Admin>," in text_of(message)
    assert "Ann &lt;Admin&gt;" in html_of(message) and f'href="http://127.0.0.1:8000/reset-password?token={token}"' in (
        html_of(message)
    )

    row = outbox.row(mail_id)
    assert row["sent_at"] is not None and row["attempts"] == 1 and row["last_error"] is None
    assert row["data"] == {}  # the token is gone from the database once delivered

    # a second pass sends nothing again
    assert mailbox.deliver(outbox.db, outbox.settings).sent == 0
    assert len(mailbox.messages_to(to)) == 1


def test_an_unknown_template_is_marked_failed_and_the_rest_delivered(outbox, mailbox):
    to = address()
    bad = outbox.queue(to, "no_such_template", {"token": "x"})
    good = outbox.queue(to, "verify_email", DATA["verify_email"])
    report = mailbox.deliver(outbox.db, outbox.settings)
    assert (report.sent, report.failed, report.given_up) == (1, 1, 0)
    assert [m["Subject"] for m in mailbox.messages_to(to)] == ["Confirm your email address for tenantry"]
    assert outbox.row(good)["sent_at"] is not None

    row = outbox.row(bad)
    assert row["sent_at"] is None and row["attempts"] == 1
    assert "unknown mail template 'no_such_template'" in row["last_error"]
    # retried after a backoff (a later deploy may know the template), its data kept until then
    assert dt.timedelta(seconds=50) < row["next_attempt_at"] - row["db_now"] <= dt.timedelta(minutes=1)
    assert row["data"] == {"token": "x"}


def test_a_refused_recipient_is_given_up_at_once(outbox, mailbox):
    to = address()
    mailbox.refuse.add(to)
    mail_id = outbox.queue(to, "verify_email", DATA["verify_email"])
    report = mailbox.deliver(outbox.db, outbox.settings)
    assert (report.failed, report.given_up) == (1, 1)
    row = outbox.row(mail_id)
    assert row["given_up_at"] is not None and row["sent_at"] is None
    assert row["data"] == {} and row["last_error"].startswith("gave up after 1 attempt(s): SMTPRecipientsRefused")
    assert mailbox.messages_to(to) == []


def test_an_unreachable_server_backs_off_then_gives_up(outbox):
    nobody = free_port()  # nothing listens there
    settings = outbox.settings.model_copy(
        update={"smtp_host": "127.0.0.1", "smtp_port": nobody, "smtp_tls": "none", "mail_max_attempts": 3}
    )
    mail_id = outbox.queue(address(), "verify_email", DATA["verify_email"])
    waits = []
    for attempt in (1, 2):
        report = mail.deliver(outbox.db, settings)
        assert (report.sent, report.failed, report.given_up) == (0, 1, 0)
        row = outbox.row(mail_id)
        assert row["attempts"] == attempt and "ConnectionRefusedError" in row["last_error"]
        waits.append(row["next_attempt_at"] - row["db_now"])
        assert mail.deliver(outbox.db, settings).failed == 0  # not due again before the backoff
        outbox.make_due()
    assert waits[0] <= dt.timedelta(minutes=1) < waits[1] <= dt.timedelta(minutes=2)  # doubling
    report = mail.deliver(outbox.db, settings)
    assert report.given_up == 1
    row = outbox.row(mail_id)
    assert row["attempts"] == 3 and row["given_up_at"] is not None and row["data"] == {}
    assert row["last_error"].startswith("gave up after 3 attempt(s)")
    outbox.make_due()
    assert mail.deliver(outbox.db, settings).failed == 0  # given up: never due again


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # loopback, in a test
def test_smtp_login_is_used(outbox):
    box = Mailbox(credentials=("mailer", "s3cret-pass")).start()
    try:
        to = address()
        outbox.queue(to, "verify_email", DATA["verify_email"])
        wrong = box.settings(outbox.settings).model_copy(update={"smtp_password": SecretStr("wrong")})
        assert mail.deliver(outbox.db, wrong).failed == 1  # SMTPAuthenticationError: tried again later
        assert box.received == []
        outbox.make_due()
        assert box.deliver(outbox.db, outbox.settings).sent == 1
        assert [r.login for r in box.received] == ["mailer"]
    finally:
        box.stop()


def test_concurrent_deliverers_never_claim_the_same_message(outbox):
    ids = {outbox.queue(address(), "verify_email", DATA["verify_email"]) for _ in range(3)}
    with outbox.db.transaction(mail.WORKER) as first, first.cursor(row_factory=dict_row) as cur:
        taken = {r["mail_id"] for r in cur.execute("SELECT * FROM ops.claim_mail(2)").fetchall()}
        assert len(taken) == 2
        # while the first claim is not committed, a second deliverer skips its rows
        with outbox.db.transaction(mail.WORKER) as second, second.cursor(row_factory=dict_row) as other:
            rest = {r["mail_id"] for r in other.execute("SELECT * FROM ops.claim_mail(10)").fetchall()}
    assert rest == ids - taken
    # both claims are leases now: nothing is due
    with outbox.db.transaction(mail.WORKER) as conn:
        assert conn.execute("SELECT count(*) FROM ops.claim_mail(10)").fetchone()[0] == 0


def test_only_the_worker_role_delivers_and_no_application_role_queues(outbox, api_pool):
    with api_pool.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT * FROM ops.claim_mail(1)")
    with api_pool.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT core.enqueue_mail('x@example.com', 'verify_email', '{}')")
    with outbox.db.transaction(mail.WORKER) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT core.enqueue_mail('x@example.com', 'verify_email', '{}')")


# -- the file sink and the command --------------------------------------------------------------


def test_without_an_smtp_host_mail_goes_to_the_file_sink(outbox, tmp_path):
    settings = outbox.settings.model_copy(update={"state_dir": tmp_path})
    mail_id = outbox.queue(address(), "invitation", DATA["invitation"])
    assert mail.deliver(outbox.db, settings).sent == 1
    files = list((tmp_path / "mail").iterdir())
    assert files == [tmp_path / "mail" / f"{mail_id}.eml"]
    message = message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert message["Subject"] == "Bob invited you to Acme on tenantry"
    assert DATA["invitation"]["token"] in text_of(message)


def test_tenantry_mail_deliver_once(outbox, tmp_path: Path):
    mail_id = outbox.queue(address(), "password_reset", DATA["password_reset"])
    env = {
        **os.environ,
        **role_environment(outbox.settings),  # the roles' passwords are in this process's state folder
        "TENANTRY_DATABASE_URL": outbox.url,
        "TENANTRY_STATE_DIR": str(tmp_path),
    }
    env.pop("TENANTRY_SMTP_HOST", None)
    done = subprocess.run(
        [sys.executable, "-m", "tenantry", "mail", "deliver", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "mail: 1 sent, 0 failed" in done.stdout
    assert (tmp_path / "mail" / f"{mail_id}.eml").is_file()
    assert outbox.row(mail_id)["sent_at"] is not None

"""Webhook delivery: the sender of the deliveries that sql/repeatable/520_webhooks.sql
makes from the outbox, as the worker role.

A pass fans out undispatched events (ops.fan_out_webhook_events), then claims due
deliveries (ops.claim_webhook_deliveries: a lease, at most one in flight per endpoint),
sends them concurrently on a small thread pool, and records each attempt
(ops.record_webhook_attempt: success, or a retry with backoff, or dead). Each step is a
short transaction of its own: no transaction stays open while a receiver is talked to,
and a sender killed mid-batch leaves leases that run out, so the delivery is sent again
(at least once; receivers de-duplicate by `webhook-id`, the event id).

The request is signed per Standard Webhooks: `webhook-id` (the event id),
`webhook-timestamp` (unix seconds), `webhook-signature` = `v1,` + base64 of
HMAC-SHA256(secret, f"{id}.{timestamp}.{body}"), the secret being the base64-decoded part
of `whsec_...` (db/webhooks.py decrypts it). The body is
`{"id", "type", "timestamp", "tenant_id", "data"}`.

Each attempt is bounded by settings.webhook_timeout_seconds (connect, send, wait for the
answer and read its first bytes), follows no redirect, and connects only to the address
it resolved and checked just before (db/webhooks.py, `public_address`: SSRF).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from psycopg.rows import dict_row

from db import webhooks
from db.context import Context, Database
from db.settings import WORKER_ROLE, Settings

log = logging.getLogger("tenantry.webhooks")

WORKER = Context(actor_type="system", role=WORKER_ROLE)
#: how much of a receiver's answer an attempt keeps
SNIPPET_BYTES = 500
USER_AGENT = "tenantry-webhooks/1"


# -- signing ---------------------------------------------------------------------------------


def sign(secret: str, message_id: str, timestamp: int, body: str) -> str:
    """The Standard Webhooks signature header value of `body` (`v1,<base64>`)."""
    signed = f"{message_id}.{timestamp}.{body}".encode()
    digest = hmac.new(webhooks.secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def body_of(delivery: dict[str, Any]) -> str:
    """The JSON body a receiver gets for a claimed delivery."""
    return json.dumps(
        {
            "id": str(delivery["event_id"]),
            "type": delivery["event_type"],
            "timestamp": delivery["occurred_at"].astimezone(dt.UTC).isoformat().replace("+00:00", "Z"),
            "tenant_id": str(delivery["tenant_id"]),
            "data": delivery["payload"],
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


# -- one attempt -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: int
    snippet: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def _pinned(url: str, address: str) -> tuple[str, str]:
    """The URL with its host replaced by `address` (so the connection goes to the address
    that was checked), and the Host header value."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    literal = f"[{address}]" if ":" in address else address
    host_header = (f"[{host}]" if ":" in host else host) + port
    return urlunsplit((parts.scheme, literal + port, parts.path or "/", parts.query, "")), host_header


def send(client: httpx.Client, settings: Settings, url: str, secret: str, event_id: str, body: str) -> Outcome:
    """POST one signed delivery; never raises for the receiver's faults (they are the outcome)."""
    started = time.monotonic()

    def outcome(status: int | None, snippet: str | None = None, error: str | None = None) -> Outcome:
        return Outcome(status, int((time.monotonic() - started) * 1000), snippet, error)

    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        problem = webhooks.url_problem(url, settings.webhooks_allow_private_addresses)
        if problem:
            return outcome(None, error=f"refused: {problem}")
        address = webhooks.public_address(parts.hostname or "", port, settings.webhooks_allow_private_addresses)
    except (webhooks.AddressRefused, ValueError) as exc:
        return outcome(None, error=f"refused: {exc}")
    target, host_header = _pinned(url, address)
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": host_header,
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, event_id, timestamp, body),
    }
    deadline = started + settings.webhook_timeout_seconds
    try:
        request = client.build_request(
            "POST",
            target,
            content=body.encode(),
            headers=headers,
            # TLS: the certificate is checked for the URL's host, not the address
            extensions={"sni_hostname": parts.hostname or ""},
        )
        response = client.send(request, stream=True, follow_redirects=False)
        try:
            kept = b""
            for chunk in response.iter_raw():
                kept += chunk
                if len(kept) >= SNIPPET_BYTES or time.monotonic() > deadline:
                    break
            return outcome(response.status_code, kept[:SNIPPET_BYTES].decode(errors="replace"))
        finally:
            response.close()
    except httpx.TimeoutException as exc:
        return outcome(None, error=f"timeout after {settings.webhook_timeout_seconds:g} s ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return outcome(None, error=f"{type(exc).__name__}: {exc}"[:500])


# -- a pass ----------------------------------------------------------------------------------


@dataclass
class Report:
    events: int = 0
    created: int = 0
    sent: int = 0
    failed: int = 0
    dead: int = 0
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {
            "events": self.events,
            "created": self.created,
            "sent": self.sent,
            "failed": self.failed,
            "dead": self.dead,
        }


def lease_seconds(settings: Settings) -> float:
    """A lease outlives an attempt: the timeout plus 5 s at least."""
    return max(settings.webhook_lease_seconds, settings.webhook_timeout_seconds + 5)


def fan_out(db: Database, *, limit: int = 1000, rounds: int = 20) -> tuple[int, int]:
    """Fan out undispatched events until none is left (or `rounds` runs); (events, deliveries)."""
    events = deliveries = 0
    for _ in range(rounds):
        with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute("SELECT * FROM ops.fan_out_webhook_events(%s)", (limit,)).fetchone()
        assert row is not None
        events += row["events"]
        deliveries += row["deliveries"]
        if row["events"] < limit:
            break
    return events, deliveries


def claim(db: Database, settings: Settings, batch: int) -> list[dict[str, Any]]:
    with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM ops.claim_webhook_deliveries(%s, %s)",
            (batch, dt.timedelta(seconds=lease_seconds(settings))),
        ).fetchall()


def record(db: Database, settings: Settings, delivery: dict[str, Any], result: Outcome) -> dict[str, Any] | None:
    with db.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM ops.record_webhook_attempt(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                delivery["tenant_id"],
                delivery["delivery_id"],
                delivery["claimed_until"],
                result.status_code,
                result.latency_ms,
                result.snippet,
                result.error,
                settings.webhook_max_attempts,
                dt.timedelta(seconds=settings.webhook_backoff_base_seconds),
                dt.timedelta(seconds=settings.webhook_backoff_cap_seconds),
            ),
        ).fetchone()


@contextmanager
def http_client(settings: Settings) -> Iterator[httpx.Client]:
    """The pass's client: per-phase timeouts of the attempt's limit, no redirects, no
    proxies from the environment (a proxy would connect elsewhere than the checked address)."""
    timeout = httpx.Timeout(settings.webhook_timeout_seconds)
    limits = httpx.Limits(max_connections=settings.webhook_concurrency * 2)
    with httpx.Client(timeout=timeout, limits=limits, follow_redirects=False, trust_env=False) as client:
        yield client


def deliver_one(
    db: Database, settings: Settings, client: httpx.Client, keyring: webhooks.Keyring, delivery: dict[str, Any]
) -> tuple[Outcome, dict[str, Any] | None]:
    """Send one claimed delivery and record the attempt."""
    try:
        secret = keyring.decrypt(delivery["secret_ciphertext"], delivery["tenant_id"])
    except webhooks.SecretKeyError as exc:
        result = Outcome(None, 0, error=f"cannot sign: {exc}")
    else:
        result = send(client, settings, delivery["url"], secret, str(delivery["event_id"]), body_of(delivery))
    return result, record(db, settings, delivery, result)


def deliver(
    db: Database,
    settings: Settings,
    *,
    batch: int = 50,
    max_seconds: float = 60.0,
    fan_out_first: bool = True,
) -> Report:
    """One pass: fan out, then claim and send batch after batch until nothing is due or
    `max_seconds` passed (the job's time limit stays far). A batch is sent on
    settings.webhook_concurrency threads, so a slow receiver holds only its own thread,
    for at most the attempt's timeout."""
    report = Report()
    if fan_out_first:
        report.events, report.created = fan_out(db)
    keyring = webhooks.keyring(settings)
    stop_at = time.monotonic() + max_seconds
    with http_client(settings) as client, ThreadPoolExecutor(settings.webhook_concurrency) as pool:
        while time.monotonic() < stop_at:
            claimed = claim(db, settings, batch)
            if not claimed:
                break
            for result, state in pool.map(lambda d: deliver_one(db, settings, client, keyring, d), claimed):
                if result.ok:
                    report.sent += 1
                else:
                    report.failed += 1
                    if len(report.errors) < 20:
                        report.errors.append(result.error or f"HTTP {result.status_code}")
                if state and state["status"] == "dead":
                    report.dead += 1
    return report

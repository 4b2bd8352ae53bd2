"""bench/webhook_delivery: deliveries per second from the outbox to a local receiver.

Events are put in the outbox of `--endpoints` tenants (one endpoint each, on a threaded
HTTP receiver on loopback that answers 200 at once), then the real path runs: a fan-out
(ops.fan_out_webhook_events), and delivery passes (jobs/webhook_delivery.py: claim under
a lease, at most one in flight per endpoint; sign; POST on the pass's thread pool; record
each attempt) until every delivery succeeded. That is the measured side: deliveries/s.

The baseline is the same number of signed POSTs of the same bodies to the same receiver
on a thread pool of the same size, with no database at all: what the HTTP part alone
costs. The difference is the outbox's bookkeeping (fan-out, claim, record).

Last line, as every benchmark here: `ratio <x>`, x = time per delivery through the outbox
/ time per bare signed POST.

Run from the repository root:  python bench/webhook_delivery.py  [--quick] [--help]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg

from db import migrate, webhooks
from db.context import Database
from db.dsn import redacted
from db.local.services import ensure_database
from db.settings import get_settings
from jobs import webhook_delivery


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


def receiver() -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def set_up(owner_url: str, keyring: webhooks.Keyring, url: str, endpoints: int) -> list[tuple[uuid.UUID, str]]:
    """A tenant per endpoint on the enterprise plan, with its endpoint: (tenant, secret)."""
    made = []
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for n in range(endpoints):
            tag = f"{secrets.token_hex(4)}-{n}"
            row = conn.execute(
                "SELECT tenant_id FROM auth.sign_up(%s, 'Benchmark owner', '$argon2id$bench', %s, %s, %s)",
                (f"bench-{tag}@tenantry.test", f"bench-{tag}", f"Benchmark {tag}", f"vfy_bench_{tag}"),
            ).fetchone()
            assert row is not None
            tenant = row[0]
            conn.execute("UPDATE core.tenants SET plan_id = 'enterprise' WHERE tenant_id = %s", (tenant,))
            secret = webhooks.new_secret()
            conn.execute(
                "INSERT INTO core.webhook_endpoints (tenant_id, url, event_types, secret_ciphertext)"
                " VALUES (%s, %s, '{project.created}', %s)",
                (tenant, url, keyring.encrypt(secret, tenant)),
            )
            made.append((tenant, secret))
    return made


def emit(owner_url: str, tenants: list[tuple[uuid.UUID, str]], per_endpoint: int) -> None:
    """`per_endpoint` project.created events in each tenant's outbox."""
    with psycopg.connect(owner_url, autocommit=True) as conn:
        for tenant, _ in tenants:
            conn.execute(
                "SELECT core.emit_event(%s, 'project.created', jsonb_build_object('project_id', gen_random_uuid(),"
                " 'name', 'Benchmark ' || i)) FROM generate_series(1, %s) AS i",
                (tenant, per_endpoint),
            )


def through_outbox(db: Database, settings: Any, expected: int) -> tuple[float, int]:
    """Fan out and deliver until `expected` deliveries succeeded: (seconds, delivered)."""
    started = time.perf_counter()
    delivered = 0
    report = webhook_delivery.deliver(db, settings, max_seconds=600)
    delivered += report.sent
    while delivered < expected:
        more = webhook_delivery.deliver(db, settings, max_seconds=600, fan_out_first=False)
        if more.sent == 0:
            raise SystemExit(f"only {delivered} of {expected} delivered: {more.errors[:3]}")
        delivered += more.sent
    return time.perf_counter() - started, delivered


def bare_posts(settings: Any, url: str, tenants: list[tuple[uuid.UUID, str]], per_endpoint: int) -> float:
    """The same number of signed POSTs, no database: seconds."""
    jobs = [(secret, str(uuid.uuid4())) for _, secret in tenants for _ in range(per_endpoint)]
    body = '{"id":"x","type":"project.created","data":{"name":"Benchmark"}}'
    started = time.perf_counter()
    with webhook_delivery.http_client(settings) as client, ThreadPoolExecutor(settings.webhook_concurrency) as pool:
        results = list(pool.map(lambda j: webhook_delivery.send(client, settings, url, j[0], j[1], body), jobs))
    took = time.perf_counter() - started
    failed = [r for r in results if not r.ok]
    if failed:
        raise SystemExit(f"{len(failed)} bare POSTs failed: {failed[0].error}")
    return took


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke test: 1 round of 200 deliveries")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 3)")
    parser.add_argument("--endpoints", type=int, default=16, help="endpoints, one tenant each (default 16)")
    parser.add_argument("--events", type=int, help="events per endpoint and round (default 50)")
    args = parser.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    per_endpoint = args.events or (12 if args.quick else 50)

    server = receiver()
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    # the receiver is on loopback: allowed for this run only
    settings = get_settings().model_copy(update={"webhooks_allow_private_addresses": True})
    owner_url = ensure_database(settings)
    migrate.migrate(owner_url, settings=settings)
    settings = settings.model_copy(update={"database_url": owner_url})
    keyring = webhooks.keyring(settings)
    tenants = set_up(owner_url, keyring, url, args.endpoints)
    expected = per_endpoint * len(tenants)
    print(f"server: {redacted(owner_url)}; receiver: {url}")
    print(
        f"{rounds} rounds of {expected} deliveries ({len(tenants)} endpoints x {per_endpoint} events), "
        f"{settings.webhook_concurrency} sending threads; baseline: the same signed POSTs without the database"
    )
    db = Database(settings, name="bench-webhooks", dict_rows=True)
    outbox: list[float] = []
    bare: list[float] = []
    try:
        for n in range(rounds + 1):  # round 0 warms up
            emit(owner_url, tenants, per_endpoint)
            seconds, delivered = through_outbox(db, settings, expected)
            posts = bare_posts(settings, url, tenants, per_endpoint)
            if n > 0:
                outbox.append(delivered / seconds)
                bare.append(expected / posts)
    finally:
        db.close()
        server.shutdown()

    ratios = [b / o for o, b in zip(outbox, bare, strict=True)]
    print()
    print(f"{'side':<16} {'per second':>12} {'ms per delivery':>16}")
    for name, rates in (("outbox", outbox), ("bare POST", bare)):
        rate = statistics.median(rates)
        print(f"{name:<16} {rate:>12.0f} {1000 / rate:>16.3f}")
    spread = f" (rounds: {min(ratios):.3f}-{max(ratios):.3f})" if len(ratios) > 1 else ""
    print(f"deliveries/s {statistics.median(outbox):.0f}{spread}")
    print(f"ratio {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

"""Transactional outbox and webhooks, for real: events written by triggers in the
transaction of the change, endpoints over HTTP, deliveries sent by jobs/webhook_delivery.py
to a real HTTP receiver on loopback (tests/webhook_receiver.py), verified with the
Standard Webhooks reference library, retries and dead-lettering, a `tenantry worker`
killed with SIGKILL mid-batch, SSRF refusals, isolation between tenants, and concurrent
fan-out and claim passes on parallel connections.

The module runs its own API server: the session's has private addresses refused (its
SSRF refusal is tested here too) and a key of its own, while deliveries to the loopback
receiver need private addresses allowed and the key shared with the sender.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from standardwebhooks.webhooks import Webhook

from db import webhooks
from db.context import Context, Database
from db.dsn import role_environment
from db.settings import API_ROLE, WORKER_ROLE, Settings
from jobs import runtime, webhook_delivery
from tests.helpers import OWNERS, Account, SignUp, one, problem, start_api
from tests.webhook_receiver import Receiver

#: the key the module's API and every sender share
KEYS = webhooks.new_key_entry("test1")
#: what the module's API, worker and in-process passes run with
WEBHOOK_ENV = {
    "TENANTRY_WEBHOOK_ENCRYPTION_KEYS": KEYS,
    "TENANTRY_WEBHOOKS_ALLOW_PRIVATE_ADDRESSES": "true",
    "TENANTRY_WEBHOOK_TIMEOUT_SECONDS": "1",
    "TENANTRY_WEBHOOK_MAX_ATTEMPTS": "3",
    "TENANTRY_WEBHOOK_BACKOFF_BASE_SECONDS": "0.02",
    "TENANTRY_WEBHOOK_BACKOFF_CAP_SECONDS": "0.1",
}


def _settings(owner_url: str, **changes: Any) -> Settings:
    values = {key.removeprefix("TENANTRY_").lower(): value for key, value in WEBHOOK_ENV.items()}
    return Settings.model_validate({"database_url": owner_url, **values, **changes})


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def wh_settings(owner_url: str) -> Settings:
    return _settings(owner_url)


@pytest.fixture(scope="module")
def wh_db(wh_settings: Settings) -> Iterator[Database]:
    db = Database(wh_settings, name="webhook-tests", dict_rows=True)
    yield db
    db.close()


@pytest.fixture(scope="module")
def wh_http(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    state = tmp_path_factory.mktemp("webhook-api")
    process, url = start_api(owner_url, redis_url, state, threads=4, **WEBHOOK_ENV)  # type: ignore[arg-type]
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    process.terminate()
    process.wait(timeout=15)


def tag() -> str:
    return uuid.uuid4().hex[:12]


def register(http: httpx.Client, account: Account, url: str, types: list[str] | None = None) -> dict[str, Any]:
    resp = http.post("/v1/webhooks", headers=account.headers, json={"url": url, "event_types": types or ["*"]})
    assert resp.status_code == 201, resp.text
    return resp.json()


def new_project(http: httpx.Client, account: Account, name: str | None = None) -> dict[str, Any]:
    resp = http.post("/v1/projects", headers=account.headers, json={"name": name or f"p-{tag()}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


def events_of(
    owner: psycopg.Connection[dict[str, Any]], tenant: Any, event_type: str | None = None
) -> list[dict[str, Any]]:
    return owner.execute(
        "SELECT * FROM core.outbox_events WHERE tenant_id = %s AND (%s::text IS NULL OR event_type = %s)"
        " ORDER BY occurred_at, event_id",
        (tenant, event_type, event_type),
    ).fetchall()


def deliveries_of(owner: psycopg.Connection[dict[str, Any]], endpoint_id: Any) -> list[dict[str, Any]]:
    return owner.execute(
        "SELECT * FROM core.webhook_deliveries WHERE endpoint_id = %s ORDER BY created_at, delivery_id", (endpoint_id,)
    ).fetchall()


# -- the outbox: events in the transaction of the change ---------------------------------------


def test_events_are_written_with_the_change_and_never_without_it(
    api_pool, new_tenant, owner: psycopg.Connection[dict[str, Any]], database: Database
) -> None:
    tenant = new_tenant("free")  # 3 projects at most
    created = one(api_pool, tenant, "create_project", "Alpha")
    [event] = events_of(owner, tenant, "project.created")
    assert event["payload"]["project_id"] == str(created["project_id"])
    assert event["payload"]["name"] == "Alpha" and "tenant_id" not in event["payload"]
    assert event["dispatched_at"] is None

    # a change that rolls back leaves no event
    with pytest.raises(RuntimeError), database.transaction(Context(tenant, OWNERS[tenant], "user")) as conn:
        conn.execute("SELECT api.create_project(%s, 'Rolled back')", (tenant,))
        raise RuntimeError("the client gave up: the transaction rolls back")
    assert [e["payload"]["name"] for e in events_of(owner, tenant, "project.created")] == ["Alpha"]

    # at the limit: the third project reaches 80 % and the limit (one event each); the
    # refused fourth (TQ001) rolls back with whatever it emitted
    one(api_pool, tenant, "create_project", "Beta")
    assert events_of(owner, tenant, "usage.threshold_reached") == []
    one(api_pool, tenant, "create_project", "Gamma")
    with pytest.raises(psycopg.Error) as refused:
        one(api_pool, tenant, "create_project", "Delta")
    assert refused.value.sqlstate == "TQ001"
    names = [e["payload"]["name"] for e in events_of(owner, tenant, "project.created")]
    assert names == ["Alpha", "Beta", "Gamma"]
    [threshold] = events_of(owner, tenant, "usage.threshold_reached")
    [exceeded] = events_of(owner, tenant, "quota.exceeded")
    assert threshold["payload"] == {"resource": "projects", "used": 3, "limit": 3, "warn_at_percent": 80}
    assert exceeded["payload"] == {"resource": "projects", "used": 3, "limit": 3, "over_limit": False}

    # updates and soft deletes are events; a key's use is not; hashes never are
    project = one(api_pool, tenant, "update_project", created["project_id"], Jsonb({"name": "A2"}))
    one(api_pool, tenant, "delete_project", project["project_id"])
    assert [e["event_type"] for e in events_of(owner, tenant) if e["event_type"].startswith("project.")][-2:] == [
        "project.updated",
        "project.deleted",
    ]
    everything = str([e["payload"] for e in events_of(owner, tenant)])
    assert "hash" not in everything and "token" not in everything


def test_metered_usage_crossing_the_warning_share_is_an_event(api_pool, new_tenant, owner) -> None:
    tenant = new_tenant("free")  # tokens: 100000 a period, blocked beyond
    owner.execute("SELECT core.consume_metered(%s, 'tokens', 70000)", (tenant,))
    assert events_of(owner, tenant, "usage.threshold_reached") == []
    owner.execute("SELECT core.consume_metered(%s, 'tokens', 20000)", (tenant,))
    owner.execute("SELECT core.consume_metered(%s, 'tokens', 5000)", (tenant,))  # no second crossing
    [event] = events_of(owner, tenant, "usage.threshold_reached")
    assert event["payload"]["resource"] == "tokens" and event["payload"]["used"] == 90000


# -- endpoints over HTTP ------------------------------------------------------------------------


def test_endpoints_crud_with_the_secret_shown_once(
    wh_http: httpx.Client, sign_up: SignUp, owner: psycopg.Connection[dict[str, Any]], receiver: Receiver
) -> None:
    account = sign_up()
    url = f"{receiver.url}/{tag()}/ok"
    created = register(wh_http, account, url, ["project.created", "task.created", "project.created"])
    secret = created["secret"]
    assert secret.startswith("whsec_") and len(webhooks.secret_bytes(secret)) == 24
    assert created["event_types"] == ["project.created", "task.created"]  # checked, de-duplicated, sorted
    stored = owner.execute(
        "SELECT secret_ciphertext FROM core.webhook_endpoints WHERE endpoint_id = %s", (created["endpoint_id"],)
    ).fetchone()["secret_ciphertext"]
    assert secret.encode() not in bytes(stored) and webhooks.secret_bytes(secret) not in bytes(stored)
    assert webhooks.parse_keys(KEYS).decrypt(stored, uuid.UUID(account.tenant_id)) == secret

    got = wh_http.get(f"/v1/webhooks/{created['endpoint_id']}", headers=account.headers)
    assert got.status_code == 200 and "secret" not in got.json() and got.headers["ETag"] == '"1"'
    listed = wh_http.get("/v1/webhooks", headers=account.headers).json()
    assert [w["endpoint_id"] for w in listed["items"]] == [created["endpoint_id"]]
    assert all("secret" not in w for w in listed["items"])

    changed = wh_http.patch(
        f"/v1/webhooks/{created['endpoint_id']}",
        headers=account.headers | {"If-Match": '"1"'},
        json={"active": False, "event_types": ["*"], "description": "all of it"},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["active"] is False and changed.json()["event_types"] == ["*"]
    stale = wh_http.patch(
        f"/v1/webhooks/{created['endpoint_id']}", headers=account.headers | {"If-Match": '"1"'}, json={"active": True}
    )
    problem(stale, 412, "precondition_failed")
    problem(
        wh_http.post("/v1/webhooks", headers=account.headers, json={"url": url, "event_types": ["project.exploded"]}),
        422,
        "invalid_body",
        "event_types",
    )
    problem(
        wh_http.post("/v1/webhooks", headers=account.headers, json={"url": "ftp://x.example/", "event_types": ["*"]}),
        422,
        "invalid_body",
        "url",
    )
    deleted = wh_http.delete(f"/v1/webhooks/{created['endpoint_id']}", headers=account.headers)
    assert deleted.status_code == 200
    problem(wh_http.get(f"/v1/webhooks/{created['endpoint_id']}", headers=account.headers), 404, "not_found")

    free = sign_up(plan="free")
    body = problem(
        wh_http.post("/v1/webhooks", headers=free.headers, json={"url": url, "event_types": ["*"]}),
        403,
        "feature_not_in_plan",
    )
    assert body["feature"] == "webhooks"


def test_a_delivery_is_signed_per_standard_webhooks_and_recorded(
    wh_http: httpx.Client, sign_up: SignUp, receiver: Receiver, wh_db: Database, wh_settings: Settings, owner
) -> None:
    account = sign_up()
    path = tag()
    endpoint = register(wh_http, account, f"{receiver.url}/{path}/ok", ["project.created"])
    project = new_project(wh_http, account, "Signed")
    report = webhook_delivery.deliver(wh_db, wh_settings)
    assert report.sent >= 1, report
    [request] = receiver.wait_for(path, 1)
    payload = Webhook(endpoint["secret"]).verify(request.body, request.headers)  # the reference library
    assert payload["type"] == "project.created"
    assert payload["data"]["project_id"] == project["project_id"] and payload["data"]["name"] == "Signed"
    assert payload["tenant_id"] == account.tenant_id
    assert request.headers["webhook-id"] == payload["id"]
    with pytest.raises(Exception, match="signature"):
        Webhook(webhooks.new_secret()).verify(request.body, request.headers)  # another secret does not verify

    [delivery] = deliveries_of(owner, endpoint["endpoint_id"])
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 1 and delivery["last_status"] == 200
    listed = wh_http.get(f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries", headers=account.headers).json()
    assert [(d["event_type"], d["status"]) for d in listed["items"]] == [("project.created", "succeeded")]
    detail = wh_http.get(
        f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries/{delivery['delivery_id']}", headers=account.headers
    ).json()
    [attempt] = detail["attempt_log"]
    assert attempt["status_code"] == 200 and attempt["response_snippet"] == "received" and attempt["latency_ms"] >= 0

    # a test event goes through the same path; a redelivery sends the same webhook-id again
    sent = wh_http.post(f"/v1/webhooks/{endpoint['endpoint_id']}/test", headers=account.headers)
    assert sent.status_code == 202, sent.text
    again = wh_http.post(
        f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries/{delivery['delivery_id']}/redeliver",
        headers=account.headers,
    )
    assert again.status_code == 202, again.text
    webhook_delivery.deliver(wh_db, wh_settings)
    requests = receiver.wait_for(path, 3)
    kinds = Counter(Webhook(endpoint["secret"]).verify(r.body, r.headers)["type"] for r in requests)
    assert kinds == {"project.created": 2, "webhook.test": 1}
    assert {r.headers["webhook-id"] for r in requests if b"project.created" in r.body} == {payload["id"]}


# -- retries, backoff, dead letters, timeouts --------------------------------------------------


def test_failures_are_retried_with_backoff_then_dead(
    wh_http: httpx.Client, sign_up: SignUp, receiver: Receiver, wh_db: Database, wh_settings: Settings, owner
) -> None:
    account = sign_up()
    failing, flaky = tag(), tag()
    dead_end = register(wh_http, account, f"{receiver.url}/{failing}/fail", ["project.created"])
    recovers = register(wh_http, account, f"{receiver.url}/{flaky}/fail-1", ["project.created"])
    new_project(wh_http, account)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        webhook_delivery.deliver(wh_db, wh_settings, max_seconds=5)
        states = {d["status"] for e in (dead_end, recovers) for d in deliveries_of(owner, e["endpoint_id"])}
        if "pending" not in states:
            break
        time.sleep(0.05)
    [dead] = deliveries_of(owner, dead_end["endpoint_id"])
    assert dead["status"] == "dead" and dead["attempts"] == 3 and dead["last_status"] == 500  # max attempts
    attempts = owner.execute(
        "SELECT * FROM core.webhook_attempts WHERE delivery_id = %s ORDER BY attempt_no", (dead["delivery_id"],)
    ).fetchall()
    assert [(a["attempt_no"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 500)]
    assert attempts[0]["response_snippet"] == "receiver error: try again"
    assert len(receiver.received(failing)) == 3
    [recovered] = deliveries_of(owner, recovers["endpoint_id"])
    assert recovered["status"] == "succeeded" and recovered["attempts"] == 2


def test_backoff_grows_with_jitter_up_to_the_cap(new_tenant, owner, database: Database) -> None:
    """ops.record_webhook_attempt: after attempt n the wait is min(cap, base * 2^n) * 0.5..1."""
    tenant = new_tenant()
    endpoint = owner.execute(
        "INSERT INTO core.webhook_endpoints (tenant_id, url, event_types, secret_ciphertext)"
        " VALUES (%s, 'https://receiver.example/hook', '{*}', %s) RETURNING endpoint_id",
        (tenant, b"x" * 40),
    ).fetchone()["endpoint_id"]
    event = owner.execute(
        "INSERT INTO core.outbox_events (tenant_id, event_type, payload) VALUES (%s, 'webhook.test', '{}')"
        " RETURNING event_id",
        (tenant,),
    ).fetchone()["event_id"]
    delivery = owner.execute(
        "INSERT INTO core.webhook_deliveries (tenant_id, endpoint_id, event_id) VALUES (%s, %s, %s)"
        " RETURNING delivery_id",
        (tenant, endpoint, event),
    ).fetchone()["delivery_id"]
    waits = []
    with database.transaction(Context(actor_type="system", role=WORKER_ROLE)) as conn:
        for _ in range(7):
            state = conn.execute(
                "SELECT * FROM ops.record_webhook_attempt(%s, %s, NULL, 503, 12, 'busy', NULL, 8,"
                " interval '10 seconds', interval '300 seconds')",
                (tenant, delivery),
            ).fetchone()
            now = conn.execute("SELECT now()").fetchone()[0]
            waits.append((state[2] - now).total_seconds())
        last = conn.execute(
            "SELECT * FROM ops.record_webhook_attempt(%s, %s, NULL, NULL, 1000, NULL, 'timeout', 8)",
            (tenant, delivery),
        ).fetchone()
    for n, wait in enumerate(waits, start=1):
        full = min(300, 10 * 2**n)
        assert full * 0.5 - 0.01 <= wait <= full + 0.01, (n, wait)
    assert waits[3] > waits[0] and waits[-1] <= 300
    assert last[0] == "dead" and last[1] == 8


def test_a_receiver_that_never_answers_does_not_hold_the_pass(
    wh_http: httpx.Client, sign_up: SignUp, receiver: Receiver, wh_db: Database, wh_settings: Settings, owner
) -> None:
    account = sign_up()
    stuck, fine = tag(), tag()
    hanging = register(wh_http, account, f"{receiver.url}/{stuck}/hang", ["project.created"])
    register(wh_http, account, f"{receiver.url}/{fine}/ok", ["project.created"])
    new_project(wh_http, account)
    started = time.monotonic()
    report = webhook_delivery.deliver(wh_db, wh_settings, max_seconds=0.5)
    took = time.monotonic() - started
    assert took < wh_settings.webhook_timeout_seconds + 2.5, took  # the 1 s timeout, not the receiver's 60 s
    assert len(receiver.received(fine)) == 1 and report.sent == 1, report
    [delivery] = deliveries_of(owner, hanging["endpoint_id"])
    assert delivery["status"] == "pending" and delivery["attempts"] == 1
    [attempt] = owner.execute(
        "SELECT * FROM core.webhook_attempts WHERE delivery_id = %s", (delivery["delivery_id"],)
    ).fetchall()
    assert attempt["status_code"] is None and "timeout" in attempt["error"]
    assert 900 <= attempt["latency_ms"] < 3000


# -- at least once: a worker killed mid-batch --------------------------------------------------


def test_a_worker_killed_mid_batch_loses_no_event(
    wh_http: httpx.Client,
    sign_up: SignUp,
    receiver: Receiver,
    wh_db: Database,
    wh_settings: Settings,
    owner_url: str,
    redis_url: str,
    tmp_path: Path,
    owner,
) -> None:
    account = sign_up()
    tags = [tag() for _ in range(4)]
    # four endpoints: one batch has a delivery of each in flight; the receiver holds them
    endpoints = [register(wh_http, account, f"{receiver.url}/{t}/sleep-30", ["project.created"]) for t in tags]
    projects = [new_project(wh_http, account) for _ in range(3)]
    env = (
        dict(os.environ)
        | role_environment(Settings(database_url=owner_url))
        | {"TENANTRY_DATABASE_URL": owner_url, "TENANTRY_REDIS_URL": redis_url, "TENANTRY_STATE_DIR": str(tmp_path)}
        | WEBHOOK_ENV
        | {"TENANTRY_WEBHOOK_TIMEOUT_SECONDS": "3", "TENANTRY_WEBHOOK_LEASE_SECONDS": "1"}  # lease: 3 + 5 s
    )
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [sys.executable, "-m", "tenantry", "worker", "--threads", "2", "--metrics-port", "0"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: SIGKILL reaches every worker process
    )
    try:
        broker = runtime.make_broker(redis_url)
        deadline = time.monotonic() + 30
        while "Worker process is ready" not in (tmp_path / "worker.log").read_text():
            assert worker.poll() is None and time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.05)
        runtime.enqueue(broker, "deliver_webhooks")
        for t in tags:
            receiver.wait_for(t, 1, timeout=20)  # every endpoint's first delivery is in flight
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
        log.close()
    in_flight = [d for e in endpoints for d in deliveries_of(owner, e["endpoint_id"])]
    assert len(in_flight) == 12 and {d["status"] for d in in_flight} == {"pending"}
    assert sum(d["claimed_until"] is not None for d in in_flight) == 4  # the leases of the killed batch

    # the receivers answer at once now; while the leases hold, no other sender takes them
    for e in endpoints:
        wh_http.patch(f"/v1/webhooks/{e['endpoint_id']}", headers=account.headers, json={"url": e["url"][:-8] + "ok"})
    webhook_delivery.deliver(wh_db, wh_settings, max_seconds=1)
    assert all(len(receiver.received(t)) == 1 for t in tags)
    # once the leases run out, another sender delivers everything: nothing was lost
    leases_end = max(d["claimed_until"] for d in in_flight if d["claimed_until"] is not None)
    deadline = time.monotonic() + 30
    while any(d["status"] != "succeeded" for e in endpoints for d in deliveries_of(owner, e["endpoint_id"])):
        assert time.monotonic() < deadline, [
            d["status"] for e in endpoints for d in deliveries_of(owner, e["endpoint_id"])
        ]
        webhook_delivery.deliver(wh_db, wh_settings, max_seconds=5)
        time.sleep(0.2)
    expected = {str(ev["event_id"]) for ev in events_of(owner, account.tenant_id, "project.created")}
    assert len(expected) == len(projects) == 3
    for t in tags:
        received = [r.headers["webhook-id"] for r in receiver.received(t)]
        assert set(received) == expected  # every event, at least once (the killed attempt's one twice)
        assert len(received) == 4
    assert owner.execute("SELECT now() >= %s AS ended", (leases_end,)).fetchone()["ended"]


# -- SSRF ---------------------------------------------------------------------------------------


def test_private_addresses_are_refused_when_not_allowed(http: httpx.Client, sign_up: SignUp) -> None:
    account = sign_up()  # the session's API: private addresses not allowed
    for url in [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://localhost/hook",
        "http://hooks.example.com/plain-http",
    ]:
        problem(
            http.post("/v1/webhooks", headers=account.headers, json={"url": url, "event_types": ["*"]}),
            422,
            "invalid_body",
            "url",
        )
    allowed = http.post(
        "/v1/webhooks", headers=account.headers, json={"url": "https://hooks.example.com/in", "event_types": ["*"]}
    )
    assert allowed.status_code == 201, allowed.text


def test_the_sender_checks_the_resolved_address(receiver: Receiver, owner_url: str) -> None:
    strict = _settings(owner_url, webhooks_allow_private_addresses=False)
    with pytest.raises(webhooks.AddressRefused, match="not a public address"):
        webhooks.public_address("localhost", 443, allow_private=False)  # resolves to loopback
    path = tag()
    with webhook_delivery.http_client(strict) as client:
        result = webhook_delivery.send(
            client, strict, f"{receiver.url}/{path}/ok", webhooks.new_secret(), str(uuid.uuid4()), "{}"
        )
    assert result.status_code is None and result.error is not None and result.error.startswith("refused")
    assert receiver.received(path) == []  # nothing reached the address


# -- isolation ----------------------------------------------------------------------------------


def test_a_tenant_sees_only_its_own_endpoints_and_deliveries(
    wh_http: httpx.Client, sign_up: SignUp, receiver: Receiver, wh_db: Database, wh_settings: Settings, database
) -> None:
    a, b = sign_up(), sign_up()
    endpoint = register(wh_http, a, f"{receiver.url}/{tag()}/ok", ["project.created"])
    new_project(wh_http, a)
    webhook_delivery.deliver(wh_db, wh_settings)
    delivery = wh_http.get(f"/v1/webhooks/{endpoint['endpoint_id']}/deliveries", headers=a.headers).json()["items"][0]
    base = f"/v1/webhooks/{endpoint['endpoint_id']}"
    assert wh_http.get("/v1/webhooks", headers=b.headers).json()["items"] == []
    for method, path in [
        ("GET", base),
        ("PATCH", base),
        ("DELETE", base),
        ("GET", f"{base}/deliveries"),
        ("GET", f"{base}/deliveries/{delivery['delivery_id']}"),
        ("POST", f"{base}/deliveries/{delivery['delivery_id']}/redeliver"),
        ("POST", f"{base}/test"),
    ]:
        kwargs: dict[str, Any] = {"json": {"active": False}} if method == "PATCH" else {}
        problem(wh_http.request(method, path, headers=b.headers, **kwargs), 404, "not_found")
    # and below the API: B's context reads none of A's rows
    context = Context(uuid.UUID(b.tenant_id), uuid.UUID(b.user_id), "user", role=API_ROLE)
    with database.transaction(context) as conn:
        for table in ("webhook_endpoints", "webhook_deliveries", "webhook_attempts", "outbox_events"):
            count = conn.execute(f"SELECT count(*) FROM core.{table} WHERE tenant_id = %s", (a.tenant_id,)).fetchone()
            assert count[0] == 0, table


# -- concurrency: parallel fan-out and claim passes ----------------------------------------------


def test_parallel_fan_outs_and_claims_never_take_one_delivery_twice(new_tenant, owner, owner_url: str) -> None:
    """Four connections at once, started by a barrier, run the fan-out, then the claim:
    every event is fanned out once, and within a lease no delivery is leased twice and no
    endpoint has two deliveries in flight. Repeated."""
    settings = Settings(database_url=owner_url)
    db = Database(settings, name="webhook-races", dict_rows=True)
    workers = 4
    try:
        for _round in range(8):
            tenants = [new_tenant() for _ in range(2)]
            endpoints = []
            for tenant in tenants:
                for _ in range(3):
                    endpoints.append(
                        owner.execute(
                            "INSERT INTO core.webhook_endpoints (tenant_id, url, event_types, secret_ciphertext)"
                            " VALUES (%s, 'https://receiver.example/hook', '{project.created}', %s)"
                            " RETURNING endpoint_id",
                            (tenant, b"x" * 40),
                        ).fetchone()["endpoint_id"]
                    )
                for i in range(10):
                    owner.execute(
                        "INSERT INTO core.outbox_events (tenant_id, event_type, payload)"
                        " VALUES (%s, 'project.created', jsonb_build_object('i', %s))",
                        (tenant, i),
                    )
            fanned = _together(db, workers, "SELECT * FROM ops.fan_out_webhook_events(7)")
            # the rest, if the parallel runs left some (each took at most 7 events)
            with db.transaction(Context(actor_type="system", role=WORKER_ROLE)) as conn:
                conn.execute("SELECT * FROM ops.fan_out_webhook_events(1000)")
            made = owner.execute(
                "SELECT endpoint_id, event_id, count(*) AS n FROM core.webhook_deliveries"
                " WHERE tenant_id = ANY(%s) GROUP BY 1, 2",
                (tenants,),
            ).fetchall()
            assert len(made) == 6 * 10 and {m["n"] for m in made} == {1}, "an event fanned out twice"
            assert all(len(r) == 1 for r in fanned)

            claims = _together(db, workers, "SELECT * FROM ops.claim_webhook_deliveries(50, interval '60 seconds')")
            leased = [row["delivery_id"] for rows in claims for row in rows]
            mine = [row for rows in claims for row in rows if row["tenant_id"] in tenants]
            assert len(leased) == len(set(leased)), "a delivery was leased twice"
            per_endpoint = Counter(row["endpoint_id"] for row in mine)
            assert set(per_endpoint.values()) == {1} and len(per_endpoint) == 6, per_endpoint
            owner.execute(
                "UPDATE core.webhook_deliveries SET status = 'dead', finished_at = now()"
                " WHERE tenant_id = ANY(%s) AND status = 'pending'",
                (tenants,),
            )
    finally:
        db.close()


def _together(db: Database, workers: int, statement: str) -> list[list[dict[str, Any]]]:
    """Run `statement` as the worker role on `workers` connections at once (a barrier starts them)."""
    barrier = threading.Barrier(workers)
    results: list[list[dict[str, Any]]] = [[] for _ in range(workers)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            with db.transaction(Context(actor_type="system", role=WORKER_ROLE)) as conn:
                conn.execute("SELECT 1")
                barrier.wait(timeout=10)
                results[i] = conn.execute(statement).fetchall()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results

"""Billing over HTTP (api/resources/billing.py, sql/repeatable/600_billing.sql,
610_subscriptions.sql): the tenant's subscription, plan changes by the tenant and by a
platform administrator (the same SQL, the role checked there), invoices, and the payment
provider's signed webhooks with the past_due suspension.

No payment provider is reachable here: the tests sign events locally with Stripe's scheme
(HMAC-SHA256 of "<t>.<body>") and send them through the real endpoint and its verification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal

import httpx
import psycopg
import pytest

from db.context import Context
from db.settings import WORKER_ROLE
from tests.helpers import bearer, end_subscription_period, problem, start_api
from tests.test_billing_export import put_usage

SECRET = "whsec_test_" + "k" * 24


@pytest.fixture(scope="module")
def admin_headers(http, sign_up, owner_url) -> dict[str, str]:
    account = sign_up()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (account.user_id,))
    login = http.post("/v1/auth/login", json={"email": account.email, "password": account.password})
    assert login.status_code == 200, login.text
    return bearer(login.json()["access_token"])


def test_a_tenant_upgrades_downgrades_and_cancels_itself(http, sign_up, admin_headers, owner_url):
    acct = sign_up(plan="free")
    h = acct.headers
    sub = http.get("/v1/billing/subscription", headers=h)
    assert sub.status_code == 200, sub.text
    assert (sub.json()["plan"], sub.json()["status"]) == ("free", "active")
    assert [c["kind"] for c in sub.json()["changes"]] == ["start"]

    # a paid plan needs a payment method; the admin records one (normally the provider's event)
    problem(
        http.post("/v1/billing/subscription/upgrade", headers=h, json={"plan": "pro"}), 409, "payment_method_required"
    )
    problem(
        http.post("/v1/billing/subscription/downgrade", headers=h, json={"plan": "pro"}), 409, "invalid_plan_change"
    )
    on_file = http.put(
        f"/v1/admin/tenants/{acct.tenant_id}/subscription/payment-method", headers=admin_headers, json={"on_file": True}
    )
    assert on_file.status_code == 200 and on_file.json()["payment_method_on_file"], on_file.text

    up = http.post("/v1/billing/subscription/upgrade", headers=h, json={"plan": "pro"})
    assert up.status_code == 200, up.text
    assert up.json()["plan"] == "pro"
    upgrade = up.json()["changes"][0]
    assert upgrade["kind"] == "upgrade" and upgrade["from_plan"] == "free"
    # proration: nothing to credit from the free plan, the unused share of pro's 49.00 charged
    details = upgrade["details"]
    assert details["credit_cents"] == 0 and 0 < details["charge_cents"] <= 4900
    assert Decimal(str(details["unused_share"])) > Decimal("0.9")  # the period began just now
    # the tenant's plan and its quotas follow at once (070_quotas.sql's trigger)
    quotas = http.get("/v1/quotas", headers=h).json()
    assert quotas["plan"] == "pro"
    assert {q["resource"]: q["limit"] for q in quotas["resources"]}["projects"] == 100

    down = http.post("/v1/billing/subscription/downgrade", headers=h, json={"plan": "free"})
    assert down.status_code == 200, down.text
    assert (down.json()["plan"], down.json()["pending_plan"]) == ("pro", "free")  # at the period's end
    assert down.json()["changes"][0]["effective_at"] == down.json()["current_period_end"]
    cancel = http.post("/v1/billing/subscription/cancel", headers=h)
    assert cancel.status_code == 200 and cancel.json()["cancel_at_period_end"] and cancel.json()["status"] == "active"

    # the period ends: the worker rolls it over, the cancellation takes effect
    end_subscription_period(owner_url, acct.tenant_id)
    worker_call(owner_url, "SELECT ops.advance_subscriptions()")
    after = http.get("/v1/billing/subscription", headers=h).json()
    assert (after["plan"], after["status"], after["cancel_at_period_end"]) == ("free", "canceled", False)
    assert dt.datetime.fromisoformat(after["current_period_end"]) > dt.datetime.now(dt.UTC)
    assert http.get("/v1/quotas", headers=h).json()["plan"] == "free"


def test_a_plan_set_by_a_platform_admin_is_the_subscriptions_plan(http, sign_up, admin_headers):
    # before: admin.set_tenant_plan moved the tenant (and its quotas) to pro while its
    # subscription still said free
    acct = sign_up(plan="free")
    moved = http.put(f"/v1/admin/tenants/{acct.tenant_id}/plan", headers=admin_headers, json={"plan": "pro"})
    assert moved.status_code == 200, moved.text
    sub = http.get("/v1/billing/subscription", headers=acct.headers).json()
    assert sub["plan"] == "pro" and sub["pending_plan"] is None


def test_only_billing_scopes_reach_billing(http, sign_up, admin_headers):
    acct = sign_up(plan="free")

    def key(*scopes: str) -> dict[str, str]:
        made = http.post(
            "/v1/api-keys", headers=acct.headers, json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": list(scopes)}
        )
        assert made.status_code == 201, made.text
        return {"X-API-Key": made.json()["key"]}

    reader, other = key("billing:read"), key("tenant:read")
    problem(http.get("/v1/billing/subscription", headers=other), 403, "missing_scope")
    problem(http.get("/v1/billing/invoices", headers=other), 403, "missing_scope")
    assert http.get("/v1/billing/subscription", headers=reader).status_code == 200
    problem(http.post("/v1/billing/subscription/cancel", headers=reader), 403, "missing_scope")
    manager = key("billing:manage")
    assert http.post("/v1/billing/subscription/cancel", headers=manager).status_code == 200
    # the admin's view is the same function's
    admin_view = http.get(f"/v1/admin/tenants/{acct.tenant_id}/subscription", headers=admin_headers)
    assert admin_view.status_code == 200 and admin_view.json()["cancel_at_period_end"]
    problem(
        http.get(f"/v1/admin/tenants/{acct.tenant_id}/subscription", headers=acct.headers),
        403,
        "platform_admin_required",
    )


def test_invoices_and_the_current_month_are_the_tenants_own(http, sign_up, owner_url, database):
    acct = sign_up(plan="free")
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.tenants SET plan_id = 'pro' WHERE tenant_id = %s", (acct.tenant_id,))
    put_usage(owner_url, uuid.UUID(acct.tenant_id), dt.date(2002, 3, 1), {"api_calls": 1_000_010})
    worker_call(owner_url, "SELECT * FROM ops.close_billing_period('2002-03-01')")

    listed = http.get("/v1/billing/invoices", headers=acct.headers)
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == [{"period": "2002-03", "lines": 1, "amount": "0.001000", "currency": "EUR"}]
    invoice = http.get("/v1/billing/invoices/2002-03", headers=acct.headers)
    assert invoice.status_code == 200, invoice.text
    [line] = invoice.json()["lines"]
    assert (line["metric"], line["kind"], line["billable"], line["amount"]) == ("api_calls", "usage", 10, 0.001)
    page = http.get("/v1/billing/invoices/2002-03", headers=acct.headers, params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "Invoice 2002-03" in page.text and "api_calls" in page.text
    problem(http.get("/v1/billing/invoices/2002-04", headers=acct.headers), 404, "not_found")
    problem(
        http.get("/v1/billing/invoices/2002-03", headers=acct.headers, params={"format": "pdf"}),
        400,
        "invalid_parameter",
    )
    # another tenant sees none of it
    other = sign_up(plan="free")
    assert http.get("/v1/billing/invoices", headers=other.headers).json()["items"] == []
    problem(http.get("/v1/billing/invoices/2002-03", headers=other.headers), 404, "not_found")

    current = http.get("/v1/billing/usage", headers=acct.headers)
    assert current.status_code == 200, current.text
    body = current.json()
    assert body["plan"] == "pro" and body["period"] == f"{dt.datetime.now(dt.UTC):%Y-%m}"
    assert {line["metric"] for line in body["lines"]} >= {"api_calls", "tokens"}


def worker_call(owner_url: str, statement: str, *args) -> list:
    from db.context import Database
    from db.settings import Settings

    db = Database(Settings(database_url=owner_url), name="billing-worker")
    try:
        with db.transaction(Context(actor_type="system", role=WORKER_ROLE)) as conn:
            return conn.execute(statement, args).fetchall()
    finally:
        db.close()


# -- the payment provider's webhooks --------------------------------------------------------------


@pytest.fixture(scope="module")
def hooks(owner_url, redis_url, tmp_path_factory):
    """An API of its own, with the webhook secret set."""
    process, url = start_api(
        owner_url, redis_url, tmp_path_factory.mktemp("billing-api"), threads=2, TENANTRY_BILLING_WEBHOOK_SECRET=SECRET
    )
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    process.terminate()
    process.wait(timeout=15)


def signed(event: dict, *, secret: str = SECRET, at: int | None = None) -> tuple[bytes, dict[str, str]]:
    payload = json.dumps(event).encode()
    t = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    return payload, {"Stripe-Signature": f"t={t},v1={signature}", "content-type": "application/json"}


def stripe_event(kind: str, tenant_id: str) -> dict:
    return {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": kind,
        "data": {
            "object": {"object": "invoice", "id": f"in_{uuid.uuid4().hex[:14]}", "metadata": {"tenant_id": tenant_id}}
        },
    }


def test_failed_payment_suspends_after_the_grace_period_and_a_payment_reactivates(hooks, http, sign_up, owner_url):
    acct = sign_up(plan="free")
    h = acct.headers
    failed = stripe_event("invoice.payment_failed", acct.tenant_id)
    payload, headers = signed(failed)
    first = hooks.post("/v1/billing/provider-events", content=payload, headers=headers)
    assert first.status_code == 200 and first.json()["outcome"] == "past_due", first.text
    again = hooks.post("/v1/billing/provider-events", content=payload, headers=headers)
    assert again.json()["outcome"] == "duplicate"  # idempotent by event id
    sub = http.get("/v1/billing/subscription", headers=h).json()
    assert sub["status"] == "past_due"
    assert [c["kind"] for c in sub["changes"]].count("payment_failed") == 1

    # within the grace period nothing happens; after it, the tenant is suspended
    assert worker_call(owner_url, "SELECT * FROM ops.suspend_past_due(interval '1 day')") == []
    suspended = worker_call(owner_url, "SELECT * FROM ops.suspend_past_due(interval '0 seconds')")
    assert (uuid.UUID(acct.tenant_id),) in suspended
    problem(http.post("/v1/projects", headers=h, json={"name": "refused"}), 403, "tenant_suspended")
    assert http.get("/v1/projects", headers=h).status_code == 200  # reads kept

    paid_payload, paid_headers = signed(stripe_event("invoice.paid", acct.tenant_id))
    paid = hooks.post("/v1/billing/provider-events", content=paid_payload, headers=paid_headers)
    assert paid.status_code == 200 and paid.json()["outcome"] == "reactivated", paid.text
    assert http.get("/v1/billing/subscription", headers=h).json()["status"] == "active"
    assert http.post("/v1/projects", headers=h, json={"name": "back"}).status_code == 201


def test_unsigned_forged_or_stale_events_are_refused(hooks, http, sign_up):
    acct = sign_up(plan="free")
    event = stripe_event("invoice.payment_failed", acct.tenant_id)
    payload, headers = signed(event)
    problem(
        hooks.post("/v1/billing/provider-events", content=payload, headers={"content-type": "application/json"}),
        400,
        "invalid_signature",
    )
    _, forged = signed(event, secret="whsec_someone_else")
    problem(hooks.post("/v1/billing/provider-events", content=payload, headers=forged), 400, "invalid_signature")
    tampered = payload.replace(b"payment_failed", b"paid")
    problem(hooks.post("/v1/billing/provider-events", content=tampered, headers=headers), 400, "invalid_signature")
    _, stale = signed(event, at=int(time.time()) - 301)  # beyond the 5-minute tolerance
    problem(hooks.post("/v1/billing/provider-events", content=payload, headers=stale), 400, "invalid_signature")
    # the session's API has no secret: nothing verifies
    problem(http.post("/v1/billing/provider-events", content=payload, headers=headers), 400, "invalid_signature")
    assert http.get("/v1/billing/subscription", headers=acct.headers).json()["status"] == "active"
    # a signed event for no tenant of ours is acknowledged and ignored
    payload, headers = signed(stripe_event("invoice.payment_failed", str(uuid.uuid4())))
    assert hooks.post("/v1/billing/provider-events", content=payload, headers=headers).json()["outcome"] == "ignored"

"""/v1/billing: the tenant's subscription, current usage and projected cost, invoices (JSON
and printable HTML), plan changes by the tenant itself (billing:manage), the platform
admin's subscription endpoints, and the payment provider's signed webhooks.

The rules are the database's (sql/repeatable/600_billing.sql, 610_subscriptions.sql): the
same SQL functions serve the tenant (api.*, role checked by its scope) and the platform
administrator (admin.*). The webhook's signature is checked here, as Stripe signs:
`Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>` (several
v1 entries during a secret's rotation), within a tolerance of the signed time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import re
import time
import uuid
from typing import Any

import falcon
from pydantic import BaseModel, ConfigDict, Field

from api.errors import Problem, invalid_parameter
from api.resources.base import body, call, call_one, open_transaction
from api.spec import operation
from db.context import Context, Database
from db.settings import Settings

_PERIOD = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


# -- bodies and answers ---------------------------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SubscriptionChange(_Open):
    kind: str
    from_plan: str | None = None
    to_plan: str | None = None
    effective_at: dt.datetime
    recorded_at: dt.datetime
    details: dict[str, Any] = {}


class Subscription(_Open):
    tenant_id: uuid.UUID
    plan: str
    status: str
    current_period_start: dt.datetime
    current_period_end: dt.datetime
    trial_end: dt.datetime | None = None
    payment_method_on_file: bool
    cancel_at_period_end: bool
    pending_plan: str | None = None
    past_due_since: dt.datetime | None = None
    changes: list[SubscriptionChange]


class UsageCost(_Open):
    period: str
    plan: str
    lines: list[dict[str, Any]]
    usage_amount: Any
    projected_usage_amount: Any


class InvoiceSummary(_Open):
    period: str
    lines: int
    amount: str
    currency: str


class InvoiceList(BaseModel):
    items: list[InvoiceSummary]


class Invoice(_Open):
    period: str
    lines: list[dict[str, Any]]
    totals: list[dict[str, Any]]


class PlanChoice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str = Field(min_length=1, max_length=31)


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="forbid")
    on_file: bool


class ProviderEventOutcome(BaseModel):
    event_id: str
    outcome: str


def _period(raw: str) -> dt.date:
    match = _PERIOD.fullmatch(raw)
    if match is None:
        raise Problem(404, "not_found", f"invoice {raw} not found (a period is YYYY-MM)")
    return dt.date(int(match[1]), int(match[2]), 1)


# -- the tenant's own ------------------------------------------------------------------------------


class SubscriptionResource:
    @operation(
        summary="The tenant's subscription: plan, status, current period, trial, pending changes and history",
        scope="billing:read",
        function="api.get_subscription",
        response=Subscription,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = call_one(req)["get_subscription"]


class _PlanChangeResource:
    function = ""

    def _change(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, PlanChoice)
        resp.media = call_one(req, plan_id=data.plan)[self.function.split(".")[1]]


class SubscriptionUpgradeResource(_PlanChangeResource):
    function = "api.upgrade_subscription"

    @operation(
        summary="Upgrade now to a dearer plan (prorated: the unused share of the old base price is credited); "
        "a paid plan needs a payment method on file unless trialing",
        scope="billing:manage",
        function="api.upgrade_subscription",
        renamed={"plan": "plan_id"},
        body=PlanChoice,
        response=Subscription,
        errors=(409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._change(req, resp)


class SubscriptionDowngradeResource(_PlanChangeResource):
    function = "api.downgrade_subscription"

    @operation(
        summary="Downgrade to a cheaper plan at the end of the current period",
        scope="billing:manage",
        function="api.downgrade_subscription",
        renamed={"plan": "plan_id"},
        body=PlanChoice,
        response=Subscription,
        errors=(409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._change(req, resp)


class SubscriptionCancelResource:
    @operation(
        summary="Cancel at the end of the current period (then the free plan); idempotent",
        scope="billing:manage",
        function="api.cancel_subscription",
        response=Subscription,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = call_one(req)["cancel_subscription"]


class UsageCostResource:
    @operation(
        summary="The current calendar month: usage per priced metric, its cost so far and projected to the "
        "month's end, and the plan's base price",
        scope="billing:read",
        function="api.get_current_usage_cost",
        response=UsageCost,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = call_one(req)["get_current_usage_cost"]


class InvoicesResource:
    @operation(
        summary="The tenant's invoices: one per closed month, with its total per currency, newest first",
        scope="billing:read",
        function="api.list_invoices",
        response=InvoiceList,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        items = [
            {
                "period": f"{row['period']:%Y-%m}",
                "lines": row["lines"],
                "amount": str(row["amount"]),
                "currency": row["currency"],
            }
            for row in call(req)
        ]
        resp.media = {"items": items}


class InvoiceResource:
    @operation(
        summary="One invoice (a closed month): its lines (usage, and adjustments for late events of earlier "
        "months) and totals; `format=html` answers a printable page",
        scope="billing:read",
        function="api.get_invoice",
        response=Invoice,
        query={"format": "json (default) or html"},
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, period: str) -> None:
        fmt = req.get_param("format") or "json"
        if fmt not in ("json", "html"):
            raise invalid_parameter("format", "format must be json or html.")
        invoice = call_one(req, period=_period(period))["get_invoice"]
        if fmt == "json":
            resp.media = invoice
            return
        resp.content_type = "text/html; charset=utf-8"
        resp.text = render_invoice(invoice)


def render_invoice(invoice: dict[str, Any]) -> str:
    """A printable invoice page (every value escaped)."""
    e = html.escape
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{e(str(line[key]))}</td>"
            for key in ("usage_period", "kind", "metric", "quantity", "included", "billable", "unit_price", "amount")
        )
        + f"<td>{e(str(line['currency']))}</td></tr>"
        for line in invoice["lines"]
    )
    totals = "".join(
        f"<p class=total>Total: {e(str(t['amount']))} {e(str(t['currency']))}</p>" for t in invoice["totals"]
    )
    return (
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>Invoice {e(invoice['period'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:.3em .6em;text-align:right}@media print{a{display:none}}</style>"
        f"</head><body><h1>Invoice {e(invoice['period'])}</h1><table><thead><tr>"
        "<th>usage period</th><th>kind</th><th>metric</th><th>quantity</th><th>included</th><th>billable</th>"
        "<th>unit price</th><th>amount</th><th>currency</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>{totals}</body></html>"
    )


# -- the platform administrator's ------------------------------------------------------------------


class AdminSubscriptionResource:
    @operation(
        summary="A tenant's subscription with its history",
        auth="admin",
        function="admin.get_subscription",
        response=Subscription,
        errors=(404,),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        resp.media = call_one(req, tenant_id=tenant_id)["get_subscription"]


class AdminSubscriptionPlanResource:
    @operation(
        summary="Change a tenant's plan: a dearer one now (prorated), a cheaper one at the end of the period",
        auth="admin",
        function="admin.change_subscription_plan",
        renamed={"plan": "plan_id"},
        body=PlanChoice,
        response=Subscription,
        errors=(404, 409, 422),
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        data = body(req, PlanChoice)
        resp.media = call_one(req, tenant_id=tenant_id, plan_id=data.plan)["change_subscription_plan"]


class AdminSubscriptionCancelResource:
    @operation(
        summary="Cancel a tenant's subscription at the end of its period",
        auth="admin",
        function="admin.cancel_subscription",
        response=Subscription,
        errors=(404,),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        resp.media = call_one(req, tenant_id=tenant_id)["cancel_subscription"]


class AdminPaymentMethodResource:
    @operation(
        summary="Record whether a tenant has a payment method on file (normally the provider's events do)",
        auth="admin",
        function="admin.set_payment_method",
        body=PaymentMethod,
        response=Subscription,
        errors=(404, 422),
    )
    def on_put(self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID) -> None:
        data = body(req, PaymentMethod)
        resp.media = call_one(req, tenant_id=tenant_id, on_file=data.on_file)["set_payment_method"]


# -- the payment provider's webhooks ----------------------------------------------------------------


def verify_signature(header: str | None, payload: bytes, secret: str, tolerance: int, now: float | None = None) -> None:
    """Stripe's scheme: a v1 signature of "<t>.<payload>" by the secret, t within the tolerance.
    Raises a 400 `invalid_signature` problem otherwise (constant-time comparison)."""
    if not header:
        raise Problem(400, "invalid_signature", "The Stripe-Signature header is missing.", field="Stripe-Signature")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise Problem(
            400, "invalid_signature", "Stripe-Signature has no timestamp or no v1 signature.", field="Stripe-Signature"
        )
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance:
        raise Problem(
            400,
            "invalid_signature",
            f"The signed timestamp is more than {tolerance} seconds from now (a replay?).",
            field="Stripe-Signature",
        )
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + payload, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise Problem(400, "invalid_signature", "No v1 signature matches the payload.", field="Stripe-Signature")


class ProviderEventsResource:
    """POST /v1/billing/provider-events: no login; the signature is the credential."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    @operation(
        summary="The payment provider's webhook (Stripe's event format and Stripe-Signature scheme): "
        "invoice.payment_failed -> past_due, invoice.paid -> active (and reactivated), "
        "payment_method.attached; idempotent by event id",
        auth="none",
        function="auth.apply_provider_event",
        response=ProviderEventOutcome,
        errors=(400, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        secret = self.settings.billing_webhook_secret
        if secret is None:
            raise Problem(400, "invalid_signature", "No webhook secret is configured: no event can be verified.")
        verify_signature(
            req.get_header("Stripe-Signature"),
            req.context.raw_body,
            secret.get_secret_value(),
            self.settings.billing_webhook_tolerance_seconds,
        )
        event = req.context.body
        if (
            not isinstance(event, dict)
            or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str)
        ):
            raise Problem(422, "invalid_body", "An event has a string id and type.", field="id")
        if not 1 <= len(event["id"]) <= 255 or not 1 <= len(event["type"]) <= 255:
            raise Problem(422, "invalid_body", "An event's id and type are 1 to 255 characters.", field="id")
        obj = (event.get("data") or {}).get("object") if isinstance(event.get("data"), dict) else None
        metadata = obj.get("metadata") if isinstance(obj, dict) else None
        raw_tenant = metadata.get("tenant_id") if isinstance(metadata, dict) else None
        try:
            tenant = uuid.UUID(raw_tenant) if isinstance(raw_tenant, str) else None
        except ValueError:
            tenant = None
        context = Context(actor_type="system", request_id=req.context.request_id)
        with open_transaction(req, self.db, context):
            outcome = call_one(req, event_id=event["id"], type=event["type"], tenant_id=tenant)["apply_provider_event"]
        resp.media = {"event_id": event["id"], "outcome": outcome}

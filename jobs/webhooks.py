"""Webhooks as jobs: fanning the outbox out into deliveries, and delivery passes
(jobs/webhook_delivery.py: claim, send signed, record). Delivery is at least once, so a
run that is retried, or two runs at once (claims are leases taken under SKIP LOCKED),
send nothing twice on purpose; a failed attempt is retried by the delivery's own
backoff (settings.webhook_*), not by the job."""

from __future__ import annotations

from jobs import webhook_delivery
from jobs.runtime import call_ops, database, job, settings


@job(time_limit_s=120, max_retries=3)
def fan_out_webhook_events() -> dict[str, object]:
    """Turn undispatched outbox events into deliveries (one per subscribed active endpoint)."""
    row = call_ops("fan_out_webhook_events", 10000)[0]
    return {"events": row["events"], "deliveries": row["deliveries"], "tenants": row["tenants"]}


@job(time_limit_s=180, max_retries=0)
def deliver_webhooks() -> dict[str, object]:
    """One delivery pass (after a fan-out, so an event waits one pass, not two)."""
    report = webhook_delivery.deliver(database(), settings(), max_seconds=60)
    return {**report.counts(), "errors": report.errors[:5]}

"""Billing's periodic work: the export of the month that just closed (jobs/billing_export.py),
the subscriptions' period roll-over, and suspending tenants whose payment stayed past due
beyond the grace period. The rules are SQL's (sql/repeatable/600_billing.sql,
610_subscriptions.sql)."""

from __future__ import annotations

import datetime as dt

from jobs import billing_export
from jobs.runtime import call_ops, database, job, scalar, settings


@job(time_limit_s=1800, max_retries=3)
def export_billing() -> dict[str, object]:
    """Close last month and export it to TENANTRY_BILLING_EXPORT_DIR in each configured
    format, exactly once (a month already exported there is left alone)."""
    config = settings()
    if config.billing_export_dir is None:
        return {"skipped": "TENANTRY_BILLING_EXPORT_DIR is not set"}
    month = billing_export.previous_month(dt.datetime.now(dt.UTC).date())
    done = {}
    for fmt in config.billing_export_formats.split(","):
        result = billing_export.export_period(database(), month, fmt, config.billing_export_dir)
        done[fmt] = f"{result.status} v{result.version} ({result.rows} rows)"
    return {"period": f"{month:%Y-%m}", **done}


@job(time_limit_s=300)
def advance_subscriptions() -> dict[str, object]:
    """Roll over ended periods: pending downgrades and cancellations take effect, trials end."""
    return {"moved": scalar(call_ops("advance_subscriptions"))}


@job(time_limit_s=300)
def suspend_past_due() -> dict[str, object]:
    """Suspend the tenants past due for longer than TENANTRY_BILLING_PAST_DUE_GRACE_DAYS."""
    grace = dt.timedelta(days=settings().billing_past_due_grace_days)
    return {"suspended": [str(r["tenant_id"]) for r in call_ops("suspend_past_due", grace)]}

"""Quotas' periodic work: expiring metered reservations and reconciling counted quotas,
each one ops.* function (the quota rules are in SQL)."""

from __future__ import annotations

from jobs.runtime import call_ops, job, scalar


@job(time_limit_s=120)
def expire_quota_reservations() -> dict[str, object]:
    """Release the reservations whose time ran out (their units go back to the tenant)."""
    return {"released": scalar(call_ops("expire_quota_reservations"))}


@job(time_limit_s=600, max_retries=3)
def reconcile_quotas() -> dict[str, object]:
    """Recount the counted resources of every tenant and repair drifted counters; the
    repairs (tenant, resource, was, now) go into the run's log line."""
    fixed = call_ops("reconcile_quotas")
    return {"fixed": len(fixed), "detail": [{k: str(v) for k, v in row.items()} for row in fixed[:50]]}

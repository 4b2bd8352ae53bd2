"""The audit log's periodic work: sealing new audit rows into each tenant's hash chain,
and the monthly partitions (made ahead; whole months past the longest retention
dropped). Each is one ops.* function: the rules are in sql/repeatable/500_audit.sql."""

from __future__ import annotations

from jobs.runtime import call_ops, job


@job(time_limit_s=300, max_retries=3)
def seal_audit() -> dict[str, object]:
    """Seal every tenant's unsealed audit rows (`tenantry audit seal` runs it by hand);
    a tenant whose writers hold its audit lock is skipped until the next run (busy)."""
    rows = call_ops("seal_audit")
    return {
        "tenants": len(rows),
        "sealed": sum(row["sealed"] for row in rows),
        "busy": sum(1 for row in rows if row["busy"]),
    }


@job(time_limit_s=300, max_retries=3)
def maintain_audit_partitions() -> dict[str, object]:
    """Make the audit log's monthly partitions ahead, then drop the whole months older than
    the longest audit retention of any plan (each affected tenant gets an audited event)."""
    created = call_ops("maintain_audit_partitions")
    dropped = call_ops("drop_expired_audit_partitions")
    return {
        "created": [str(row["partition_name"]) for row in created],
        "dropped": [str(row["partition_name"]) for row in dropped],
    }

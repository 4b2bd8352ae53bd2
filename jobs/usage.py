"""Usage metering's periodic work: incremental rollups and time-partition maintenance,
each one ops.* function (the usage feature's SQL owns the rules: what a rollup counts,
which partitions exist)."""

from __future__ import annotations

import datetime as dt

from jobs.runtime import call_ops, job, scalar, settings

#: how far ahead partitions exist, so that an event of the near future always has one
PARTITIONS_AHEAD = dt.timedelta(days=14)
#: the retention when the settings have none (usage_retention_days, the usage feature's setting)
DEFAULT_RETENTION_DAYS = 400


@job(time_limit_s=300)
def rollup_usage() -> dict[str, object]:
    """Roll new usage events into the hourly, daily and billing-period rollups (exactly
    once: the SQL takes each pending event once, whoever runs it)."""
    return {"rolled_up": scalar(call_ops("rollup_usage"))}


@job(time_limit_s=300, max_retries=3)
def maintain_usage_partitions() -> dict[str, object]:
    """Create the usage events' time partitions ahead and drop those past the retention."""
    retention = dt.timedelta(days=getattr(settings(), "usage_retention_days", DEFAULT_RETENTION_DAYS))
    rows = call_ops("maintain_usage_partitions", retention, PARTITIONS_AHEAD)
    return {"changes": len(rows), "detail": [{k: str(v) for k, v in row.items()} for row in rows[:20]]}

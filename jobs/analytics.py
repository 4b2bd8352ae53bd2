"""Analytics' periodic work: refresh what analysts read (the per-tenant rollup tables and
the materialized views of analytics/*.sql), one ops.* function (the rules are in SQL,
sql/repeatable/450_analytics.sql)."""

from __future__ import annotations

from jobs.runtime import call_ops, job


@job(time_limit_s=600, max_retries=3)
def refresh_analytics() -> dict[str, object]:
    """Recompute the analytics rollups over the refresh window (the usage lateness window
    and a day) and refresh the materialized views. A run that finds another one running
    is skipped: that one does the work."""
    row = call_ops("refresh_analytics")[0]
    return {key: str(value) if key == "since" else value for key, value in row.items()}

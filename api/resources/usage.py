"""/v1/usage: metered usage -- ingest events, the current period, history, the metric catalog.

The rules (metrics, lateness, idempotency by event id, rollups) are the database's
(sql/repeatable/400_usage.sql); a batch is all or nothing, and its first bad event is
the problem's `field` (events[i].metric, ...).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import falcon
from psycopg.types.json import Jsonb

from api import models
from api.errors import invalid_parameter
from api.resources.base import MAX_CURSOR, PAGE_QUERY, body, call, call_one, limit_param, shape
from api.spec import operation

GRANULARITIES = ("hour", "day", "period")
HISTORY_QUERY = PAGE_QUERY | {
    "metric": "Only this metric (default: every metric)",
    "granularity": "hour, day (default) or period (the calendar month, UTC)",
    "from": "Buckets starting at or after this time (ISO 8601 with a UTC offset)",
    "to": "Buckets starting before this time (ISO 8601 with a UTC offset)",
}


def _time_param(req: falcon.Request, name: str) -> dt.datetime | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        value = None
    if value is None or value.tzinfo is None:
        raise invalid_parameter(name, f"{name} is an ISO 8601 time with a UTC offset.")
    return value


def _cursor(row: dict) -> str:
    raw = json.dumps([row["bucket_start"].isoformat(), row["metric"]]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class UsageEventsResource:
    @operation(
        summary="Record usage events: one event object, or {events: [...]} with up to 1000 (all or nothing; "
        "a repeated event_id counts once)",
        scope="usage:write",
        function="api.ingest_usage",
        body=models.UsageBatch,
        response=models.UsageIngested,
        errors=(422, 503),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = getattr(req.context, "body", None)
        single = isinstance(data, dict) and "events" not in data
        events: list
        # the shape is checked here; the events go to SQL as sent (exact numbers), where
        # the rules are
        if single:
            body(req, models.UsageEvent)
            events = [data]
        else:
            body(req, models.UsageBatch)  # so the body is an object with events
            events = data["events"]  # type: ignore[index]
        resp.media = shape(models.UsageIngested, call_one(req, events=Jsonb(events)))


class UsageResource:
    @operation(
        summary="Usage in the current billing period (calendar month, UTC) per metric, with the plan's limits",
        scope="usage:read",
        function="api.get_usage_summary",
        response=models.UsageSummary,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        rows = call(req)
        period = rows[0]["period_start"] if rows else None
        items = [shape(models.UsageNow, row | {"limit": row["usage_limit"]}) for row in rows]
        resp.media = {"period_start": period, "items": items}


class UsageHistoryResource:
    @operation(
        summary="Rolled-up usage by metric and granularity (keyset pagination, oldest bucket first)",
        scope="usage:read",
        function="api.get_usage",
        response=models.UsagePage,
        paginated=True,
        query=HISTORY_QUERY,
        errors=(404, 422),
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_metric = _history_cursor(req)
        granularity = req.get_param("granularity") or "day"
        if granularity not in GRANULARITIES:  # a query parameter's shape (api.get_usage checks it too)
            raise invalid_parameter("granularity", "granularity is hour, day or period.")
        found = call(
            req,
            metric=req.get_param("metric"),
            granularity=granularity,
            **{"from": _time_param(req, "from"), "to": _time_param(req, "to")},  # `from` is a keyword
            limit=limit + 1,
            after_bucket=after,
            after_metric=after_metric,
        )
        items = found[:limit]
        resp.media = {
            "items": [shape(models.UsageBucket, row) for row in items],
            "next_cursor": _cursor(items[-1]) if len(found) > limit else None,
        }


def _history_cursor(req: falcon.Request) -> tuple[dt.datetime | None, str | None]:
    """(bucket_start, metric) after which the page starts."""
    raw = req.get_param("cursor")
    if not raw:
        return None, None
    try:
        if len(raw) > MAX_CURSOR:
            raise ValueError("too long")
        bucket, metric = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return dt.datetime.fromisoformat(bucket), str(metric)
    except (ValueError, TypeError, RecursionError):
        raise invalid_parameter("cursor", "cursor is not one this API issued.") from None


class UsageMetricsResource:
    @operation(
        summary="The metric catalog: what usage events may meter, and how each aggregates",
        scope=None,
        function="api.list_metrics",
        response=models.Metrics,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [shape(models.Metric, row) for row in call(req)]}

"""/v1/audit: the tenant's audit trail -- a filtered, keyset-paginated list and a CSV export.

The trail is written by the database (sql/repeatable/500_audit.sql: a trigger on every
audited table, events from the SQL functions) and cannot be changed; these calls only
read it. The export needs the plan feature `audit_export` and is itself an audited event.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import uuid
from collections.abc import Iterator
from typing import Any

import falcon
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from api.errors import invalid_parameter
from api.models import Page
from api.resources.base import MAX_CURSOR, PAGE_QUERY, call, limit_param, uuid_param
from api.spec import operation
from db.context import Database

FILTERS = {
    "actor_id": "Only what this user or API key did",
    "action": "Only this action: insert, update, delete, or an event (login, login_failed, audit.export, ...)",
    "table": "Only changes of this table (e.g. core.projects)",
    "from": "Only entries at or after this time (ISO 8601 with a UTC offset)",
    "to": "Only entries before this time (ISO 8601 with a UTC offset)",
}
#: rows per database round trip while a CSV export streams (each page its own transaction)
EXPORT_PAGE = 200
COLUMNS = (
    "audit_id",
    "occurred_at",
    "actor_id",
    "actor_type",
    "request_id",
    "ip",
    "action",
    "table_name",
    "row_key",
    "changes",
    "details",
)


class AuditEntry(BaseModel):
    audit_id: int
    occurred_at: dt.datetime
    actor_id: uuid.UUID | None
    actor_type: str | None
    request_id: str | None
    ip: str | None
    action: str
    table_name: str | None
    row_key: dict[str, Any] | None
    changes: dict[str, Any] | None
    details: dict[str, Any] | None


class AuditPage(Page[AuditEntry]):
    pass


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


def _text_param(req: falcon.Request, name: str) -> str | None:
    raw = req.get_param(name)
    if raw is not None and not 1 <= len(raw) <= 200:
        raise invalid_parameter(name, f"{name} is 1 to 200 characters.")
    return raw


def _filters(req: falcon.Request) -> dict[str, Any]:
    return {
        "actor_id": uuid_param(req, "actor_id"),
        "action": _text_param(req, "action"),
        "table": _text_param(req, "table"),
        "from": _time_param(req, "from"),
        "to": _time_param(req, "to"),
    }


def _cursor(row: dict) -> str:
    raw = json.dumps([row["occurred_at"].isoformat(), row["audit_id"]]).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _cursor_param(req: falcon.Request) -> tuple[dt.datetime | None, int | None]:
    raw = req.get_param("cursor")
    if not raw:
        return None, None
    try:
        if len(raw) > MAX_CURSOR:
            raise ValueError("too long")
        at, audit_id = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        if not isinstance(audit_id, int):
            raise ValueError("not an id")
        return dt.datetime.fromisoformat(at), audit_id
    except (ValueError, TypeError, RecursionError):
        raise invalid_parameter("cursor", "cursor is not one this API issued.") from None


def _entry(row: dict) -> dict:
    return {name: (str(row[name]) if name == "ip" and row[name] is not None else row[name]) for name in COLUMNS}


class AuditResource:
    @operation(
        summary="The tenant's audit trail: who changed what, and events such as logins "
        "(keyset pagination, oldest first; within the plan's audit retention)",
        scope="audit:read",
        function="api.list_audit",
        response=AuditPage,
        paginated=True,
        query=PAGE_QUERY | FILTERS,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_id = _cursor_param(req)
        found = call(req, **_filters(req), limit=limit + 1, after_occurred_at=after, after_id=after_id)
        items = found[:limit]
        resp.media = {
            "items": [_entry(row) for row in items],
            "next_cursor": _cursor(items[-1]) if len(found) > limit else None,
        }


class AuditExportResource:
    """The trail as CSV, streamed: each page of rows is read in a short transaction of
    its own (the request's transaction has ended by then), so a slow reader holds no
    transaction open; pages follow the keyset, so none is read twice."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(
        summary="Export the audit trail as CSV (streamed; plan feature audit_export; the export is audited)",
        scope="audit:read",
        function=("api.begin_audit_export", "api.list_audit"),
        query=FILTERS,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        filters = _filters(req)
        shown = {name: (str(value) if value is not None else None) for name, value in filters.items()}
        call(req, "api.begin_audit_export", filters=Jsonb({k: v for k, v in shown.items() if v is not None}))
        resp.content_type = "text/csv; charset=utf-8"
        resp.set_header("Content-Disposition", 'attachment; filename="audit.csv"')
        resp.stream = self._rows(req.context.db_context, req.context.principal.tenant_id, filters)

    def _rows(self, context: Any, tenant_id: uuid.UUID, filters: dict[str, Any]) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        after: dt.datetime | None = None
        after_id: int | None = None
        while True:
            with self.db.transaction(context) as conn:
                rows = conn.execute(
                    "SELECT * FROM api.list_audit(p_tenant_id => %(t)s, p_actor_id => %(actor_id)s,"
                    " p_action => %(action)s, p_table => %(table)s, p_from => %(from)s, p_to => %(to)s,"
                    " p_limit => %(limit)s, p_after_occurred_at => %(after)s, p_after_id => %(after_id)s)",
                    {"t": tenant_id, **filters, "limit": EXPORT_PAGE, "after": after, "after_id": after_id},
                ).fetchall()
            for row in rows:
                entry = _entry(row)
                writer.writerow(
                    [
                        json.dumps(value, sort_keys=True)
                        if isinstance(value, dict)
                        else ("" if value is None else value)
                        for value in (entry[name] for name in COLUMNS)
                    ]
                )
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            if len(rows) < EXPORT_PAGE:
                return
            after, after_id = rows[-1]["occurred_at"], rows[-1]["audit_id"]

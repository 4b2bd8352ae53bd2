"""Errors as RFC 9457 problem details, mapped from SQLSTATEs in this one place.

The database raises documented SQLSTATEs (sql/README.md) with messages written for
clients; this module turns them into `application/problem+json` with a stable `code`,
the field at fault when the database named one, and the request id. Anything we did not
plan for is a 500 with no detail: the traceback goes to the log, never to the client.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

import falcon
import psycopg

log = logging.getLogger("tenantry.api")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: HTTP status, stable code, a sentence, and optional extras."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers = headers or {}
        self.extra = extra


@dataclass(frozen=True)
class Mapping:
    status: int
    code: str
    # code by constraint name, for SQLSTATEs shared by several constraints
    by_constraint: dict[str, str] = field(default_factory=dict)


#: The error contract: SQLSTATE -> HTTP status and code (see sql/README.md).
SQLSTATES: dict[str, Mapping] = {
    "42501": Mapping(403, "forbidden"),
    "P0002": Mapping(404, "not_found"),
    "23505": Mapping(409, "conflict", {
        "projects_live_name_key": "duplicate_name",
        "tenant_slugs_pkey": "slug_taken",
        "users_email_key": "email_taken",
        "invitations_open_email_key": "invitation_open",
    }),
    "23503": Mapping(422, "unknown_reference"),
    "23502": Mapping(422, "missing_value"),
    "23514": Mapping(422, "invalid_value"),
    "22023": Mapping(422, "invalid_parameter"),
    "22P02": Mapping(422, "invalid_input"),
    "22P05": Mapping(422, "invalid_input"),  # e.g. a NUL character in a jsonb string
    "22007": Mapping(422, "invalid_input"),
    "22008": Mapping(422, "invalid_input"),
    "22001": Mapping(422, "value_too_long"),
    "TN001": Mapping(403, "tenant_suspended"),
    "TN002": Mapping(403, "tenant_deleted"),
    "TN003": Mapping(409, "tenant_deleted_final"),
    "TN010": Mapping(409, "project_deleted"),
    "TA001": Mapping(403, "account_unavailable"),
    "TA002": Mapping(403, "not_a_member"),
    "TA005": Mapping(401, "session_revoked"),
    "TA010": Mapping(403, "missing_scope"),
    "TA020": Mapping(409, "already_member"),
    "TA030": Mapping(404, "invitation_not_found"),
    "TA031": Mapping(410, "invitation_expired"),
    "TA032": Mapping(409, "invitation_used"),
    "TA033": Mapping(410, "invitation_revoked"),
    "TA040": Mapping(409, "last_owner"),
    "TA041": Mapping(403, "owner_required"),
    "TA050": Mapping(403, "scope_escalation"),
    "TA060": Mapping(403, "platform_admin_required"),
}


def problem_from_database(exc: psycopg.Error) -> Problem:
    """The Problem for a database error; 500 for SQLSTATEs outside the contract."""
    if exc.sqlstate is None and isinstance(exc, psycopg.DataError):
        # refused by the driver before reaching the server, e.g. a NUL character in text
        return Problem(422, "invalid_input", f"A value cannot be stored: {exc}")
    mapping = SQLSTATES.get(exc.sqlstate or "")
    if mapping is None:
        log.error("unmapped database error %s", exc.sqlstate, exc_info=exc)
        return Problem(500, "internal_error", "The server could not complete the request.")
    diag = exc.diag
    code = mapping.by_constraint.get(diag.constraint_name or "", mapping.code)
    extra = {"hint": diag.message_hint} if diag.message_hint else {}
    field = diag.column_name
    if field is None and exc.sqlstate == "23502":
        # Citus forwards a worker's error with its message only (no column field); the
        # message is PostgreSQL's own: null value in column "x" of relation "y_102008" ...
        named = _NOT_NULL_COLUMN.search(diag.message_primary or "")
        field = named.group(1) if named else None
    return Problem(mapping.status, code, diag.message_primary or mapping.code, field=field, **extra)


_NOT_NULL_COLUMN = re.compile(r'^null value in column "([^"]+)"')


def render(req: falcon.Request, resp: falcon.Response, problem: Problem) -> None:
    body: dict[str, Any] = {
        "type": f"/problems/{problem.code}",
        "title": falcon.code_to_http_status(problem.status)[4:],
        "status": problem.status,
        "code": problem.code,
        "detail": problem.detail,
        "instance": req.path,
        "request_id": getattr(req.context, "request_id", None),
    }
    if problem.field:
        body["field"] = problem.field
    body.update(problem.extra)
    resp.status = problem.status
    resp.content_type = PROBLEM_JSON
    resp.media = body
    for name, value in problem.headers.items():
        resp.set_header(name, value)


def install(app: falcon.App) -> None:
    """Register the handlers; the most specific exception class wins."""

    def on_problem(req, resp, exc: Problem, params):
        render(req, resp, exc)

    def on_database(req, resp, exc: psycopg.Error, params):
        render(req, resp, problem_from_database(exc))

    def on_http_error(req, resp, exc: falcon.HTTPError, params):
        code = (exc.title or "error").lower().replace(" ", "_")
        render(req, resp, Problem(exc.status_code, code, exc.description or exc.title or code,
                                  headers=dict(exc.headers or {})))

    def on_unexpected(req, resp, exc: Exception, params):
        log.error("unhandled error", exc_info=exc)
        render(req, resp, Problem(500, "internal_error", "The server could not complete the request."))

    app.add_error_handler(Exception, on_unexpected)
    app.add_error_handler(falcon.HTTPError, on_http_error)
    app.add_error_handler(psycopg.Error, on_database)
    app.add_error_handler(Problem, on_problem)

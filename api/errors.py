"""Errors as RFC 9457 problem details, mapped from SQLSTATEs by the registry in db/errors.py.

The database raises documented SQLSTATEs (the registry; sql/README.md) with messages written for
clients; this module turns them into `application/problem+json` with a stable `code`,
the field at fault when the database named one, and the request id. Constraint
violations are the exception: PostgreSQL's message names tables, shards and constraints,
so the client gets the registry's sentence for the constraint instead (never the
server's text). Anything we did not plan for is a 500 with no detail: the traceback goes
to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import falcon
import psycopg

from db import errors as db_errors
from db.context import unavailable

log = logging.getLogger("tenantry.api")

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """An error answer: HTTP status, stable code, a sentence, and optional extras."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.field = status, code, detail, field
        self.headers = headers or {}
        self.extra = extra


def invalid_parameter(name: str, detail: str) -> Problem:
    """The one answer to an unknown, repeated or malformed query parameter: 400
    `invalid_parameter` naming it in `field` (a body's fields are 422: api/README.md, "Errors")."""
    return Problem(400, "invalid_parameter", detail, field=name)


#: The WSGI environ key the error mapping sets when the answer is for a transient failure
#: (`db.errors.transient`): api/retry.py discards that answer and runs the request again.
RETRYABLE = "tenantry.retryable"


def problem_from_database(exc: psycopg.Error) -> Problem:
    """The Problem for a database error; 500 for SQLSTATEs outside the contract."""
    if exc.sqlstate is None and isinstance(exc, psycopg.DataError):
        # refused by the driver before reaching the server, e.g. a NUL character in text:
        # answered as the server answers the same value in jsonb
        nul = db_errors.UNTRANSLATABLE_CHARACTER
        return Problem(nul.status, nul.code, f"A value cannot be stored: {exc}")
    mapping = db_errors.lookup(exc.sqlstate, exc.diag.message_primary or str(exc))
    if unavailable(exc):
        # refused, lost, shutting down or starting, or no pooled connection in time (PoolTimeout
        # and a lost connection have no SQLSTATE): 503 database_unavailable, fast (db/context.py)
        mapping = mapping or db_errors.CONNECTION_EXCEPTION
    if mapping is None:
        log.error("unmapped database error %s", exc.sqlstate, exc_info=exc)
        return Problem(500, "internal_error", "The server could not complete the request.")
    if mapping.retry_after is not None:
        # transient (docs/operations.md): the registry's sentence, not the server's message,
        # which names hosts, ports or relations
        return Problem(
            mapping.status,
            mapping.code,
            mapping.meaning[0].upper() + mapping.meaning[1:] + ".",
            headers={"Retry-After": str(mapping.retry_after)},
        )
    diag = exc.diag
    extra: dict[str, Any] = {"hint": diag.message_hint} if diag.message_hint else {}
    if mapping.sqlstate in db_errors.CONSTRAINT_SQLSTATES:
        return _constraint_problem(mapping, diag, extra)
    code = mapping.code_for(diag.constraint_name)
    if mapping.detail_members:
        extra |= _detail_members(diag.message_detail)
    return Problem(mapping.status, code, diag.message_primary or mapping.code, field=diag.column_name, **extra)


#: problem members a DETAIL may not set: the problem's own
_RESERVED_MEMBERS = frozenset({"type", "title", "status", "code", "detail", "instance", "request_id", "field"})


def _detail_members(detail: str | None) -> dict[str, Any]:
    """The members of a JSON-object DETAIL (TQ001's resource, current, limit, ...): DETAIL
    reaches the client from a Citus worker, where the COLUMN field does not (docs/citus.md, fact 18)."""
    try:
        members = json.loads(detail or "")
    except ValueError:
        return {}
    if not isinstance(members, dict):
        return {}
    return {key: value for key, value in members.items() if key not in _RESERVED_MEMBERS}


def _constraint_problem(mapping: db_errors.SqlState, diag: psycopg.errors.Diagnostic, extra: dict[str, Any]) -> Problem:
    """A constraint violation, told from the registry: the message names no table or constraint."""
    message = diag.message_primary or ""
    # Citus forwards a worker's error with its message only (no constraint or column
    # field), and names the shard's copy of the constraint: "..._102008"
    constraint = diag.constraint_name
    if constraint is None:
        named = _CONSTRAINT.search(message)
        constraint = named.group(1) if named else None
    constraint = db_errors.known_constraint(constraint)
    told = db_errors.constraint_message(mapping.sqlstate, constraint)
    field = told.field or diag.column_name
    if field is None and mapping.sqlstate == db_errors.NOT_NULL_VIOLATION.sqlstate:
        # PostgreSQL's own message: null value in column "x" of relation "y_102008" ...
        named = _NOT_NULL_COLUMN.search(message)
        field = named.group(1) if named else None
    detail = told.message
    if field and told.field is None:
        detail = f"{field}: {detail}"
    return Problem(mapping.status, mapping.code_for(constraint), detail, field=field, **extra)


_NOT_NULL_COLUMN = re.compile(r'^null value in column "([^"]+)"')
_CONSTRAINT = re.compile(r'constraint "([^"]+)"')


def code_from_title(title: str | None) -> str:
    """A code in the registry's style for Falcon's own errors: "405 Method Not Allowed" -> method_not_allowed."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"^\d{3}\s+", "", title or "").lower())
    return "_".join(words) or "error"


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
        if db_errors.transient(exc):
            # nothing of the request's transaction persisted: api/retry.py may run it again
            req.env[RETRYABLE] = True
        render(req, resp, problem_from_database(exc))

    def on_http_error(req, resp, exc: falcon.HTTPError, params):
        code = code_from_title(exc.title)
        render(
            req,
            resp,
            Problem(exc.status_code, code, exc.description or exc.title or code, headers=dict(exc.headers or {})),
        )

    def on_unexpected(req, resp, exc: Exception, params):
        log.error("unhandled error", exc_info=exc)
        render(req, resp, Problem(500, "internal_error", "The server could not complete the request."))

    app.add_error_handler(Exception, on_unexpected)
    app.add_error_handler(falcon.HTTPError, on_http_error)
    app.add_error_handler(psycopg.Error, on_database)
    app.add_error_handler(Problem, on_problem)

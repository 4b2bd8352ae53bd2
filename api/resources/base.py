"""What every resource does the same way: validate the body, call SQL, page, shape."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TypeVar

import falcon
import falcon.routing
import psycopg
from psycopg import sql
from pydantic import BaseModel, ValidationError

from api.errors import Problem
from api.pipeline import Principal
from api.spec import functions_of
from db.context import Context, Database

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200  # core.max_page_size(): one documented maximum (a test checks they agree)
MAX_CURSOR = 200
#: the query parameters of every keyset-paginated list
PAGE_QUERY = {
    "limit": f"Page size, 1-{MAX_LIMIT} (default {DEFAULT_LIMIT})",
    "cursor": "next_cursor of the previous page",
}


def body(req: falcon.Request, model: type[M]) -> M:
    """The request body as `model`, or a 422 problem naming the first bad field."""
    data = getattr(req.context, "body", None)
    if data is None:
        raise Problem(422, "missing_body", "This call needs a JSON body.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        errors = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        detail = f"{field}: {first['msg']}" if field else f"the body: {first['msg']} (send a JSON object)"
        raise Problem(422, "invalid_body", detail, field=field, errors=errors) from None


def principal(req: falcon.Request) -> Principal:
    return req.context.principal


# -- calling SQL: the one way a resource reaches the database ---------------------------

_FUNCTION = re.compile(r"(api|auth|admin)\.([a-z_][a-z0-9_]*)")


@lru_cache(maxsize=512)
def _call_statement(function: str, names: tuple[str, ...]) -> sql.Composed:
    """SELECT * FROM schema.fn(p_a => %(a)s, ...): composed once per function and argument set."""
    match = _FUNCTION.fullmatch(function)
    if match is None:
        raise ValueError(f"not a function of the api, auth or admin schema: {function!r}")
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(f"p_{name}"), sql.Placeholder(name)) for name in names
    )
    return sql.SQL("SELECT * FROM {}.{}({})").format(sql.Identifier(match[1]), sql.Identifier(match[2]), arguments)


def call(req: falcon.Request, function: str | None = None, /, **arguments: Any) -> list[dict]:
    """Call one SQL function in the request's transaction, arguments by name.

    `function` defaults to the one the operation declares (`@operation(function=...)`).
    Each keyword `x` is passed as the function's `p_x`. An api.* function always gets the
    caller's own tenant as `p_tenant_id`: a resource cannot pass another one.
    """
    name = function or functions_of(req.context.operation)[0]
    if name.startswith("api."):
        if "tenant_id" in arguments:
            raise ValueError("api.* functions get the caller's tenant; do not pass tenant_id")
        arguments = {"tenant_id": principal(req).tenant_id, **arguments}
    return req.context.conn.execute(_call_statement(name, tuple(arguments)), arguments).fetchall()


@contextmanager
def open_transaction(req: falcon.Request, db: Database, context: Context) -> Iterator[psycopg.Connection]:
    """A transaction the responder opens itself, for `call` to use: calls made before login,
    whose outcome is committed even when the answer is a refusal (a failed login counts)."""
    with db.transaction(context) as conn:
        req.context.conn = conn
        try:
            yield conn
        finally:
            req.context.conn = None


def call_one(req: falcon.Request, function: str | None = None, /, **arguments: Any) -> dict:
    """`call` for functions that return one row (they raise P0002 rather than return none)."""
    found = call(req, function, **arguments)
    if not found:  # pragma: no cover - the SQL functions raise P0002 instead
        raise Problem(404, "not_found", "Not found.")
    return found[0]


def shape(model: type[BaseModel], data: dict) -> dict:
    """Keep only the fields the response model documents (never hashes or internals)."""
    return {name: data.get(name) for name in model.model_fields}


# -- keyset pagination ------------------------------------------------------------------


def limit_param(req: falcon.Request) -> int:
    raw = req.get_param("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise Problem(422, "invalid_parameter", f"limit must be between 1 and {MAX_LIMIT}.", field="limit")
    return int(raw)


def cursor_param(req: falcon.Request) -> tuple[dt.datetime | None, uuid.UUID | None]:
    """The (created_at, id) after which the page starts; cursors are opaque to clients."""
    raw = req.get_param("cursor")
    if not raw:
        return None, None
    try:
        if len(raw) > MAX_CURSOR:  # ours are ~100 characters; refuse before decoding
            raise ValueError("too long")
        created_at, key = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return dt.datetime.fromisoformat(created_at), uuid.UUID(key)
    except (ValueError, TypeError, RecursionError):
        raise Problem(422, "invalid_parameter", "cursor is not one this API issued.", field="cursor") from None


def list_page(
    req: falcon.Request,
    model: type[BaseModel],
    id_field: str,
    *,
    shaper: Callable[[dict], dict] | None = None,
    **filters: Any,
) -> dict:
    """One page (models.Page) of the operation's list function, which takes the keyset
    arguments p_limit, p_after_created_at and p_after_id: limit+1 rows tell if there is more."""
    limit = limit_param(req)
    after, after_id = cursor_param(req)
    found = call(req, limit=limit + 1, after_created_at=after, after_id=after_id, **filters)
    items = found[:limit]
    next_cursor = None
    if len(found) > limit:
        last = items[-1]
        raw = json.dumps([last["created_at"].isoformat(), str(last[id_field])]).encode()
        next_cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    shaped = [shaper(item) if shaper else shape(model, item) for item in items]
    return {"items": shaped, "next_cursor": next_cursor}


# -- ids: one canonical form, in paths and in query parameters ----------------------------

_CANONICAL_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def canonical_uuid(raw: str) -> uuid.UUID | None:
    """A UUID written as 8-4-4-4-12 hex digits; None for any other spelling ({...}, urn:uuid:, no dashes)."""
    return uuid.UUID(raw) if _CANONICAL_UUID.fullmatch(raw) else None


class UUIDConverter(falcon.routing.BaseConverter):
    """`{id:uuid}` in a route: the canonical form only (another spelling matches no route: 404)."""

    def convert(self, value: str) -> uuid.UUID | None:
        return canonical_uuid(value)


def uuid_param(req: falcon.Request, name: str) -> uuid.UUID | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    value = canonical_uuid(raw)
    if value is None:
        raise Problem(422, "invalid_parameter", f"{name} must be a UUID (8-4-4-4-12 hex digits).", field=name)
    return value

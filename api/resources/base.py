"""What every resource does the same way: validate the body, call SQL, page, shape."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any, TypeVar

import falcon
import psycopg
from pydantic import BaseModel, ValidationError

from api.errors import Problem
from api.pipeline import Principal

M = TypeVar("M", bound=BaseModel)

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
MAX_CURSOR = 200


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


def conn(req: falcon.Request) -> psycopg.Connection:
    return req.context.conn


def rows(req: falcon.Request, query: str, params: Any = None) -> list[dict]:
    return conn(req).execute(query, params).fetchall()


def row(req: falcon.Request, query: str, params: Any = None) -> dict:
    found = conn(req).execute(query, params).fetchone()
    if found is None:  # pragma: no cover - the SQL functions raise P0002 instead
        raise Problem(404, "not_found", "Not found.")
    return found


def shape(model: type[BaseModel], data: dict) -> dict:
    """Keep only the fields the response model documents (never hashes or internals)."""
    return {name: data.get(name) for name in model.model_fields}


def as_uuid(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "not_found", f"No {name} has the id {value!r}.") from None


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


def page(items: list[dict], limit: int, id_field: str, model: type[BaseModel]) -> dict:
    """A page from limit+1 fetched rows: next_cursor is set when there is more."""
    more = len(items) > limit
    items = items[:limit]
    next_cursor = None
    if more:
        last = items[-1]
        raw = json.dumps([last["created_at"].isoformat(), str(last[id_field])]).encode()
        next_cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return {"items": [shape(model, item) for item in items], "next_cursor": next_cursor}


def uuid_param(req: falcon.Request, name: str) -> uuid.UUID | None:
    raw = req.get_param(name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise Problem(422, "invalid_parameter", f"{name} must be a UUID.", field=name) from None

"""What every resource does the same way: validate the body, call SQL, page, shape."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import format_datetime
from functools import lru_cache
from typing import Any, TypeVar

import falcon
import falcon.routing
import psycopg
from psycopg import sql
from psycopg.types.numeric import Int8
from pydantic import BaseModel, ValidationError

from api.errors import Problem, invalid_parameter
from api.pipeline import Principal, raise_session_revoked
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
def _call_statement(function: str, names: tuple[str, ...]) -> str:
    """SELECT * FROM schema.fn(p_a => %(a)s, ...): composed once per function and argument
    set, and kept as text (composing it again on every request cost ~5 % of a GET's CPU)."""
    match = _FUNCTION.fullmatch(function)
    if match is None:
        raise ValueError(f"not a function of the api, auth or admin schema: {function!r}")
    arguments = sql.SQL(", ").join(
        sql.SQL("{} => {}").format(sql.Identifier(f"p_{name}"), sql.Placeholder(name)) for name in names
    )
    statement = sql.SQL("SELECT * FROM {}.{}({})").format(sql.Identifier(match[1]), sql.Identifier(match[2]), arguments)
    return statement.as_string()


def call(req: falcon.Request, function: str | None = None, /, **arguments: Any) -> list[dict]:
    """Call one SQL function in the request's transaction, arguments by name.

    `function` defaults to the one the operation declares (`@operation(function=...)`).
    Each keyword `x` is passed as the function's `p_x`. An api.* function always gets the
    caller's own tenant as `p_tenant_id`: a resource cannot pass another one.
    """
    functions = functions_of(req.context.operation)
    name = function or functions[0]
    if name.startswith("api."):
        if "tenant_id" in arguments:
            raise ValueError("api.* functions get the caller's tenant; do not pass tenant_id")
        arguments = {"tenant_id": principal(req).tenant_id, **arguments}
    conn = req.context.conn
    statement = _call_statement(name, tuple(arguments))
    try:
        if req.method == "GET" and len(functions) == 1 and getattr(req.context, "transaction", None) is not None:
            # a read of one declared function: BEGIN, the session check, the call and
            # COMMIT in one round trip (db.context.Connection.execute_last); nothing is
            # left to commit, and a second statement would be refused, not run unscoped
            return conn.execute_last(statement, arguments).fetchall()
        return conn.execute(statement, arguments).fetchall()
    except psycopg.Error as exc:
        raise_session_revoked(exc)  # the session check folded into the first statement
        raise


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


# Query parameters: the pipeline refuses undeclared and repeated ones; these read the
# values, and a malformed one is 400 invalid_parameter naming it (api/errors.py).


def limit_param(req: falcon.Request) -> int:
    raw = req.get_param("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid_parameter("limit", f"limit must be between 1 and {MAX_LIMIT}.")
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
        raise invalid_parameter("cursor", "cursor is not one this API issued.") from None


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
        raise invalid_parameter(name, f"{name} must be a UUID (8-4-4-4-12 hex digits).")
    return value


def bool_param(req: falcon.Request, name: str, *, default: bool = False) -> bool:
    """`true` or `false`, exactly (not 1/0, yes/no or another case: one spelling, as in JSON)."""
    raw = req.get_param(name)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise invalid_parameter(name, f"{name} must be true or false.")
    return raw == "true"


# -- conditional requests: the row version is the ETag -----------------------------------
#
# A versioned row (row_version, updated_at: migration 0007) is answered with
# `ETag: "<row_version>"` (strong) and `Last-Modified` (updated_at). Changes take
# If-Match / If-Unmodified-Since, which the SQL function checks in its UPDATE's WHERE,
# atomically with the change (TN020 -> 412 precondition_failed); reads take
# If-None-Match / If-Modified-Since (304). No precondition is required (no 428): clients
# that send none keep working, last write wins for them. Operations declare
# `@operation(conditional=True)`, which documents the headers in the OpenAPI document.

#: an entity-tag (RFC 9110, 8.8.3): optionally weak (W/), then a quoted string of etagc
_ENTITY_TAG = r'(?:W/)?"[\x21\x23-\x7e\x80-\xff]*"'
#: a list of entity-tags, empty elements allowed (RFC 9110, 5.6.1)
_ENTITY_TAG_LIST = re.compile(rf"[ \t]*{_ENTITY_TAG}(?:[ \t]*,(?:[ \t]*,)*[ \t]*{_ENTITY_TAG})*[ \t]*,?[ \t]*")
_ENTITY_TAG_ITEM = re.compile(r'(W/)?"([^"]*)"')
#: our tags are row versions: a bigint, without leading zeros
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def _declared_conditional(req: falcon.Request) -> None:
    if not req.context.operation.conditional:
        raise ValueError("declare @operation(conditional=True) on a responder that uses conditional requests")


def _entity_tags(req: falcon.Request, header: str) -> list[tuple[bool, str]] | None:
    """The (weak, opaque) entity-tags of `header`; None when absent, [] never; ("*" -> [(False, "*")])."""
    raw = req.get_header(header)
    if raw is None:
        return None
    if raw.strip() == "*":
        return [(False, "*")]
    if not _ENTITY_TAG_LIST.fullmatch(raw):
        raise Problem(
            400,
            "invalid_header",
            f'{header} must be "*" or a list of entity tags such as "3" (in double quotes).',
            field=header,
        )
    return [(weak == "W/", opaque) for weak, opaque in _ENTITY_TAG_ITEM.findall(raw)]


def _http_date(req: falcon.Request, header: str) -> dt.datetime | None:
    """The HTTP-date of `header`; None when absent or invalid (RFC 9110, 13.1.3-13.1.4: ignored)."""
    raw = req.get_header(header)
    if raw is None:
        return None
    try:
        return falcon.http_date_to_dt(raw.strip(), obs_date=True).replace(tzinfo=dt.UTC)
    except ValueError:
        return None


def preconditions(req: falcon.Request) -> dict[str, Any]:
    """If-Match and If-Unmodified-Since as the SQL function's p_if_match (row versions;
    None: unconditional) and p_if_unmodified_since, for `call(req, **preconditions(req))`.

    `*` matches any current version (a missing row is 404 whatever the preconditions,
    RFC 9110, 13.2.1). A weak tag, or a tag that is not one of our versions, never
    matches (strong comparison), so a list of only such tags is 412. If-Unmodified-Since
    counts only without If-Match (RFC 9110, 13.2.2)."""
    _declared_conditional(req)
    tags = _entity_tags(req, "If-Match")
    if tags is None:
        return {"if_match": None, "if_unmodified_since": _http_date(req, "If-Unmodified-Since")}
    if (False, "*") in tags:
        return {"if_match": None, "if_unmodified_since": None}
    versions = [Int8(int(opaque)) for weak, opaque in tags if not weak and _VERSION.fullmatch(opaque)]
    return {"if_match": versions, "if_unmodified_since": None}


def etag(row: dict) -> str:
    """The row's strong entity tag: its version, quoted."""
    return f'"{row["row_version"]}"'


def _not_modified(req: falcon.Request, row: dict) -> bool:
    """A GET's If-None-Match (weak comparison: W/"3" matches "3") names the row's version,
    or (without If-None-Match) If-Modified-Since is not older than its last change."""
    tags = _entity_tags(req, "If-None-Match")
    if tags is not None:
        return any(opaque in ("*", str(row["row_version"])) for _, opaque in tags)
    since = _http_date(req, "If-Modified-Since")
    return since is not None and row["updated_at"].replace(microsecond=0) <= since


def represent(req: falcon.Request, resp: falcon.Response, model: type[BaseModel], row: dict, status: int = 200) -> None:
    """Answer with a versioned row as `model`, its ETag and Last-Modified; a GET whose
    If-None-Match or If-Modified-Since says the client has this version is 304, no body."""
    _declared_conditional(req)
    resp.set_header("ETag", etag(row))
    resp.set_header("Last-Modified", format_datetime(row["updated_at"].astimezone(dt.UTC), usegmt=True))
    if req.method in ("GET", "HEAD") and _not_modified(req, row):
        resp.status = 304
        return
    resp.media = shape(model, row)
    resp.status = status

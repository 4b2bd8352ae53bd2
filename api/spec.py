"""What each responder is, declared once beside it: the OpenAPI document is built from
these declarations and the router, and the pipeline reads `auth` and `scope` from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

#: none: public; user: an access token; any: an access token or an API key;
#: admin: an access token of a platform administrator; optional: public, or a user's
#: access token when one is sent (the call then acts as that user; API keys are refused)
Auth = Literal["none", "user", "any", "admin", "optional"]

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    summary: str
    auth: Auth = "any"
    scope: str | None = None  # documented; enforced by the SQL function
    #: the SQL function(s) the call reaches; the first is what `call(req, ...)` calls by default
    function: str | tuple[str, ...] | None = None
    #: body fields that reach the function under another name (None: used by the API itself,
    #: e.g. a password checked against its hash); every other body field is an argument
    renamed: dict[str, str | None] = field(default_factory=dict)
    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    paginated: bool = False
    idempotent_post: bool = False  # accepts Idempotency-Key
    #: answers a versioned row with ETag and Last-Modified; a change takes If-Match and
    #: If-Unmodified-Since (412), a read If-None-Match and If-Modified-Since (304)
    #: (api/resources/base.py: `preconditions`, `represent`)
    conditional: bool = False
    query: dict[str, str] = field(default_factory=dict)  # name -> description
    errors: tuple[int, ...] = ()


def operation(**kwargs: Any) -> Callable[[F], F]:
    """Declare a responder: `@operation(summary=..., auth=..., body=Model, ...)`."""
    spec = Operation(**kwargs)

    def mark(responder: F) -> F:
        responder.__operation__ = spec  # type: ignore[attr-defined]
        return responder

    return mark


def functions_of(spec: Operation) -> tuple[str, ...]:
    if spec.function is None:
        return ()
    return (spec.function,) if isinstance(spec.function, str) else spec.function


def operation_of(responder: Any) -> Operation | None:
    return getattr(responder, "__operation__", None)

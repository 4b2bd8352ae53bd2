"""The OpenAPI 3.1 document, built from the route table and each responder's @operation.

Nothing is written twice: paths come from the routes the app serves, operations from
the declarations beside the responders, schemas from the pydantic models that validate
the bodies. tests/test_api_openapi.py checks the document against the live router.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api.spec import Operation, operation_of
from db import errors as db_errors

METHODS = ("get", "post", "patch", "put", "delete")
REF = "#/components/schemas/{model}"

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "code", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "code": {"type": "string", "description": "Stable machine-readable reason"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "field": {"type": "string", "description": "The field at fault, when there is one"},
        "hint": {"type": "string"},
        "request_id": {"type": ["string", "null"]},
    },
}

#: Routes without @operation: infrastructure, documented here.
INFRASTRUCTURE = {
    "/health": ("Liveness: the process answers", {"200": {"description": "Alive"}}),
    "/ready": (
        "Readiness: database and Redis reachable",
        {"200": {"description": "Ready"}, "503": {"description": "Not ready; says what is down"}},
    ),
    "/metrics": (
        "Prometheus metrics: with TENANTRY_METRICS_TOKEN set, for `Authorization: Bearer <token>` only; "
        "unset, for clients on the API's host only",
        {
            "200": {"description": "Metrics in the Prometheus text format"},
            "401": {"description": "The metrics token is missing or wrong (`invalid_token`)"},
            "403": {"description": "Not a client on this host, and no metrics token is configured (`forbidden`)"},
        },
    ),
    "/v1/openapi.json": ("This document", {"200": {"description": "The OpenAPI 3.1 document"}}),
}

#: What each error status means; `error_description` adds the codes the registry (db/errors.py) answers it with.
ERROR_TEXT = {
    400: "Bad request: malformed JSON (`invalid_json`), nested too deep (`json_too_deep`), a body cut short "
    "(`incomplete_body`), or an unknown, repeated or malformed query parameter (`invalid_parameter`, see `field`)",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed",
    404: "Not found (or not yours)",
    409: "Conflict",
    408: "The body did not arrive in time (`request_timeout`; the connection is closed)",
    410: "Gone",
    413: "The body is too large (`body_too_large`)",
    415: "Unsupported media type",
    412: "Precondition failed: the resource changed since the version in If-Match or If-Unmodified-Since",
    422: "Invalid input (see `field`)",
    429: "Rate limited (see Retry-After)",
    503: "The database is unavailable, restarting or too slow right now: retry after Retry-After seconds",
}
#: Errors any operation can answer: a malformed body (400) or input (422), a rate limit (429),
#: the database unavailable or timing out (503, docs/operations.md).
COMMON_ERRORS = frozenset({400, 422, 429, 503})
#: Errors of an operation that reads a body: too slow (408) or too large (413); api/pipeline.py.
BODY_ERRORS = frozenset({408, 413})
#: The checks the database makes on every authenticated call: their statuses are documented on each.
AUTHENTICATED_CHECKS = (
    db_errors.SESSION_REVOKED,
    db_errors.TENANT_SUSPENDED,
    db_errors.TENANT_DELETED,
    db_errors.MISSING_SCOPE,
)
_DATABASE_CODES = db_errors.codes_by_status()


def error_description(status: int) -> str:
    """The status's text, then every code the database's rules answer with it (from the registry)."""
    text = ERROR_TEXT.get(status, "Error")
    codes = _DATABASE_CODES.get(status)
    return f"{text}. Codes from the database's rules: {', '.join(f'`{c}`' for c in codes)}" if codes else text


def _models(routes: list[tuple[str, Any]]) -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for _, resource in routes:
        for method in METHODS:
            spec = operation_of(getattr(resource, f"on_{method}", None))
            for model in (spec.body, spec.response) if spec else ():
                if model is not None:
                    found[model.__name__] = model
    return list(found.values())


def openapi_path(route: str) -> str:
    """The route's template without Falcon's converters: /v1/projects/{project_id:uuid} -> .../{project_id}."""
    return re.sub(r"{(\w+):\w+}", r"{\1}", route)


def _conditional_headers(method: str) -> list[dict]:
    """The precondition headers of a conditional operation: If-None-Match and
    If-Modified-Since for a read, If-Match and If-Unmodified-Since for a change."""
    if method == "get":
        names = {
            "If-None-Match": 'The ETags you have (e.g. "3"): 304 with no body while one of them is current',
            "If-Modified-Since": "An HTTP date: 304 with no body if unchanged since (ignored with If-None-Match)",
        }
    else:
        names = {
            "If-Match": 'The ETag you read (e.g. "3"), or "*": the change is made only while it is current, '
            "else 412 (optional: without it the last write wins)",
            "If-Unmodified-Since": "An HTTP date: the change is made only if the resource is unchanged since, "
            "else 412 (ignored with If-Match, and when not a valid date)",
        }
    return [
        {"name": name, "in": "header", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in names.items()
    ]


#: the headers of a conditional operation's success response
VERSION_HEADERS = {
    "ETag": {
        "description": 'The resource\'s version, a strong entity tag: "<row_version>"',
        "schema": {"type": "string"},
    },
    "Last-Modified": {"description": "When the resource last changed (HTTP date)", "schema": {"type": "string"}},
}


def _parameters(path: str, spec: Operation, method: str) -> list[dict]:
    params = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": "uuid"}}
        for name in re.findall(r"{(\w+)(?::\w+)?}", path)
    ]
    params += [
        {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
        for name, text in spec.query.items()
    ]
    if spec.idempotent_post:
        params.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Repeat the request safely: same key and body return the first response; "
                "another body with the same key is 409.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    if spec.conditional:
        params += _conditional_headers(method)
    params.append(
        {
            "name": "X-Request-ID",
            "in": "header",
            "required": False,
            "description": "Your id for this request, echoed back (one is made if absent)",
            "schema": {"type": "string", "maxLength": 200},
        }
    )
    return params


def _operation(path: str, method: str, resource: Any, spec: Operation) -> dict:
    responses: dict[str, Any] = {}
    if spec.response is not None:
        responses[str(spec.status)] = {
            "description": "Success",
            "content": {"application/json": {"schema": {"$ref": REF.format(model=spec.response.__name__)}}},
        }
    else:
        responses[str(spec.status)] = {"description": "Success, no content"}
    if spec.conditional:
        responses[str(spec.status)]["headers"] = VERSION_HEADERS
        if method == "get":
            responses["304"] = {"description": "Not modified: your copy is current", "headers": VERSION_HEADERS}
    statuses = set(spec.errors) | COMMON_ERRORS
    if method in ("post", "patch", "put"):  # the pipeline reads the body of these
        statuses |= BODY_ERRORS
    if spec.conditional and method != "get":
        statuses.add(412)
    if spec.auth != "none":
        statuses |= {401} | {check.status for check in AUTHENTICATED_CHECKS}  # 401: no or bad credentials
    for status in sorted(statuses):
        responses[str(status)] = {
            "description": error_description(status),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        }
    op: dict[str, Any] = {
        "operationId": f"{method}_{type(resource).__name__.removesuffix('Resource')}",
        "summary": spec.summary,
        "tags": [path.split("/")[2] if path.startswith("/v1/") else "ops"],
        "parameters": _parameters(path, spec, method),
        "responses": responses,
        "security": {
            "none": [],
            "user": [{"bearer": []}],
            "admin": [{"bearer": []}],
            "any": [{"bearer": []}, {"apiKey": []}],
            "optional": [{}, {"bearer": []}],
        }[spec.auth],
    }
    if spec.scope:
        op["description"] = f"Needs the scope `{spec.scope}`."
    if spec.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=spec.body.__name__)}}},
        }
    return op


def build(routes: list[tuple[str, Any]], version: str) -> dict:
    _, schemas = models_json_schema([(m, "serialization") for m in _models(routes)], ref_template=REF)
    components = schemas.get("$defs", {}) | {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict] = {}
    for path, resource in routes:
        item: dict[str, Any] = {}
        for method in METHODS:
            responder = getattr(resource, f"on_{method}", None)
            spec = operation_of(responder)
            if spec is not None:
                item[method] = _operation(path, method, resource, spec)
            elif responder is not None and path in INFRASTRUCTURE:
                summary, responses = INFRASTRUCTURE[path]
                item[method] = {
                    "operationId": f"{method}_{type(resource).__name__.removesuffix('Resource')}",
                    "summary": summary,
                    "tags": ["ops"],
                    "security": [],
                    "responses": responses,
                }
        paths[openapi_path(path)] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tenantry API",
            "version": version,
            "description": "Multi-tenant projects and tasks. Errors are RFC 9457 problem details; "
            "every response carries X-Request-ID and RateLimit headers.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }

"""Every endpoint names the SQL function it reaches, and every field of a request body
reaches that function: an argument of the same name (`p_<field>`), a declared rename
(`@operation(renamed=...)`), or a key the function accepts in its `p_changes` jsonb.
A body field that nothing reads would be silently dropped: this test fails on it.
"""

from __future__ import annotations

import re
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from api import app as app_module
from api.spec import Operation, functions_of, operation_of
from db.settings import Settings

METHODS = ("get", "post", "patch", "put", "delete")
INFRASTRUCTURE = {"/health", "/ready", "/metrics", "/v1/openapi.json"}


def operations() -> list[tuple[str, str, Operation]]:
    # declarations only: nothing is opened
    table = app_module.routes(_NoDatabase(), None, Settings())  # type: ignore[arg-type]
    found = []
    for path, resource in table:
        for method in METHODS:
            spec = operation_of(getattr(resource, f"on_{method}", None))
            if spec is not None:
                found.append((path, method, spec))
    return found


class _NoDatabase:
    """routes() hands the database to resources; building the table must not touch it."""

    def pool(self, role: str) -> Any:
        return None


@pytest.fixture(scope="module")
def signatures(owner_url: str) -> dict[str, dict[str, Any]]:
    """function name -> its argument names and the jsonb keys it accepts in p_changes."""
    with psycopg.connect(owner_url, row_factory=dict_row) as conn:
        rows = conn.execute(
            "SELECT n.nspname || '.' || p.proname AS name, p.proargnames AS args, pg_get_functiondef(p.oid) AS source"
            "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname IN ('api', 'auth', 'admin')"
        ).fetchall()
    return {row["name"]: {"args": set(row["args"] or ()), "keys": _known_fields(row["source"])} for row in rows}


def _known_fields(source: str) -> set[str]:
    """The keys a function lets through core.assert_known_fields(p_changes, ARRAY[...], ...)."""
    match = re.search(r"assert_known_fields\(\s*p_changes,\s*ARRAY\[([^\]]*)\]", source)
    return set(re.findall(r"'(\w+)'", match[1])) if match else set()


def unreached_fields(spec: Operation, signatures: dict[str, dict[str, Any]]) -> list[str]:
    """Body fields of `spec` that reach none of its functions."""
    if spec.body is None:
        return []
    args: set[str] = set()
    keys: set[str] = set()
    for function in functions_of(spec):
        args |= signatures[function]["args"]
        keys |= signatures[function]["keys"]
    missing = []
    for field in spec.body.model_fields:
        target = spec.renamed.get(field, field)
        if target is None:
            continue  # used by the API itself, and declared so
        if f"p_{target}" not in args and target not in keys:
            missing.append(field)
    return missing


def test_every_endpoint_names_functions_that_exist(signatures):
    missing = [f"{method.upper()} {path}" for path, method, spec in operations() if not functions_of(spec)]
    assert not missing, f"endpoints that name no SQL function: {missing}"
    unknown = [
        (f"{method.upper()} {path}", function)
        for path, method, spec in operations()
        for function in functions_of(spec)
        if function not in signatures
    ]
    assert not unknown, f"endpoints naming functions that do not exist: {unknown}"


def test_every_body_field_reaches_the_function(signatures):
    dropped = {
        f"{method.upper()} {path}": fields
        for path, method, spec in operations()
        if (fields := unreached_fields(spec, signatures))
    }
    assert not dropped, f"body fields that reach no SQL function argument: {dropped}"
    with_bodies = [spec for _, _, spec in operations() if spec.body is not None]
    assert len(with_bodies) >= 12


def test_the_check_catches_a_dropped_field(signatures):
    from pydantic import BaseModel

    class ProjectCreateWithExtra(BaseModel):
        name: str
        description: str
        colour: str  # no p_colour argument: would be silently dropped

    spec = Operation(summary="probe", function="api.create_project", body=ProjectCreateWithExtra)
    assert unreached_fields(spec, signatures) == ["colour"]
    changes = Operation(summary="probe", function="api.update_project", body=ProjectCreateWithExtra)
    assert unreached_fields(changes, signatures) == ["colour"]  # name, description: known p_changes keys


def test_the_api_page_size_is_the_databases(owner_url: str):
    from api.resources.base import MAX_LIMIT

    with psycopg.connect(owner_url) as conn:
        assert conn.execute("SELECT core.max_page_size()").fetchone() == (MAX_LIMIT,)

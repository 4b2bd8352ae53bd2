"""The OpenAPI document against the router: what is served is documented and what is
documented is served; every operation has a summary and responses; every $ref resolves;
the document is valid OpenAPI 3.1 (schemathesis checks it against the meta-schema); and
the document served over HTTP is the one `api.openapi.build` makes from the routes."""

from __future__ import annotations

import json
import logging
import re
from importlib.metadata import version
from typing import Any

import falcon.inspect
import falcon.testing
import pytest
import schemathesis
from schemathesis.core.result import Err

import api.app as app_module
from api import encoding, openapi
from db.context import Database
from db.settings import Settings
from tests.helpers import TEST_JWT_SECRET

METHODS = {"get", "post", "put", "patch", "delete", "head", "options", "trace"}


@pytest.fixture(scope="module")
def settings(owner_url, redis_url) -> Settings:
    return Settings(database_url=owner_url, redis_url=redis_url, jwt_secret=TEST_JWT_SECRET)


@pytest.fixture(scope="module")
def built(settings):
    """An app from create_app(settings), and its database (closed afterwards).
    create_app also configures the "tenantry" logger: that is undone afterwards too."""
    logger = logging.getLogger("tenantry")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    db = Database(settings, dict_rows=True, name="openapi-test")
    app = app_module.create_app(settings, db)
    yield app, db
    db.close()
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="module")
def served(http) -> dict:
    resp = http.get("/v1/openapi.json")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    return resp.json()


def as_json(document: dict) -> dict:
    return json.loads(encoding.dumps(document))


def documented_operations(document: dict) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item if method in METHODS}


def refs(node: Any) -> list[str]:
    """Every $ref anywhere under `node`."""
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in refs(value)]
    return []


def test_the_document_is_openapi_3_1(served):
    assert served["openapi"] == "3.1.0"
    assert served["info"]["title"] and served["info"]["version"] == version("tenantry")
    assert served["paths"] and served["components"]["schemas"]
    assert set(served["components"]["securitySchemes"]) == {"bearer", "apiKey"}


def test_router_and_document_agree(served, built):
    app, _ = built
    routes = falcon.inspect.inspect_routes(app)
    assert routes, "the app serves no routes"
    router = {
        (openapi.openapi_path(route.path), method.method.lower())
        for route in routes
        for method in route.methods
        if not method.internal and method.method != "OPTIONS"
    }
    documented = documented_operations(served)
    assert router - documented == set(), "served but not documented"
    assert documented - router == set(), "documented but not served"
    assert {openapi.openapi_path(route.path) for route in routes} == set(served["paths"])
    assert len(router) >= 35


def test_every_operation_is_described(served):
    operation_ids = []
    for path, item in served["paths"].items():
        templated = set(re.findall(r"{(\w+)}", path))
        assert item, f"{path} documents no operation"
        for method, op in item.items():
            assert method in METHODS, (path, method)
            where = f"{method.upper()} {path}"
            assert isinstance(op.get("summary"), str) and op["summary"].strip(), where
            assert op.get("responses"), where
            for status, response in op["responses"].items():
                assert re.fullmatch(r"[1-5]\d\d", status), (where, status)
                assert response.get("description"), (where, status)
            operation_ids.append(op.get("operationId"))
            path_params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert path_params == templated, where
            if op.get("security"):
                for requirement in op["security"]:
                    assert set(requirement) <= set(served["components"]["securitySchemes"]), where
    assert None not in operation_ids and len(operation_ids) == len(set(operation_ids)), "operationIds not unique"


def test_every_ref_resolves(served):
    schemas = served["components"]["schemas"]
    checked = 0
    for path, item in served["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            bodies = [media["schema"] for media in op.get("requestBody", {}).get("content", {}).values()]
            answers = [
                media["schema"]
                for response in op["responses"].values()
                for media in response.get("content", {}).values()
            ]
            for schema in bodies + answers:
                for ref in refs(schema):
                    assert ref.startswith("#/components/schemas/"), (where, ref)
                    assert ref.removeprefix("#/components/schemas/") in schemas, (where, ref)
                    checked += 1
            if "requestBody" in op:
                assert bodies and all(refs(schema) for schema in bodies), where
    assert checked > 50
    # and the refs inside the schemas themselves
    for ref in refs(served):
        assert ref.startswith("#/components/schemas/") and ref.split("/")[-1] in schemas, ref


def test_the_served_document_is_the_built_one(served, built, settings):
    app, db = built
    table = app_module.routes(db, None, settings)
    assert served == as_json(openapi.build(table, version("tenantry")))
    in_process = falcon.testing.TestClient(app).simulate_get("/v1/openapi.json")
    assert in_process.status_code == 200
    assert in_process.json == served


def test_the_document_is_valid_for_schemathesis(served):
    schema = schemathesis.openapi.from_dict(served)
    schema.validate()  # against the OpenAPI 3.1 meta-schema; raises if invalid
    loaded = list(schema.get_all_operations())
    failed = [result.err() for result in loaded if isinstance(result, Err)]
    assert not failed, failed
    assert len(loaded) == len(documented_operations(served))

"""Hostile input over real HTTP (issue 9, items 8-10): bodies too deep, too large, too
slow or cut short, and query parameters the call does not take or cannot use.

- Bodies (api/pipeline.py `_read_body`, `read_body`; api/encoding.py `too_deep`): a JSON
  body nested deeper than `max_json_depth` is 400 json_too_deep on every operation that
  takes one (it used to be a 500 from the decoder's RecursionError); a declared
  Content-Length over `max_body_bytes` is 413 before a byte is read, a chunked body is
  cut off at the limit; a body that does not arrive within `body_read_timeout` (all of
  it, not per read) is 408 and frees the thread, one cut short by a closed connection 400.
- Query parameters (api/README.md, "Query parameters"): unknown, repeated or malformed
  is 400 invalid_parameter naming the parameter; a status filter no row can hold is
  refused by the SQL function from the table's CHECK constraint (TP001).

The timing tests run against an API of their own: one worker with one thread, a 2 s
body deadline and a 64 KiB body limit, so a single stalled client would block
everyone else if the deadline did not hold.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from db.settings import Settings
from tests.helpers import TEST_PASSWORD, problem, start_api

BODY_TIMEOUT = 2.0  # the small API's body_read_timeout
BODY_LIMIT = 64 * 1024  # the small API's max_body_bytes
MARGIN = 2.5  # seconds of slack for a loaded machine
MAX_DEPTH = 32  # max_json_depth's default (checked below)
DEFAULT = Settings.model_fields


def nested(depth: int) -> bytes:
    """Valid JSON nested `depth` levels deep: objects and arrays in turn."""
    text = "1"
    for level in range(depth):
        text = f'{{"a": {text}}}' if level % 2 else f"[{text}]"
    return text.encode()


def openapi_operations(http: httpx.Client) -> list[tuple[str, str, dict]]:
    document = http.get("/v1/openapi.json").json()
    return [
        (method, path, op)
        for path, item in document["paths"].items()
        for method, op in item.items()
        if method in ("get", "post", "patch", "put", "delete")
    ]


def concrete(path: str) -> str:
    """The path with every {param} filled by a (random, canonical) UUID."""
    parts = path.split("/")
    return "/".join(str(uuid.uuid4()) if part.startswith("{") else part for part in parts)


# -- the small API: one thread, short deadline, small limit ----------------------------------


@pytest.fixture(scope="module")
def small_api(owner_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process, url = start_api(
        owner_url,
        redis_url,
        tmp_path_factory.mktemp("api-hostile"),
        threads=1,
        TENANTRY_BODY_READ_TIMEOUT=str(BODY_TIMEOUT),
        TENANTRY_MAX_BODY_BYTES=str(BODY_LIMIT),
    )
    yield url
    process.terminate()
    process.wait(timeout=15)


def connect(url: str) -> socket.socket:
    address = urlsplit(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=BODY_TIMEOUT + MARGIN + 5)
    return sock


def head(path: str, length: int | None = None, *, chunked: bool = False) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(sock: socket.socket) -> tuple[int, dict, dict]:
    """Status, headers and JSON body of the answer on `sock`."""
    answer = http.client.HTTPResponse(sock)
    answer.begin()
    data = answer.read()
    return answer.status, {k.lower(): v for k, v in answer.getheaders()}, json.loads(data) if data else {}


def timed_health(url: str) -> float:
    """Seconds until GET /health answers 200 (on a new connection)."""
    started = time.monotonic()
    resp = httpx.get(url + "/health", timeout=BODY_TIMEOUT + MARGIN + 10)
    assert resp.status_code == 200, resp.text
    return time.monotonic() - started


# -- 8. deep and large bodies --------------------------------------------------------------


def test_the_limits_are_documented_settings():
    assert DEFAULT["max_body_bytes"].default == 1024 * 1024
    assert DEFAULT["max_json_depth"].default == MAX_DEPTH
    assert DEFAULT["body_read_timeout"].default == 10.0
    assert all(DEFAULT[name].description for name in ("max_body_bytes", "max_json_depth", "body_read_timeout"))


def test_deep_json_is_400_on_every_operation_with_a_body(http, sign_up):
    """Every operation of the OpenAPI document that takes a body (sign-up and login
    included), with a valid token: 5,000 levels (the decoder's RecursionError was a 500)
    and max_json_depth + 1 levels are json_too_deep; max_json_depth levels are not."""
    account = sign_up()
    limit = MAX_DEPTH
    with_body = [(m, p) for m, p, op in openapi_operations(http) if "requestBody" in op]
    assert {("post", "/v1/signup"), ("post", "/v1/auth/login"), ("patch", "/v1/tasks/{task_id}")} <= set(with_body)
    for method, path in with_body:
        for depth in (5000, limit + 1):
            resp = http.request(
                method.upper(),
                concrete(path),
                headers=account.headers | {"Content-Type": "application/json"},
                content=nested(depth),
            )
            problem(resp, 400, "json_too_deep")
        resp = http.request(
            method.upper(),
            concrete(path),
            headers=account.headers | {"Content-Type": "application/json"},
            content=nested(limit),
        )
        assert resp.status_code < 500 and resp.json().get("code") != "json_too_deep", (method, path, resp.text)


def test_deep_json_in_strings_does_not_count(http, sign_up):
    account = sign_up()
    name = "[{" * 600  # brackets inside a string are text, not nesting
    resp = http.post("/v1/projects", headers=account.headers, json={"name": name[:200], "description": name})
    assert resp.status_code == 201, resp.text


def test_declared_oversize_is_413_without_reading_the_body(small_api):
    """10 MB declared, nothing sent: the answer comes at once (the body is never awaited)."""
    for path in ("/v1/auth/login", "/v1/projects"):
        with connect(small_api) as sock:
            started = time.monotonic()
            sock.sendall(head(path, 10_000_000))
            status, headers, body = response(sock)
            assert (status, body["code"]) == (413, "body_too_large"), body
            assert headers["content-type"].startswith("application/problem+json")
            assert time.monotonic() - started < 1.5


def test_an_unknown_route_does_not_read_a_huge_body(small_api):
    with connect(small_api) as sock:
        started = time.monotonic()
        sock.sendall(head("/v1/nothing-here", 10_000_000))
        status, _, body = response(sock)
        assert (status, body["code"]) == (404, "not_found")
        assert time.monotonic() - started < 1.5


def test_chunked_bodies_are_read_and_cut_off_at_the_limit(small_api):
    with httpx.Client(base_url=small_api, timeout=BODY_TIMEOUT + MARGIN) as client:
        # within the limit, chunked: read like any body (it used to be taken as no body at all)
        login = json.dumps({"email": "nobody@tenantry.test", "password": TEST_PASSWORD}).encode()
        resp = client.post(
            "/v1/auth/login", headers={"Content-Type": "application/json"}, content=iter([login[:10], login[10:]])
        )
        problem(resp, 401, "invalid_credentials")
        # over the limit: 413 once the limit is passed (a little over, so the server's drain takes the rest)
        big = b'{"email": "' + b"x" * (BODY_LIMIT + 1000) + b'"}'
        pieces = [big[i : i + 8192] for i in range(0, len(big), 8192)]
        problem(
            client.post("/v1/auth/login", headers={"Content-Type": "application/json"}, content=iter(pieces)),
            413,
            "body_too_large",
        )
        # and a declared length just over the limit too
        problem(
            client.post("/v1/auth/login", headers={"Content-Type": "application/json"}, content=big),
            413,
            "body_too_large",
        )


# -- 9. slow and short bodies ----------------------------------------------------------------


def test_a_short_body_then_a_close_frees_the_thread(small_api):
    """Content-Length 1000, 10 bytes, then the client half-closes: 400 incomplete_body at
    once; then it closes outright: the one thread serves the next request at once."""
    for _ in range(3):
        with connect(small_api) as sock:
            started = time.monotonic()
            sock.sendall(head("/v1/auth/login", 1000) + b'{"email":')
            sock.shutdown(socket.SHUT_WR)
            status, _, body = response(sock)
            assert (status, body["code"]) == (400, "incomplete_body"), body
            assert time.monotonic() - started < 1.5
        sock = connect(small_api)
        sock.sendall(head("/v1/auth/login", 1000) + b'{"email":')
        sock.close()
        assert timed_health(small_api) < 1.5


def test_a_stalled_body_is_408_within_the_deadline_and_others_are_served(small_api):
    """The stalled client gets 408 request_timeout after body_read_timeout and the
    connection closes; a request queued behind it on the one thread answers within
    the deadline + margin (it used to wait until the server's own timeout)."""
    for _ in range(2):
        with connect(small_api) as stalled:
            stalled.sendall(head("/v1/auth/login", 1000) + b'{"email":')
            time.sleep(0.2)  # the one thread is now reading the stalled body
            behind = timed_health(small_api)
            started = time.monotonic()
            status, _, body = response(stalled)
            assert (status, body["code"]) == (408, "request_timeout"), body
            assert behind < BODY_TIMEOUT + MARGIN, behind
            assert time.monotonic() - started < BODY_TIMEOUT + MARGIN
            assert stalled.recv(1) == b""  # the server closed the connection


def test_the_deadline_is_for_the_whole_body_not_each_read(small_api):
    """A client trickling a byte every 0.4 s never lets one read wait long: still 408 at
    the deadline."""
    payload = b'{"email": "trickle@tenantry.test", "password": "' + b"p" * 200 + b'"}'
    with connect(small_api) as sock:
        started = time.monotonic()
        sock.sendall(head("/v1/auth/login", len(payload)))
        for byte in payload:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break  # the server answered and shut its side
            if time.monotonic() - started > BODY_TIMEOUT + MARGIN:
                break
            time.sleep(0.4)
        status, _, body = response(sock)
        assert (status, body["code"]) == (408, "request_timeout"), body
        assert time.monotonic() - started < BODY_TIMEOUT + MARGIN


def test_parallel_stalled_bodies_all_end_at_the_deadline(small_api):
    """Three stalled clients at once (one thread: they queue): each is answered, the
    last within three deadlines + margin, and the API answers after them."""
    barrier = threading.Barrier(3)
    results: list[tuple[int, str | None]] = []

    def stall() -> None:
        with connect(small_api) as sock:
            sock.settimeout(3 * BODY_TIMEOUT + MARGIN + 5)
            barrier.wait()
            sock.sendall(head("/v1/projects", 500) + b"{")
            status, _, body = response(sock)
            results.append((status, body.get("code")))

    started = time.monotonic()
    threads = [threading.Thread(target=stall) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [(408, "request_timeout")] * 3
    assert time.monotonic() - started < 3 * BODY_TIMEOUT + MARGIN
    assert timed_health(small_api) < 1.5


# -- 10. query parameters: one rule ----------------------------------------------------------


@pytest.fixture(scope="module")
def owner_account(sign_up):
    return sign_up()


@pytest.fixture(scope="module")
def a_project(http, owner_account) -> dict:
    resp = http.post("/v1/projects", headers=owner_account.headers, json={"name": f"q-{uuid.uuid4().hex[:8]}"})
    assert resp.status_code == 201, resp.text
    return resp.json()


BAD_QUERIES = [
    # (path, params, the field named)
    ("/v1/projects", [("foo", "1")], "foo"),
    ("/v1/projects", [("limit", "1"), ("limit", "2")], "limit"),
    ("/v1/projects", [("include_deleted", "true"), ("include_deleted", "true")], "include_deleted"),
    ("/v1/projects", [("limit", "0")], "limit"),
    ("/v1/projects", [("limit", "")], "limit"),
    ("/v1/projects", [("cursor", "not-a-cursor")], "cursor"),
    ("/v1/projects", [("include_deleted", "1")], "include_deleted"),
    ("/v1/projects", [("include_deleted", "yes")], "include_deleted"),
    ("/v1/projects", [("include_deleted", "True")], "include_deleted"),
    ("/v1/projects", [("include_deleted", "")], "include_deleted"),
    ("/v1/tasks", [("include_deleted", "0")], "include_deleted"),
    ("/v1/tasks", [("status", "bogus")], "status"),
    ("/v1/tasks", [("status", "TODO")], "status"),
    ("/v1/tasks", [("status", "")], "status"),
    ("/v1/tasks", [("status", "todo\x00")], "status"),
    ("/v1/tasks", [("project_id", "{" + "0" * 8 + "-0000-0000-0000-" + "0" * 12 + "}")], "project_id"),
    ("/v1/tasks", [("project_id", "urn:uuid:" + str(uuid.UUID(int=1)))], "project_id"),
    ("/v1/tasks", [("project_id", uuid.UUID(int=1).hex)], "project_id"),
    ("/v1/tasks", [("assignee_id", "me")], "assignee_id"),
    ("/v1/members", [("status", "active")], "status"),
    ("/v1/auth/me", [("verbose", "true")], "verbose"),
]


@pytest.mark.parametrize(("path", "params", "field"), BAD_QUERIES, ids=[f"{p}?{q}" for p, q, _ in BAD_QUERIES])
def test_bad_query_parameters_are_400_naming_the_parameter(http, owner_account, path, params, field):
    problem(http.get(path, headers=owner_account.headers, params=params), 400, "invalid_parameter", field=field)


def test_good_query_parameters_still_work(http, owner_account, a_project):
    h = owner_account.headers
    for params in ({"include_deleted": "true"}, {"include_deleted": "false"}, {"limit": "1"}):
        assert http.get("/v1/projects", headers=h, params=params).status_code == 200
    for status in ("todo", "in_progress", "done", "cancelled"):
        assert http.get("/v1/tasks", headers=h, params={"status": status}).status_code == 200
    # ids: the canonical 8-4-4-4-12 form; upper-case hex is the same id (RFC 9562), answered in lower case
    upper = a_project["project_id"].upper()
    assert http.get("/v1/tasks", headers=h, params={"project_id": upper}).status_code == 200
    assert http.get(f"/v1/projects/{upper}", headers=h).json()["project_id"] == a_project["project_id"]


def test_unknown_query_parameters_are_refused_on_writes_too(http, owner_account, a_project):
    resp = http.post("/v1/projects", headers=owner_account.headers, params={"dry_run": "true"}, json={"name": "x"})
    problem(resp, 400, "invalid_parameter", field="dry_run")
    resp = http.patch(
        f"/v1/projects/{a_project['project_id']}", headers=owner_account.headers, params={"x": "1"}, json={}
    )
    problem(resp, 400, "invalid_parameter", field="x")


@pytest.mark.parametrize(
    "spelling",
    [
        lambda u: "{" + str(u) + "}",
        lambda u: "urn:uuid:" + str(u),
        lambda u: u.hex,
        lambda u: str(u)[:-1],
        lambda u: str(u) + "0",
    ],
    ids=["braces", "urn", "no-dashes", "short", "long"],
)
def test_other_spellings_of_an_id_in_a_path_are_404(http, owner_account, a_project, spelling):
    project_id = uuid.UUID(a_project["project_id"])
    problem(http.get(f"/v1/projects/{spelling(project_id)}", headers=owner_account.headers), 404, "not_found")


def test_admin_status_filter_is_checked_by_the_database(http, sign_up, owner_url):
    admin = sign_up()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (admin.user_id,))
    login = http.post("/v1/auth/login", json={"email": admin.email, "password": admin.password})
    assert login.status_code == 200, login.text
    h = {"Authorization": f"Bearer {login.json()['access_token']}"}
    problem(http.get("/v1/admin/tenants", headers=h, params={"status": "bogus"}), 400, "invalid_parameter", "status")
    assert http.get("/v1/admin/tenants", headers=h, params={"status": "suspended", "limit": "1"}).status_code == 200


def test_the_database_refuses_a_status_no_task_can_have(owner):
    """core.assert_column_allows reads the CHECK constraint: the allowed values are written once."""
    owner.execute("SELECT core.assert_column_allows('core.tasks', 'status', 'done')")
    owner.execute("SELECT core.assert_column_allows('core.tasks', 'status', NULL)")
    with pytest.raises(psycopg.Error) as refused:
        owner.execute("SELECT core.assert_column_allows('core.tasks', 'status', 'bogus')")
    assert refused.value.sqlstate == "TP001" and refused.value.diag.column_name == "status"
    with pytest.raises(psycopg.Error) as refused:  # not even the column's type: refused the same way
        owner.execute("SELECT core.assert_column_allows('core.tasks', 'priority', 'x''); SELECT (1')")
    assert refused.value.sqlstate == "TP001"


def test_openapi_lists_body_and_query_errors(http):
    for method, path, op in openapi_operations(http):
        if method in ("post", "patch", "put") and "responses" in op and not path.startswith(("/health", "/ready")):
            assert {"408", "413"} <= op["responses"].keys(), (method, path)
        if any(p["in"] == "query" for p in op.get("parameters", [])):
            assert "400" in op["responses"], (method, path)

"""HTTP-level tests of /v1/projects and /v1/tasks and of what the pipeline adds to them:
CRUD and soft delete, filters, keyset pagination (also under concurrent inserts), errors
as problem details, tenant isolation, Idempotency-Key, suspended tenants, rate limits,
the rate limiter failing open when Redis is down, and metrics. Everything runs against
the real gunicorn-served API (see conftest)."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import json
import re
import threading
import time
import uuid

import httpx
import pytest

from db.local.postgres import free_port
from tests.helpers import PROBLEM_FIELDS, no_leak, problem, start_api
from tests.test_api_access import add_member


def ok(resp: httpx.Response, status: int = 200) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    return resp.json()


def make_project(http, account, name: str | None = None, **extra) -> dict:
    name = name or f"project-{uuid.uuid4().hex[:10]}"
    return ok(http.post("/v1/projects", headers=account.headers, json={"name": name, **extra}), 201)


def make_task(http, account, project_id: str, title: str | None = None, **extra) -> dict:
    body = {"project_id": project_id, "title": title or f"task-{uuid.uuid4().hex[:8]}", **extra}
    return ok(http.post("/v1/tasks", headers=account.headers, json=body), 201)


def walk(http, headers, path: str, limit: int = 200, **params) -> list[dict]:
    """Every item of a paginated list, following next_cursor."""
    items: list[dict] = []
    cursor = None
    for _ in range(1000):
        query = {"limit": str(limit), **params} | ({"cursor": cursor} if cursor else {})
        page = ok(http.get(path, headers=headers, params=query))
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


def ids(items: list[dict], key: str) -> list[str]:
    return [item[key] for item in items]


def cursor_of(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def ts(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


@pytest.fixture(scope="module")
def account(sign_up):
    return sign_up()


# -- projects --------------------------------------------------------------------------------


def test_project_crud_and_soft_delete(http, sign_up):
    acct = sign_up()
    created = make_project(http, acct, "Roadmap", description="Q3 plans")
    pid = created["project_id"]
    assert created["name"] == "Roadmap" and created["description"] == "Q3 plans"
    assert created["created_by"] == acct.user_id and created["deleted_at"] is None
    assert ok(http.get(f"/v1/projects/{pid}", headers=acct.headers)) == created

    # PATCH is partial: the field not sent keeps its value
    changed = ok(http.patch(f"/v1/projects/{pid}", headers=acct.headers, json={"description": "Q4"}))
    assert (changed["name"], changed["description"]) == ("Roadmap", "Q4")
    changed = ok(http.patch(f"/v1/projects/{pid}", headers=acct.headers, json={"name": "Road map"}))
    assert (changed["name"], changed["description"]) == ("Road map", "Q4")
    assert ts(changed["updated_at"]) >= ts(created["updated_at"])
    assert changed["created_at"] == created["created_at"]
    assert ok(http.get(f"/v1/projects/{pid}", headers=acct.headers)) == changed
    problem(
        http.patch(f"/v1/projects/{pid}", headers=acct.headers, json={"owner": "me"}),
        422,
        "invalid_body",
        field="owner",
    )

    other = make_project(http, acct)
    assert ids(walk(http, acct.headers, "/v1/projects"), "project_id") == [pid, other["project_id"]]

    deleted = ok(http.delete(f"/v1/projects/{pid}", headers=acct.headers))
    assert deleted["project_id"] == pid and deleted["deleted_at"] is not None
    problem(http.get(f"/v1/projects/{pid}", headers=acct.headers), 404, "not_found")
    problem(http.patch(f"/v1/projects/{pid}", headers=acct.headers, json={"name": "x"}), 404, "not_found")
    problem(http.delete(f"/v1/projects/{pid}", headers=acct.headers), 404, "not_found")

    assert ids(walk(http, acct.headers, "/v1/projects"), "project_id") == [other["project_id"]]
    everything = walk(http, acct.headers, "/v1/projects", include_deleted="true")
    assert ids(everything, "project_id") == [pid, other["project_id"]]
    assert everything[0]["deleted_at"] == deleted["deleted_at"] and everything[1]["deleted_at"] is None


def test_live_project_names_are_unique_ignoring_case(http, sign_up):
    acct = sign_up()
    alpha = make_project(http, acct, "Alpha")
    body = problem(
        http.post("/v1/projects", headers=acct.headers, json={"name": "ALPHA"}), 409, "duplicate_name", field="name"
    )
    assert body.get("hint")
    beta = make_project(http, acct, "Beta")
    problem(
        http.patch(f"/v1/projects/{beta['project_id']}", headers=acct.headers, json={"name": "alpha"}),
        409,
        "duplicate_name",
        field="name",
    )
    assert ok(http.get(f"/v1/projects/{beta['project_id']}", headers=acct.headers))["name"] == "Beta"
    # renaming a project to its own name in another case is not a conflict
    assert (
        ok(http.patch(f"/v1/projects/{alpha['project_id']}", headers=acct.headers, json={"name": "alpha"}))["name"]
        == "alpha"
    )
    # a deleted project's name is free again
    ok(http.delete(f"/v1/projects/{alpha['project_id']}", headers=acct.headers))
    assert make_project(http, acct, "aLpHa")["name"] == "aLpHa"
    # names are unique per tenant only
    assert make_project(http, sign_up(), "Alpha")["name"] == "Alpha"


# -- tasks -------------------------------------------------------------------------------------


def test_tasks_crud_and_filters(http, outbox, sign_up):
    acct = sign_up()
    p1, p2 = make_project(http, acct)["project_id"], make_project(http, acct)["project_id"]
    # assignees are members of the tenant (tests/test_security_keys.py: no one else)
    me, someone = acct.user_id, add_member(http, outbox, acct, "member").user_id
    t1 = make_task(http, acct, p1, "one", assignee_id=me)
    t2 = make_task(http, acct, p1, "two", status="done", priority="high", due_date="2031-02-03")
    t3 = make_task(http, acct, p2, "three", assignee_id=someone)
    t4 = make_task(http, acct, p2, "four", status="in_progress", assignee_id=me)
    assert (t1["status"], t1["priority"], t1["assignee_id"], t1["project_id"]) == ("todo", "normal", me, p1)
    assert (t2["status"], t2["priority"], t2["due_date"]) == ("done", "high", "2031-02-03")
    assert ok(http.get(f"/v1/tasks/{t3['task_id']}", headers=acct.headers)) == t3

    def listed(**params) -> list[str]:
        return ids(walk(http, acct.headers, "/v1/tasks", **params), "task_id")

    every = [t["task_id"] for t in (t1, t2, t3, t4)]
    assert listed() == every
    assert ids(walk(http, acct.headers, "/v1/tasks", limit=1), "task_id") == every
    assert listed(project_id=p1) == [t1["task_id"], t2["task_id"]]
    assert listed(status="todo") == [t1["task_id"], t3["task_id"]]
    assert listed(assignee_id=me) == [t1["task_id"], t4["task_id"]]
    assert listed(project_id=p2, status="in_progress", assignee_id=me) == [t4["task_id"]]
    assert listed(project_id=p2, status="done") == []
    assert listed(project_id=str(uuid.uuid4())) == []
    problem(
        http.get("/v1/tasks", headers=acct.headers, params={"project_id": "p1"}),
        400,
        "invalid_parameter",
        field="project_id",
    )
    problem(
        http.get("/v1/tasks", headers=acct.headers, params={"assignee_id": "me"}),
        400,
        "invalid_parameter",
        field="assignee_id",
    )

    # PATCH: partial, null clears assignee_id, moves between projects
    changed = ok(
        http.patch(
            f"/v1/tasks/{t1['task_id']}", headers=acct.headers, json={"status": "in_progress", "assignee_id": None}
        )
    )
    assert (changed["status"], changed["assignee_id"], changed["title"]) == ("in_progress", None, "one")
    moved = ok(http.patch(f"/v1/tasks/{t3['task_id']}", headers=acct.headers, json={"project_id": p1}))
    assert moved["project_id"] == p1 and moved["assignee_id"] == someone
    assert listed(project_id=p1) == [t1["task_id"], t2["task_id"], t3["task_id"]]
    assert listed(assignee_id=me) == [t4["task_id"]]

    # bad values: validated at the edge or by the database, always naming the field
    problem(
        http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"status": "blocked"}),
        422,
        "invalid_body",
        field="status",
    )
    problem(
        http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"due_date": "someday"}),
        422,
        "invalid_body",
        field="due_date",
    )
    problem(
        http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"colour": "red"}),
        422,
        "invalid_body",
        field="colour",
    )
    problem(
        http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"title": None}),
        422,
        "missing_value",
        field="title",
    )
    problem(http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"title": "   "}), 422, "invalid_value")
    problem(
        http.post("/v1/tasks", headers=acct.headers, json={"project_id": p1, "title": "x", "status": "new"}),
        422,
        "invalid_body",
        field="status",
    )
    problem(http.post("/v1/tasks", headers=acct.headers, json={"title": "x"}), 422, "invalid_body", field="project_id")
    problem(
        http.post("/v1/tasks", headers=acct.headers, json={"project_id": str(uuid.uuid4()), "title": "x"}),
        404,
        "not_found",
    )
    assert ok(http.get(f"/v1/tasks/{t2['task_id']}", headers=acct.headers)) == t2  # nothing changed

    deleted = ok(http.delete(f"/v1/tasks/{t2['task_id']}", headers=acct.headers))
    assert deleted["deleted_at"] is not None
    problem(http.get(f"/v1/tasks/{t2['task_id']}", headers=acct.headers), 404, "not_found")
    problem(http.patch(f"/v1/tasks/{t2['task_id']}", headers=acct.headers, json={"title": "x"}), 404, "not_found")
    problem(http.delete(f"/v1/tasks/{t2['task_id']}", headers=acct.headers), 404, "not_found")
    assert t2["task_id"] not in listed()
    with_deleted = {t["task_id"]: t for t in walk(http, acct.headers, "/v1/tasks", include_deleted="true")}
    assert set(with_deleted) == set(every)
    assert with_deleted[t2["task_id"]]["deleted_at"] == deleted["deleted_at"]


def test_deleting_a_project_soft_deletes_its_tasks(http, sign_up):
    acct = sign_up()
    project, keep = make_project(http, acct), make_project(http, acct)
    pid = project["project_id"]
    earlier = make_task(http, acct, pid)
    ok(http.delete(f"/v1/tasks/{earlier['task_id']}", headers=acct.headers))
    earlier_deleted_at = ok(http.get("/v1/tasks", headers=acct.headers, params={"include_deleted": "true"}))["items"][
        0
    ]["deleted_at"]
    live = [make_task(http, acct, pid) for _ in range(3)]
    other = make_task(http, acct, keep["project_id"])

    deleted = ok(http.delete(f"/v1/projects/{pid}", headers=acct.headers))
    tasks = {t["task_id"]: t for t in walk(http, acct.headers, "/v1/tasks", include_deleted="true", project_id=pid)}
    assert set(tasks) == {earlier["task_id"], *(t["task_id"] for t in live)}
    for task in live:
        assert tasks[task["task_id"]]["deleted_at"] == deleted["deleted_at"]
        problem(http.get(f"/v1/tasks/{task['task_id']}", headers=acct.headers), 404, "not_found")
    # an already deleted task keeps its own deletion time
    assert tasks[earlier["task_id"]]["deleted_at"] == earlier_deleted_at != deleted["deleted_at"]
    assert ids(walk(http, acct.headers, "/v1/tasks"), "task_id") == [other["task_id"]]

    # a deleted project takes no tasks, new or moved
    problem(http.post("/v1/tasks", headers=acct.headers, json={"project_id": pid, "title": "late"}), 404, "not_found")
    problem(
        http.patch(f"/v1/tasks/{other['task_id']}", headers=acct.headers, json={"project_id": pid}), 404, "not_found"
    )
    assert ok(http.get(f"/v1/tasks/{other['task_id']}", headers=acct.headers))["project_id"] == keep["project_id"]


# -- not found, isolation, parameters, error format -------------------------------------------


def test_invalid_uuid_in_path_is_not_found(http, account):
    for path in ("/v1/projects/not-a-uuid", "/v1/projects/123", "/v1/tasks/xyz", f"/v1/tasks/{uuid.uuid4().hex[:-1]}"):
        problem(http.get(path, headers=account.headers), 404, "not_found")
        problem(http.patch(path, headers=account.headers, json={"description": "x"}), 404, "not_found")
        problem(http.delete(path, headers=account.headers), 404, "not_found")


def _normalized(resp: httpx.Response, object_id: str) -> dict:
    body = dict(resp.json())
    body.pop("request_id")
    return {k: v.replace(object_id, "<id>") if isinstance(v, str) else v for k, v in body.items()}


def test_another_tenants_ids_are_not_found_like_random_ids(http, sign_up):
    mine, theirs = sign_up(), sign_up()
    their_project = make_project(http, theirs, "Secret", description="theirs")
    their_task = make_task(http, theirs, their_project["project_id"], "hidden")
    my_project = make_project(http, mine)
    my_task = make_task(http, mine, my_project["project_id"])

    calls = [
        ("GET", "/v1/projects/{}", None),
        ("PATCH", "/v1/projects/{}", {"name": "Mine now"}),
        ("DELETE", "/v1/projects/{}", None),
        ("GET", "/v1/tasks/{}", None),
        ("PATCH", "/v1/tasks/{}", {"title": "mine now"}),
        ("DELETE", "/v1/tasks/{}", None),
    ]
    for method, template, payload in calls:
        foreign = their_project["project_id"] if "projects" in template else their_task["task_id"]
        random_id = str(uuid.uuid4())
        leaked = http.request(method, template.format(foreign), headers=mine.headers, json=payload)
        absent = http.request(method, template.format(random_id), headers=mine.headers, json=payload)
        problem(leaked, 404, "not_found")
        problem(absent, 404, "not_found")
        assert _normalized(leaked, foreign) == _normalized(absent, random_id), (method, template)

    # references to their project from my calls are "not found" too
    for project_id in (their_project["project_id"], str(uuid.uuid4())):
        problem(
            http.post("/v1/tasks", headers=mine.headers, json={"project_id": project_id, "title": "t"}),
            404,
            "not_found",
        )
        problem(
            http.patch(f"/v1/tasks/{my_task['task_id']}", headers=mine.headers, json={"project_id": project_id}),
            404,
            "not_found",
        )
    assert walk(http, mine.headers, "/v1/tasks", project_id=their_project["project_id"], include_deleted="true") == []
    assert ids(walk(http, mine.headers, "/v1/projects", include_deleted="true"), "project_id") == [
        my_project["project_id"]
    ]

    # and nothing of theirs changed
    assert ok(http.get(f"/v1/projects/{their_project['project_id']}", headers=theirs.headers)) == their_project
    assert ok(http.get(f"/v1/tasks/{their_task['task_id']}", headers=theirs.headers)) == their_task


@pytest.mark.parametrize("path", ["/v1/projects", "/v1/tasks"])
def test_bad_limit_and_cursor_are_400(http, account, path):
    for limit in ("0", "201", "-1", "abc", "1.5", "1e2", " 5", "999999999999999999999"):
        problem(
            http.get(path, headers=account.headers, params={"limit": limit}), 400, "invalid_parameter", field="limit"
        )
    for limit in ("1", "200"):
        ok(http.get(path, headers=account.headers, params={"limit": limit}))
    good_time = "2024-01-01T00:00:00+00:00"
    for cursor in (
        "x",
        "!!!!",
        "bm90IGpzb24",
        cursor_of([1]),
        cursor_of("ab"),
        cursor_of(5),
        cursor_of(None),
        cursor_of({"a": 1, "b": 2}),
        cursor_of([good_time, "not-a-uuid"]),
        cursor_of(["yesterday", str(uuid.uuid4())]),
        cursor_of([1, 2]),
        cursor_of([good_time, str(uuid.uuid4()), "extra"]),
    ):
        problem(
            http.get(path, headers=account.headers, params={"cursor": cursor}), 400, "invalid_parameter", field="cursor"
        )
    ok(http.get(path, headers=account.headers, params={"cursor": cursor_of([good_time, str(uuid.uuid4())])}))


# regression: str.isdigit() accepts '²', which int() refuses (was a 500)
def test_unicode_digit_limit_is_400(http, account):
    problem(
        http.get("/v1/projects", headers=account.headers, params={"limit": "²"}),
        400,
        "invalid_parameter",
        field="limit",
    )


# regression: deeply nested JSON in a cursor raised RecursionError (was a 500)
def test_deeply_nested_cursor_is_400(http, account):
    cursor = base64.urlsafe_b64encode(b"[" * 2000).decode()
    problem(
        http.get("/v1/projects", headers=account.headers, params={"cursor": cursor}),
        400,
        "invalid_parameter",
        field="cursor",
    )


# regression: psycopg refuses NUL in text with a DataError without SQLSTATE (was a 500)
def test_nul_character_in_body_is_422(http, account):
    resp = http.post("/v1/projects", headers=account.headers, json={"name": "a\u0000b"})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    no_leak(resp)


# regression: the same DataError from a query parameter (was a 500; now refused as a malformed parameter)
def test_nul_character_in_query_is_400(http, account):
    resp = http.get("/v1/tasks", headers=account.headers, params={"status": "\u0000"})
    assert resp.status_code == 400, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    no_leak(resp)


def test_errors_are_problem_json_without_internals(http, account):
    project = make_project(http, account)
    h = account.headers
    cases = [
        (http.get("/v1/projects"), 401, "missing_credentials"),
        (http.get("/v1/projects", headers={"Authorization": "Bearer not.a.jwt"}), 401, None),
        (http.get("/v1/projects", headers={"X-API-Key": "tnt_nope_nope"}), 401, None),
        (
            http.post("/v1/projects", headers=h | {"Content-Type": "application/json"}, content=b"{name"),
            400,
            "invalid_json",
        ),
        (
            http.post("/v1/projects", headers=h | {"Content-Type": "text/plain"}, content=b"{}"),
            415,
            "unsupported_media_type",
        ),
        (http.post("/v1/projects", headers=h), 422, "missing_body"),
        (http.post("/v1/projects", headers=h, json=[1, 2]), 422, "invalid_body"),
        (http.post("/v1/projects", headers=h, json={"name": 5}), 422, "invalid_body"),
        (http.post("/v1/projects", headers=h, json={"name": "x" * 201}), 422, "invalid_body"),
        (http.post("/v1/projects", headers=h, json={"name": " "}), 422, "invalid_value"),
        (http.post("/v1/projects", headers=h, json={"name": project["name"]}), 409, "duplicate_name"),
        (http.get(f"/v1/projects/{uuid.uuid4()}", headers=h), 404, "not_found"),
        # Falcon's own errors: codes in the same snake_case style (no "404_not_found")
        (http.get("/v1/nothing-here", headers=h), 404, "not_found"),
        (http.put("/v1/projects", headers=h, json={}), 405, "method_not_allowed"),
        (http.get("/v1/projects", headers=h, params={"include_deleted": "perhaps"}), 400, "invalid_parameter"),
        (
            http.post("/v1/projects", headers=h | {"Idempotency-Key": "k" * 256}, json={"name": "n"}),
            422,
            "invalid_idempotency_key",
        ),
        # inputs that once failed unplanned (or still do): whatever the status, a 500 must be a bare
        # problem, with nothing of the exception in it
        (
            http.get("/v1/projects", headers=h, params={"cursor": base64.urlsafe_b64encode(b"[" * 2000).decode()}),
            None,
            None,
        ),
        (http.patch(f"/v1/projects/{project['project_id']}", headers=h, json={"description": "\u0000"}), None, None),
    ]
    for resp, status, code in cases:
        assert resp.headers["content-type"].startswith("application/problem+json"), (resp.request.url, resp.text)
        body = resp.json()
        assert body.keys() >= PROBLEM_FIELDS, body
        assert body["status"] == resp.status_code >= 400 and body["type"] == f"/problems/{body['code']}"
        assert body["request_id"] == resp.headers["X-Request-ID"]
        if status is not None:
            assert resp.status_code == status, resp.text
        if code is not None:
            assert body["code"] == code, body
        if resp.status_code >= 500:
            assert body["code"] == "internal_error"
            assert body["detail"] == "The server could not complete the request.", body
        no_leak(resp)


# -- pagination ------------------------------------------------------------------------------


def test_pagination_is_stable_under_concurrent_inserts(http, api_url, sign_up):
    acct = sign_up()
    before = [make_project(http, acct, f"before-{i:02}")["project_id"] for i in range(30)]
    stop = threading.Event()
    inserted: list[str] = []
    failures: list[str] = []

    def insert() -> None:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            while not stop.is_set() and len(inserted) < 200:
                resp = client.post("/v1/projects", headers=acct.headers, json={"name": f"during-{len(inserted)}"})
                if resp.status_code != 201:
                    failures.append(resp.text)
                    return
                inserted.append(resp.json()["project_id"])
                time.sleep(0.005)

    inserter = threading.Thread(target=insert)
    inserter.start()
    seen: list[dict] = []
    pages = 0
    try:
        while len(inserted) < 3 and inserter.is_alive():
            time.sleep(0.01)  # the walk starts while inserts are under way
        at_start = len(inserted)
        cursor = None
        while True:
            params = {"limit": "7"} | ({"cursor": cursor} if cursor else {})
            page = ok(http.get("/v1/projects", headers=acct.headers, params=params))
            assert len(page["items"]) <= 7
            seen += page["items"]
            pages += 1
            cursor = page["next_cursor"]
            if cursor is None:
                at_end = len(inserted)
                break
            assert pages < 100, "the walk does not end"
            time.sleep(0.02)
    finally:
        stop.set()
        inserter.join()
    assert not failures, failures
    assert at_end - at_start >= 3, "the concurrent inserts did not overlap the walk"

    walked = ids(seen, "project_id")
    assert len(walked) == len(set(walked)), "a project was returned twice"
    keys = [(ts(p["created_at"]), uuid.UUID(p["project_id"])) for p in seen]
    assert all(a < b for a, b in itertools.pairwise(keys)), "keys are not strictly increasing"
    assert [pid for pid in walked if pid in set(before)] == before, "a project that existed was missed"
    assert set(walked) <= set(before) | set(inserted)
    assert pages >= 5


# -- idempotency -------------------------------------------------------------------------------


def _projects_named(http, acct, name: str) -> list[dict]:
    return [p for p in walk(http, acct.headers, "/v1/projects") if p["name"] == name]


def test_idempotent_post_replays_the_first_answer(http, sign_up):
    acct = sign_up()
    key = {"Idempotency-Key": f"create-{uuid.uuid4()}"}
    first = http.post("/v1/projects", headers=acct.headers | key, json={"name": "Once", "description": "d"})
    second = http.post("/v1/projects", headers=acct.headers | key, json={"name": "Once", "description": "d"})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json() == second.json()
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert len(_projects_named(http, acct, "Once")) == 1

    # another body under the same key is refused, and changes nothing
    problem(
        http.post("/v1/projects", headers=acct.headers | key, json={"name": "Twice"}),
        409,
        "idempotency_key_reused",
        field="Idempotency-Key",
    )
    # so is the same body on another path
    problem(
        http.post("/v1/tasks", headers=acct.headers | key, json={"name": "Once", "description": "d"}),
        409,
        "idempotency_key_reused",
    )
    assert _projects_named(http, acct, "Twice") == []

    # tasks too: one task however often the request is repeated
    task_key = {"Idempotency-Key": "task-key"}
    task_body = {"project_id": first.json()["project_id"], "title": "only one"}
    answers = [http.post("/v1/tasks", headers=acct.headers | task_key, json=task_body) for _ in range(3)]
    assert [a.status_code for a in answers] == [201, 201, 201]
    assert [a.headers.get("Idempotent-Replayed") for a in answers] == [None, "true", "true"]
    assert all(a.json() == answers[0].json() for a in answers)
    assert len(walk(http, acct.headers, "/v1/tasks")) == 1

    # without a key, the same body creates again (and here collides on the name)
    problem(
        http.post("/v1/projects", headers=acct.headers, json={"name": "Once", "description": "d"}),
        409,
        "duplicate_name",
    )


def test_idempotency_keys_are_per_tenant(http, sign_up):
    one, two = sign_up(), sign_up()
    key = {"Idempotency-Key": "shared-key"}
    a = http.post("/v1/projects", headers=one.headers | key, json={"name": "Same"})
    b = http.post("/v1/projects", headers=two.headers | key, json={"name": "Same"})
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert "Idempotent-Replayed" not in b.headers
    assert a.json()["project_id"] != b.json()["project_id"]
    assert b.json()["created_by"] == two.user_id
    # another body in the other tenant is not a reuse of the first tenant's key
    c = http.post("/v1/projects", headers=two.headers | {"Idempotency-Key": "other"}, json={"name": "Else"})
    d = http.post("/v1/projects", headers=one.headers | {"Idempotency-Key": "other"}, json={"name": "Different"})
    assert c.status_code == d.status_code == 201
    assert ids(walk(http, one.headers, "/v1/projects"), "name") == ["Same", "Different"]
    assert ids(walk(http, two.headers, "/v1/projects"), "name") == ["Same", "Else"]


def test_concurrent_duplicates_create_once(http, api_url, sign_up):
    acct = sign_up()
    clients = [httpx.Client(base_url=api_url, timeout=30) for _ in range(2)]
    try:
        for round_ in range(5):
            key = {"Idempotency-Key": f"race-{round_}-{uuid.uuid4()}"}
            body = {"name": f"Race {round_}", "description": "at once"}
            barrier = threading.Barrier(2)
            answers: list[httpx.Response | None] = [None, None]

            def send(i: int, barrier=barrier, answers=answers, key=key, body=body) -> None:
                barrier.wait()
                answers[i] = clients[i].post("/v1/projects", headers=acct.headers | key, json=body)

            threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            first, second = answers
            assert first is not None and second is not None
            assert first.status_code == second.status_code == 201, (first.text, second.text)
            assert first.json() == second.json()
            replayed = sorted(r.headers.get("Idempotent-Replayed", "") for r in answers)
            assert replayed == ["", "true"], replayed
            assert len(_projects_named(http, acct, body["name"])) == 1
    finally:
        for client in clients:
            client.close()
    assert len(walk(http, acct.headers, "/v1/projects")) == 5


def test_a_failed_request_does_not_spend_its_key(http, sign_up):
    acct = sign_up()
    make_project(http, acct, "Taken")

    # 409 from the database: the claim rolls back with the request
    key = {"Idempotency-Key": "retry-after-409"}
    problem(http.post("/v1/projects", headers=acct.headers | key, json={"name": "taken"}), 409, "duplicate_name")
    again = http.post("/v1/projects", headers=acct.headers | key, json={"name": "taken"})
    problem(again, 409, "duplicate_name")  # evaluated again, not a replayed error
    assert "Idempotent-Replayed" not in again.headers
    fixed = http.post("/v1/projects", headers=acct.headers | key, json={"name": "Fresh"})
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers, fixed.text
    replay = http.post("/v1/projects", headers=acct.headers | key, json={"name": "Fresh"})
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json() == fixed.json()
    # now the key is spent: the first (failed) body is a different request
    problem(
        http.post("/v1/projects", headers=acct.headers | key, json={"name": "taken"}), 409, "idempotency_key_reused"
    )

    # 422 from the database (a blank name fails its CHECK), then 422 at the edge
    key = {"Idempotency-Key": "retry-after-422"}
    problem(http.post("/v1/projects", headers=acct.headers | key, json={"name": "   "}), 422, "invalid_value")
    problem(http.post("/v1/projects", headers=acct.headers | key, json={"name": 7}), 422, "invalid_body")
    fixed = http.post("/v1/projects", headers=acct.headers | key, json={"name": "Fixed"})
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers, fixed.text
    assert sorted(ids(walk(http, acct.headers, "/v1/projects"), "name")) == ["Fixed", "Fresh", "Taken"]


# -- suspended tenants, rate limits, Redis down, metrics ------------------------------------------


def test_suspended_tenant_reads_but_cannot_write(http, sign_up, owner):
    acct = sign_up()
    project = make_project(http, acct, "Before")
    task = make_task(http, acct, project["project_id"])

    admin = sign_up()
    problem(
        http.post(f"/v1/admin/tenants/{acct.tenant_id}/suspend", headers=admin.headers), 403, "platform_admin_required"
    )
    owner.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (admin.user_id,))
    login = http.post("/v1/auth/login", json={"email": admin.email, "password": admin.password})
    assert login.status_code == 200, login.text
    admin_headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    suspended = ok(http.post(f"/v1/admin/tenants/{acct.tenant_id}/suspend", headers=admin_headers))
    assert suspended["status"] == "suspended" and suspended["suspended_at"]

    h, pid, tid = acct.headers, project["project_id"], task["task_id"]
    # reads
    assert ok(http.get("/v1/tenant", headers=h))["status"] == "suspended"
    assert ok(http.get(f"/v1/projects/{pid}", headers=h)) == project
    assert ids(walk(http, h, "/v1/projects"), "project_id") == [pid]
    assert ok(http.get(f"/v1/tasks/{tid}", headers=h)) == task
    assert ids(walk(http, h, "/v1/tasks", project_id=pid), "task_id") == [tid]
    # writes
    writes = [
        http.post("/v1/projects", headers=h, json={"name": "After"}),
        http.post("/v1/projects", headers=h | {"Idempotency-Key": "while-suspended"}, json={"name": "After"}),
        http.patch(f"/v1/projects/{pid}", headers=h, json={"description": "changed"}),
        http.delete(f"/v1/projects/{pid}", headers=h),
        http.post("/v1/tasks", headers=h, json={"project_id": pid, "title": "new"}),
        http.patch(f"/v1/tasks/{tid}", headers=h, json={"status": "done"}),
        http.delete(f"/v1/tasks/{tid}", headers=h),
    ]
    for resp in writes:
        problem(resp, 403, "tenant_suspended")
    assert ok(http.get(f"/v1/projects/{pid}", headers=h)) == project
    assert ok(http.get(f"/v1/tasks/{tid}", headers=h)) == task

    ok(http.post(f"/v1/admin/tenants/{acct.tenant_id}/reactivate", headers=admin_headers))
    make_project(http, acct, "After")
    assert ok(http.patch(f"/v1/tasks/{tid}", headers=h, json={"status": "done"}))["status"] == "done"


def test_free_plan_is_rate_limited(http, sign_up):
    acct = sign_up(plan="free")
    remaining: list[int] = []
    refused = None
    started = time.monotonic()
    for _ in range(130):
        resp = http.get("/v1/auth/me", headers=acct.headers)
        assert resp.headers["RateLimit-Limit"] == "60", resp.headers
        assert resp.headers["RateLimit-Policy"] == "60;w=60"
        assert int(resp.headers["RateLimit-Reset"]) >= 0
        if resp.status_code == 429:
            refused = resp
            break
        assert resp.status_code == 200, resp.text
        remaining.append(int(resp.headers["RateLimit-Remaining"]))
    elapsed = time.monotonic() - started
    assert refused is not None, "no 429 after 130 requests"
    # 60 in the bucket, plus what refilled (1/s) while we sent them
    assert 60 <= len(remaining) <= 60 + int(elapsed) + 1, (len(remaining), elapsed)
    assert remaining[0] == 59
    assert all(b <= a for a, b in itertools.pairwise(remaining)), remaining
    assert remaining[-1] == 0
    body = problem(refused, 429, "rate_limited")
    assert body["status"] == 429
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Remaining"] == "0"
    # still refused at once; another user has a bucket of their own
    problem(http.get("/v1/auth/me", headers=acct.headers), 429, "rate_limited")
    other = sign_up(plan="free")
    fresh = http.get("/v1/auth/me", headers=other.headers)
    assert fresh.status_code == 200 and fresh.headers["RateLimit-Remaining"] == "59"


def test_redis_down_fails_open(owner_url, sign_up, tmp_path):
    acct = sign_up(plan="free")
    dead = f"redis://127.0.0.1:{free_port()}/0"
    process, url = start_api(owner_url, dead, tmp_path)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(65):  # more than the free plan's 60 a minute
                resp = client.get("/v1/auth/me", headers=acct.headers)
                assert resp.status_code == 200, resp.text
                assert not any(h.lower().startswith("ratelimit") for h in resp.headers), resp.headers
            created = client.post("/v1/projects", headers=acct.headers, json={"name": "Without Redis"})
            assert created.status_code == 201, created.text
            # still ready (rate limits fail open by design), and it says why limits are off
            ready = client.get("/ready")
            assert ready.status_code == 200, ready.text
            checks = ready.json()["checks"]
            assert checks["redis"] == "unavailable (rate limits fail open)", checks
            assert checks["database"] == "ok"
            assert ready.json()["status"] == "ready"
            assert client.get("/health").status_code == 200
            metrics = client.get("/metrics").text
            assert re.search(r"^tenantry_ratelimit_degraded_total [1-9]", metrics, re.M), metrics[:2000]
            assert re.search(r"^tenantry_redis_up 0", metrics, re.M), metrics[:2000]
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_metrics_count_requests(http, account):
    http.get("/v1/projects", headers=account.headers)
    resp = http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert "# TYPE tenantry_http_requests_total counter" in text
    assert re.search(
        r'^tenantry_http_requests_total\{[^}]*route="/v1/projects"[^}]*status="200"[^}]*\} [1-9]', text, re.M
    ), text[:3000]
    assert "tenantry_http_request_seconds_bucket" in text

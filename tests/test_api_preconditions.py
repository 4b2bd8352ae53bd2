"""Conditional requests over real HTTP (issue 9, race 3): the row version is the ETag,
If-Match and If-Unmodified-Since guard changes (412), If-None-Match and If-Modified-Since
spare reads (304). The precondition is checked by the SQL function in its UPDATE, so of
concurrent read-modify-writes sent with the same ETag exactly one wins."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from email.utils import format_datetime, parsedate_to_datetime

import httpx
import psycopg

from tests.helpers import bearer, problem


def new_task(http: httpx.Client, headers: dict) -> dict:
    project = http.post("/v1/projects", headers=headers, json={"name": f"p-{uuid.uuid4().hex[:10]}"})
    assert project.status_code == 201, project.text
    task = http.post("/v1/tasks", headers=headers, json={"project_id": project.json()["project_id"], "title": "T"})
    assert task.status_code == 201, task.text
    return task.json() | {"etag": task.headers["ETag"]}


def http_date(when: dt.datetime) -> str:
    return format_datetime(when.astimezone(dt.UTC), usegmt=True)


def test_versioned_resources_answer_with_their_etag_and_last_modified(http, sign_up):
    account = sign_up()
    created = http.post("/v1/projects", headers=account.headers, json={"name": "Versioned"})
    assert created.status_code == 201 and created.headers["ETag"] == '"1"', created.headers
    assert parsedate_to_datetime(created.headers["Last-Modified"]).tzinfo is not None
    project = created.json()["project_id"]
    got = http.get(f"/v1/projects/{project}", headers=account.headers)
    assert got.headers["ETag"] == '"1"' and got.headers["Last-Modified"] == created.headers["Last-Modified"]
    changed = http.patch(f"/v1/projects/{project}", headers=account.headers, json={"description": "x"})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"2"'
    deleted = http.delete(f"/v1/projects/{project}", headers=account.headers)
    assert deleted.status_code == 200 and deleted.headers["ETag"] == '"3"'

    task = new_task(http, account.headers)
    assert task["etag"] == '"1"'
    changed = http.patch(f"/v1/tasks/{task['task_id']}", headers=account.headers, json={"status": "done"})
    assert changed.headers["ETag"] == '"2"'
    assert http.get(f"/v1/tasks/{task['task_id']}", headers=account.headers).headers["ETag"] == '"2"'
    assert http.delete(f"/v1/tasks/{task['task_id']}", headers=account.headers).headers["ETag"] == '"3"'

    tenant = http.get("/v1/tenant", headers=account.headers)
    renamed = http.patch("/v1/tenant", headers=account.headers, json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    assert int(renamed.headers["ETag"].strip('"')) == int(tenant.headers["ETag"].strip('"')) + 1


def test_a_stale_if_match_is_412_and_changes_nothing(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    path = f"/v1/tasks/{task['task_id']}"
    assert http.patch(path, headers=account.headers, json={"title": "Theirs"}).headers["ETag"] == '"2"'
    stale = http.patch(path, headers=account.headers | {"If-Match": task["etag"]}, json={"title": "Mine"})
    problem(stale, 412, "precondition_failed")
    assert http.get(path, headers=account.headers).json()["title"] == "Theirs"
    stale_delete = http.delete(path, headers=account.headers | {"If-Match": '"1"'})
    problem(stale_delete, 412, "precondition_failed")
    assert http.get(path, headers=account.headers).status_code == 200  # not deleted


def test_a_matching_if_match_changes_and_answers_the_new_etag(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    path = f"/v1/tasks/{task['task_id']}"
    matched = http.patch(path, headers=account.headers | {"If-Match": '"1"'}, json={"title": "v2"})
    assert matched.status_code == 200 and matched.headers["ETag"] == '"2"', matched.text
    # one of a list, weak and foreign tags besides
    listed = http.patch(path, headers=account.headers | {"If-Match": 'W/"9", "abc", "2"'}, json={"title": "v3"})
    assert listed.status_code == 200 and listed.headers["ETag"] == '"3"', listed.text
    star = http.patch(path, headers=account.headers | {"If-Match": "*"}, json={"title": "v4"})
    assert star.status_code == 200 and star.headers["ETag"] == '"4"', star.text
    assert http.get(path, headers=account.headers).json()["title"] == "v4"


def test_a_weak_tag_never_matches_a_change(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    weak = http.patch(f"/v1/tasks/{task['task_id']}", headers=account.headers | {"If-Match": 'W/"1"'}, json={})
    problem(weak, 412, "precondition_failed")  # strong comparison (RFC 9110, 13.1.1)


def test_a_malformed_if_match_is_400_naming_the_header(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    for malformed in ("1", '"1', '"1" "2"', "W/1", '"1",, x'):
        answer = http.patch(f"/v1/tasks/{task['task_id']}", headers=account.headers | {"If-Match": malformed}, json={})
        problem(answer, 400, "invalid_header", field="If-Match")
    assert http.get(f"/v1/tasks/{task['task_id']}", headers=account.headers).headers["ETag"] == '"1"'


def test_if_match_on_a_missing_resource_is_404(http, sign_up):
    account = sign_up()
    missing = http.patch(f"/v1/tasks/{uuid.uuid4()}", headers=account.headers | {"If-Match": '"1"'}, json={})
    problem(missing, 404, "not_found")


def test_if_unmodified_since_older_than_the_change_is_412(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    path = f"/v1/tasks/{task['task_id']}"
    last_modified = parsedate_to_datetime(http.get(path, headers=account.headers).headers["Last-Modified"])
    earlier = http.patch(
        path,
        headers=account.headers | {"If-Unmodified-Since": http_date(last_modified - dt.timedelta(seconds=1))},
        json={},
    )
    problem(earlier, 412, "precondition_failed")
    time.sleep(1.1)  # HTTP dates have whole seconds: the next change is in a later one
    same = http.patch(
        path, headers=account.headers | {"If-Unmodified-Since": http_date(last_modified)}, json={"title": "ok"}
    )
    assert same.status_code == 200, same.text  # unmodified since that second
    # now it changed after that date
    problem(
        http.patch(path, headers=account.headers | {"If-Unmodified-Since": http_date(last_modified)}, json={}),
        412,
        "precondition_failed",
    )
    # an invalid date is ignored (RFC 9110, 13.1.4); with If-Match it does not count
    assert http.patch(path, headers=account.headers | {"If-Unmodified-Since": "yesterday"}, json={}).status_code == 200
    current = http.get(path, headers=account.headers).headers["ETag"]
    both = http.patch(
        path, headers=account.headers | {"If-Match": current, "If-Unmodified-Since": http_date(last_modified)}, json={}
    )
    assert both.status_code == 200, both.text


def test_if_none_match_and_if_modified_since_answer_304_without_a_body(http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    path = f"/v1/tasks/{task['task_id']}"
    cached = http.get(path, headers=account.headers | {"If-None-Match": task["etag"]})
    assert cached.status_code == 304 and cached.content == b"" and cached.headers["ETag"] == task["etag"]
    assert http.get(path, headers=account.headers | {"If-None-Match": 'W/"1"'}).status_code == 304  # weak comparison
    assert http.get(path, headers=account.headers | {"If-None-Match": '"7", "8"'}).status_code == 200
    since = http.get(path, headers=account.headers | {"If-Modified-Since": cached.headers["Last-Modified"]})
    assert since.status_code == 304
    http.patch(path, headers=account.headers, json={"title": "new"})
    fresh = http.get(path, headers=account.headers | {"If-None-Match": task["etag"]})
    assert fresh.status_code == 200 and fresh.json()["title"] == "new" and fresh.headers["ETag"] == '"2"'
    tenant = http.get("/v1/tenant", headers=account.headers)
    assert (
        http.get("/v1/tenant", headers=account.headers | {"If-None-Match": tenant.headers["ETag"]}).status_code == 304
    )


def test_ten_concurrent_read_modify_writes_one_wins_nine_are_412(api_url, http, sign_up):
    account = sign_up()
    task = new_task(http, account.headers)
    path = f"/v1/tasks/{task['task_id']}"
    barrier = threading.Barrier(10)
    answers: list[httpx.Response | None] = [None] * 10

    def writer(index: int) -> None:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            read = client.get(path, headers=account.headers)  # read ...
            barrier.wait(timeout=30)
            answers[index] = client.patch(  # ... modify, write back with the version read
                path, headers=account.headers | {"If-Match": read.headers["ETag"]}, json={"title": f"writer {index}"}
            )

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    done = [a for a in answers if a is not None]
    assert len(done) == 10
    won = [a for a in done if a.status_code == 200]
    lost = [a for a in done if a.status_code != 200]
    assert len(won) == 1, [a.status_code for a in done]
    for answer in lost:
        problem(answer, 412, "precondition_failed")
    final = http.get(path, headers=account.headers)
    assert final.json()["title"] == won[0].json()["title"]  # no acknowledged update was lost
    assert final.headers["ETag"] == won[0].headers["ETag"] == '"2"'


def test_members_and_the_tenant_take_if_match(http, sign_up, owner: psycopg.Connection):
    account = sign_up()
    member = sign_up()
    owner.execute(
        "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, 'member')",
        (account.tenant_id, member.user_id),
    )
    path = f"/v1/members/{member.user_id}"
    promoted = http.patch(path, headers=account.headers | {"If-Match": '"1"'}, json={"role": "developer"})
    assert promoted.status_code == 200 and promoted.headers["ETag"] == '"2"', promoted.text
    problem(
        http.patch(path, headers=account.headers | {"If-Match": '"1"'}, json={"role": "admin"}),
        412,
        "precondition_failed",
    )
    problem(http.delete(path, headers=account.headers | {"If-Match": '"1"'}), 412, "precondition_failed")
    assert http.delete(path, headers=account.headers | {"If-Match": '"2"'}).status_code == 200

    tenant = http.get("/v1/tenant", headers=account.headers)
    changed = http.patch(
        "/v1/tenant", headers=account.headers | {"If-Match": tenant.headers["ETag"]}, json={"name": "A"}
    )
    assert changed.status_code == 200, changed.text
    stale = http.patch("/v1/tenant", headers=account.headers | {"If-Match": tenant.headers["ETag"]}, json={"name": "B"})
    problem(stale, 412, "precondition_failed")
    assert http.get("/v1/tenant", headers=bearer(account.access_token)).json()["name"] == "A"


def test_the_openapi_document_lists_the_conditional_headers(http):
    document = http.get("/v1/openapi.json").json()
    patch = document["paths"]["/v1/tasks/{task_id}"]["patch"]
    assert {"If-Match", "If-Unmodified-Since"} <= {p["name"] for p in patch["parameters"]}
    assert "412" in patch["responses"] and "ETag" in patch["responses"]["200"]["headers"]
    get = document["paths"]["/v1/tasks/{task_id}"]["get"]
    assert {"If-None-Match", "If-Modified-Since"} <= {p["name"] for p in get["parameters"]}
    assert "304" in get["responses"] and "412" not in get["responses"]

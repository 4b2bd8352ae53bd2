"""Races between concurrent transactions, each with its own connection, started together.

Two rules must hold whatever the interleaving (issue 9, races 1 and 2):
- a tenant keeps an owner when two owners demote or remove each other, or leave, at the
  same time (core.serialize_owner_changes, 110_members.sql);
- no live task stays in a project that a concurrent delete soft-deleted, whether the task
  was created in it or moved into it at the same time (core.guard_task_project_live,
  210_tasks.sql).

Each transaction runs its statement, then stays open for HOLD seconds before it commits,
so the other one runs while it is uncommitted: without the locks both pass their checks
every time (the tests failed on every repetition before the fix). The SQL tests call the
api.* functions as the api role; one test of each rule goes over real HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb

from db.context import Context, Database
from tests.helpers import OWNERS, bearer, one

#: the database owner's connection (conftest's `owner`: dict rows)
Owner = psycopg.Connection[dict[str, Any]]

#: how long each transaction stays open after its statement (the race window)
HOLD = 0.3


def together(*actions: Callable[[threading.Barrier], Any]) -> list[Any]:
    """Run the actions in threads, each given a barrier that releases them all at once;
    returns each one's result or the exception it raised."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int, action: Callable[[threading.Barrier], Any]) -> None:
        try:
            results[index] = action(barrier)
        except Exception as exc:  # the test inspects it
            results[index] = exc

    threads = [threading.Thread(target=run, args=(i, action)) for i, action in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a transaction hung"
    return results


def as_user(database: Database, tenant: uuid.UUID, user: uuid.UUID, query: str, *params: Any):
    """A transaction of `user` in `tenant` (its own pooled connection): opened, then at the
    barrier the statement, then HOLD seconds before the commit. Returns the SQLSTATE it
    failed with, or None."""

    def action(barrier: threading.Barrier) -> str | None:
        try:
            with database.transaction(Context(tenant, user, "user")) as conn:
                barrier.wait(timeout=30)
                conn.execute(query, params)
                time.sleep(HOLD)
        except psycopg.Error as exc:
            return exc.sqlstate
        return None

    return action


# -- 1. a tenant keeps an owner -------------------------------------------------------------


def add_owner(owner: Owner, tenant: uuid.UUID) -> uuid.UUID:
    """A second owner of `tenant`, made by the database owner."""
    row = owner.execute(
        "INSERT INTO core.users (email, name) VALUES (%s, 'Second owner') RETURNING user_id",
        (f"owner-{uuid.uuid4().hex[:10]}@tenantry.test",),
    ).fetchone()
    assert row is not None
    owner.execute(
        "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, 'owner')", (tenant, row["user_id"])
    )
    return row["user_id"]


def owners(owner: Owner, tenant: uuid.UUID | str) -> int:
    row = owner.execute(
        "SELECT count(*) AS n FROM core.memberships WHERE tenant_id = %s AND role = 'owner'", (tenant,)
    ).fetchone()
    assert row is not None
    return row["n"]


DEMOTE = "SELECT api.set_member_role(%s, %s, 'admin')"
REMOVE = "SELECT api.remove_member(%s, %s)"

#: (what A does, to whom), (what B does, to whom): "a" and "b" name the two owners
VARIANTS = {
    "demote/demote": ((DEMOTE, "b"), (DEMOTE, "a")),
    "remove/remove": ((REMOVE, "b"), (REMOVE, "a")),
    "leave/leave": ((REMOVE, "a"), (REMOVE, "b")),
    "leave/demote": ((REMOVE, "a"), (DEMOTE, "b")),  # A leaves while B steps down
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_owners_changing_at_once_leave_the_tenant_an_owner(database, new_tenant, owner, variant):
    (query_a, target_a), (query_b, target_b) = VARIANTS[variant]
    for _ in range(5):
        tenant = new_tenant()
        users = {"a": OWNERS[tenant], "b": add_owner(owner, tenant)}
        outcomes = together(
            as_user(database, tenant, users["a"], query_a, tenant, users[target_a]),
            as_user(database, tenant, users["b"], query_b, tenant, users[target_b]),
        )
        assert owners(owner, tenant) >= 1, f"{variant}: the tenant has no owner ({outcomes})"
        assert sorted(outcomes, key=str) == [None, "TA040"], outcomes  # one wins, the other is last_owner


def member_headers(http: httpx.Client, owner: Owner, sign_up, tenant_id: str, role: str) -> dict:
    """A new user made `role` of the tenant (by the database owner) and logged in there."""
    user = sign_up()
    owner.execute(
        "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, %s)", (tenant_id, user.user_id, role)
    )
    switched = http.post("/v1/auth/switch-tenant", headers=user.headers, json={"tenant_id": tenant_id})
    assert switched.status_code == 200, switched.text
    return bearer(switched.json()["access_token"]) | {"X-User": user.user_id}


def over_http(api_url: str, method: str, path: str, headers: dict, **kwargs: Any):
    """A request on a client (connection) of its own, sent at the barrier."""

    def action(barrier: threading.Barrier) -> httpx.Response:
        with httpx.Client(base_url=api_url, timeout=30) as client:
            client.get("/health")  # connect first: the barrier then releases only the requests
            barrier.wait(timeout=30)
            return client.request(method, path, headers=headers, **kwargs)

    return action


def test_two_owners_leaving_at_once_over_http_leave_an_owner(api_url, http, sign_up, owner):
    for _ in range(5):
        account = sign_up()
        second = member_headers(http, owner, sign_up, account.tenant_id, "owner")
        second_id = second.pop("X-User")
        answers = together(
            over_http(api_url, "DELETE", f"/v1/members/{account.user_id}", account.headers),
            over_http(api_url, "DELETE", f"/v1/members/{second_id}", second),
        )
        assert owners(owner, account.tenant_id) == 1, [a.text for a in answers]
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 409], [a.text for a in answers]
        assert [a.json()["code"] for a in answers if a.status_code == 409] == ["last_owner"]


# -- 2. no live task in a deleted project ------------------------------------------------------


def live_tasks_in_deleted_projects(owner: Owner, tenant: uuid.UUID | str) -> list[dict]:
    return owner.execute(
        "SELECT t.task_id, t.project_id FROM core.tasks AS t"
        " JOIN core.projects AS p ON p.tenant_id = t.tenant_id AND p.project_id = t.project_id"
        " WHERE t.tenant_id = %s AND t.deleted_at IS NULL AND p.deleted_at IS NOT NULL",
        (tenant,),
    ).fetchall()


def test_a_task_created_while_its_project_is_deleted_does_not_stay_live(database, api_pool, new_tenant, owner):
    tenant = new_tenant()
    actor = OWNERS[tenant]
    refused = 0
    for i in range(10):
        project = one(api_pool, tenant, "create_project", f"Doomed {i}")["project_id"]
        delete, create = together(
            as_user(database, tenant, actor, "SELECT api.delete_project(%s, %s)", tenant, project),
            as_user(database, tenant, actor, "SELECT api.create_task(%s, %s, 'Late')", tenant, project),
        )
        assert delete is None
        assert create in (None, "P0002", "TN010"), create  # refused, or made first and deleted with the project
        refused += create is not None
        assert live_tasks_in_deleted_projects(owner, tenant) == []
    print(f"creates refused: {refused} of 10 (the others came first and were deleted with the project)")


def test_a_task_moved_while_its_new_project_is_deleted_does_not_stay_live(database, api_pool, new_tenant, owner):
    tenant = new_tenant()
    actor = OWNERS[tenant]
    home = one(api_pool, tenant, "create_project", "Home")["project_id"]
    for i in range(10):
        project = one(api_pool, tenant, "create_project", f"Doomed {i}")["project_id"]
        task = one(api_pool, tenant, "create_task", home, f"Mover {i}")["task_id"]
        delete, move = together(
            as_user(database, tenant, actor, "SELECT api.delete_project(%s, %s)", tenant, project),
            as_user(
                database,
                tenant,
                actor,
                "SELECT api.update_task(%s, %s, %s)",
                tenant,
                task,
                Jsonb({"project_id": str(project)}),
            ),
        )
        assert delete is None
        assert move in (None, "P0002", "TN010"), move
        assert live_tasks_in_deleted_projects(owner, tenant) == []


def test_a_task_created_over_http_while_its_project_is_deleted_does_not_stay_live(api_url, http, sign_up, owner):
    account = sign_up()
    for i in range(10):
        created = http.post("/v1/projects", headers=account.headers, json={"name": f"Doomed {i}"})
        project = created.json()["project_id"]
        delete, create = together(
            over_http(api_url, "DELETE", f"/v1/projects/{project}", account.headers),
            over_http(api_url, "POST", "/v1/tasks", account.headers, json={"project_id": project, "title": "Late"}),
        )
        assert delete.status_code == 200, delete.text
        assert create.status_code in (201, 404, 409), create.text
        if create.status_code != 201:
            assert create.json()["code"] in ("not_found", "project_deleted")
        assert live_tasks_in_deleted_projects(owner, account.tenant_id) == []

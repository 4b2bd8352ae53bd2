"""Tenant isolation over HTTP, as a property: random sequences of API calls by several
credentials (three tenants' user tokens and one tenant's API key) on ids drawn from ALL
tenants' objects. Whatever the sequence, a credential never reads or changes another
tenant's data: a foreign id is 404 exactly like an unknown one, lists hold only the
caller's ids, and a model of each tenant's objects always equals what its lists return.

Each example gets fresh tenants, made cheaply: a platform administrator creates them
(POST /v1/admin/tenants) for two long-lived users, who switch into them for tokens
(POST /v1/auth/switch-tenant). Tenants A and B share an owner, so isolation cannot come
from the user: it must come from the tenant the credential is for.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import bearer

NAMES = ["alpha", "Alpha", "beta", "BETA", "gamma"]
STATUSES = ["todo", "in_progress", "done", "cancelled"]
#: credential index -> tenant index: A's user token, A's API key, B's user token, C's user token
CREDENTIAL_TENANT = [0, 0, 1, 2]


@dataclass
class World:
    admin: dict[str, str]
    owners: list[tuple[str, dict[str, str]]]  # (user id, headers in their own tenant)


@pytest.fixture(scope="module")
def world(http, sign_up, owner_url) -> World:
    import psycopg

    admin = sign_up()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (admin.user_id,))
    login = http.post("/v1/auth/login", json={"email": admin.email, "password": admin.password})
    assert login.status_code == 200, login.text
    users = [sign_up(), sign_up()]
    return World(bearer(login.json()["access_token"]), [(u.user_id, u.headers) for u in users])


def fresh_credentials(http, world: World) -> list[dict[str, str]]:
    """Tenants A and B (owned by user 0) and C (user 1); A's user token and API key, B's, C's."""
    tokens = []
    for owner_index in (0, 0, 1):
        user_id, headers = world.owners[owner_index]
        created = http.post(
            "/v1/admin/tenants",
            headers=world.admin,
            json={
                "slug": f"p-{uuid.uuid4().hex[:16]}",
                "name": "Property tenant",
                "plan": "enterprise",
                "owner_user_id": user_id,
            },
        )
        assert created.status_code == 201, created.text
        switched = http.post("/v1/auth/switch-tenant", headers=headers, json={"tenant_id": created.json()["tenant_id"]})
        assert switched.status_code == 200, switched.text
        tokens.append(bearer(switched.json()["access_token"]))
    key = http.post(
        "/v1/api-keys", headers=tokens[0], json={"name": "prop", "scopes": ["projects:read", "projects:write"]}
    )
    assert key.status_code == 201, key.text
    return [tokens[0], {"X-API-Key": key.json()["key"]}, tokens[1], tokens[2]]


@dataclass
class Model:
    projects: dict[str, dict] = field(default_factory=dict)  # id -> tenant, name, description, deleted
    tasks: dict[str, dict] = field(default_factory=dict)  # id -> tenant, project, title, status, deleted
    counter: int = 0

    def own_live_project(self, tenant: int, pid: str) -> bool:
        p = self.projects.get(pid)
        return p is not None and p["tenant"] == tenant and not p["deleted"]

    def own_live_task(self, tenant: int, tid: str) -> bool:
        t = self.tasks.get(tid)
        return t is not None and t["tenant"] == tenant and not t["deleted"]

    def name_taken(self, tenant: int, name: str, besides: str | None = None) -> bool:
        return any(
            p["tenant"] == tenant and not p["deleted"] and p["name"].lower() == name.lower()
            for pid, p in self.projects.items()
            if pid != besides
        )

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"


def pick(objects: dict[str, dict], tenant: int, choice: tuple[bool, int]) -> str:
    """An id: of the caller's own tenant (live or deleted) when `own`, else of any tenant
    or an unknown one; `own` only steers the draw towards ids that exist for the caller."""
    own, index = choice
    pool = [oid for oid, o in objects.items() if o["tenant"] == tenant] if own else list(objects)
    slot = index % (len(pool) + (0 if own and pool else 1))
    if slot == len(pool):
        return str(uuid.uuid4())
    if objects[pool[slot]]["tenant"] != tenant:
        event("a foreign id was used")
    return pool[slot]


actor = st.integers(0, len(CREDENTIAL_TENANT) - 1)
target = st.tuples(st.booleans(), st.integers(0, 10_000))
create_project = st.tuples(st.just("create_project"), actor, st.sampled_from(NAMES))
create_task = st.tuples(st.just("create_task"), actor, target)
operations = st.one_of(
    create_project,
    create_project,
    create_task,
    create_task,
    st.tuples(st.just("get_project"), actor, target),
    st.tuples(st.just("patch_project"), actor, target, st.none() | st.sampled_from(NAMES)),
    st.tuples(st.just("delete_project"), actor, target),
    st.tuples(st.just("get_task"), actor, target),
    st.tuples(st.just("patch_task"), actor, target, st.sampled_from(STATUSES)),
    st.tuples(st.just("move_task"), actor, target, target),
    st.tuples(st.just("delete_task"), actor, target),
    st.tuples(st.just("list"), actor, st.booleans()),
)


def expect_not_found(resp) -> None:
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["code"] == "not_found", resp.text


def check_project(body: dict, model: dict) -> None:
    assert (body["name"], body["description"]) == (model["name"], model["description"]), (body, model)
    assert (body["deleted_at"] is not None) == model["deleted"], (body, model)


def check_task(body: dict, model: dict) -> None:
    assert (body["project_id"], body["title"], body["status"]) == (model["project"], model["title"], model["status"]), (
        body,
        model,
    )
    assert (body["deleted_at"] is not None) == model["deleted"], (body, model)


def check_lists(http, headers: dict[str, str], tenant: int, model: Model, include_deleted: bool) -> None:
    """What the credential's lists return is exactly the model of its tenant."""
    for path, objects, key, check in (
        ("/v1/projects", model.projects, "project_id", check_project),
        ("/v1/tasks", model.tasks, "task_id", check_task),
    ):
        resp = http.get(path, headers=headers, params={"limit": "200", "include_deleted": str(include_deleted).lower()})
        assert resp.status_code == 200, resp.text
        page = resp.json()
        assert page["next_cursor"] is None
        listed = [item[key] for item in page["items"]]
        assert len(listed) == len(set(listed))
        expected = [
            oid for oid, o in objects.items() if o["tenant"] == tenant and (include_deleted or not o["deleted"])
        ]
        assert listed == expected, (path, listed, expected)  # also the order: oldest first
        for item in page["items"]:
            check(item, objects[item[key]])


def apply(http, credentials, model: Model, op: tuple) -> None:
    kind, who = op[0], op[1]
    headers, tenant = credentials[who], CREDENTIAL_TENANT[who]

    if kind == "create_project":
        name = op[2]
        resp = http.post("/v1/projects", headers=headers, json={"name": name, "description": "d"})
        if model.name_taken(tenant, name):
            assert resp.status_code == 409 and resp.json()["code"] == "duplicate_name", resp.text
        else:
            assert resp.status_code == 201, resp.text
            model.projects[resp.json()["project_id"]] = {
                "tenant": tenant,
                "name": name,
                "description": "d",
                "deleted": False,
            }
    elif kind == "get_project":
        pid = pick(model.projects, tenant, op[2])
        resp = http.get(f"/v1/projects/{pid}", headers=headers)
        if model.own_live_project(tenant, pid):
            assert resp.status_code == 200, resp.text
            check_project(resp.json(), model.projects[pid])
        else:
            expect_not_found(resp)
    elif kind == "patch_project":
        pid, name = pick(model.projects, tenant, op[2]), op[3]
        change = {"name": name} if name is not None else {"description": model.fresh("desc-")}
        resp = http.patch(f"/v1/projects/{pid}", headers=headers, json=change)
        if not model.own_live_project(tenant, pid):
            expect_not_found(resp)
        elif name is not None and model.name_taken(tenant, name, besides=pid):
            assert resp.status_code == 409 and resp.json()["code"] == "duplicate_name", resp.text
        else:
            assert resp.status_code == 200, resp.text
            model.projects[pid].update(change)
            check_project(resp.json(), model.projects[pid])
    elif kind == "delete_project":
        pid = pick(model.projects, tenant, op[2])
        resp = http.delete(f"/v1/projects/{pid}", headers=headers)
        if model.own_live_project(tenant, pid):
            assert resp.status_code == 200, resp.text
            model.projects[pid]["deleted"] = True
            for task in model.tasks.values():
                if task["project"] == pid:
                    task["deleted"] = True
        else:
            expect_not_found(resp)
    elif kind == "create_task":
        pid = pick(model.projects, tenant, op[2])
        title = model.fresh("task-")
        resp = http.post("/v1/tasks", headers=headers, json={"project_id": pid, "title": title})
        if model.own_live_project(tenant, pid):
            assert resp.status_code == 201, resp.text
            model.tasks[resp.json()["task_id"]] = {
                "tenant": tenant,
                "project": pid,
                "title": title,
                "status": "todo",
                "deleted": False,
            }
        else:
            expect_not_found(resp)
    elif kind == "get_task":
        tid = pick(model.tasks, tenant, op[2])
        resp = http.get(f"/v1/tasks/{tid}", headers=headers)
        if model.own_live_task(tenant, tid):
            assert resp.status_code == 200, resp.text
            check_task(resp.json(), model.tasks[tid])
        else:
            expect_not_found(resp)
    elif kind == "patch_task":
        tid, status = pick(model.tasks, tenant, op[2]), op[3]
        resp = http.patch(f"/v1/tasks/{tid}", headers=headers, json={"status": status})
        if model.own_live_task(tenant, tid):
            assert resp.status_code == 200, resp.text
            model.tasks[tid]["status"] = status
            check_task(resp.json(), model.tasks[tid])
        else:
            expect_not_found(resp)
    elif kind == "move_task":
        tid, pid = pick(model.tasks, tenant, op[2]), pick(model.projects, tenant, op[3])
        resp = http.patch(f"/v1/tasks/{tid}", headers=headers, json={"project_id": pid})
        if model.own_live_task(tenant, tid) and model.own_live_project(tenant, pid):
            assert resp.status_code == 200, resp.text
            model.tasks[tid]["project"] = pid
            check_task(resp.json(), model.tasks[tid])
        else:
            expect_not_found(resp)
    elif kind == "delete_task":
        tid = pick(model.tasks, tenant, op[2])
        resp = http.delete(f"/v1/tasks/{tid}", headers=headers)
        if model.own_live_task(tenant, tid):
            assert resp.status_code == 200, resp.text
            model.tasks[tid]["deleted"] = True
        else:
            expect_not_found(resp)
    elif kind == "list":
        check_lists(http, headers, tenant, model, include_deleted=op[2])
        return
    else:  # pragma: no cover
        raise AssertionError(kind)
    event(f"{kind} -> {resp.status_code}")  # --hypothesis-show-statistics: both outcomes happen


#: per tenant: how many projects (1-2) and tasks (0-3) exist before the random calls
layouts = st.tuples(*[st.tuples(st.integers(1, 2), st.integers(0, 3)) for _ in range(3)])


def prelude(layout) -> list[tuple]:
    ops: list[tuple] = []
    for tenant, (projects, tasks) in enumerate(layout):
        who = CREDENTIAL_TENANT.index(tenant)
        ops += [("create_project", who, ["alpha", "beta"][i]) for i in range(projects)]
        ops += [("create_task", who, (True, i)) for i in range(tasks)]
    return ops


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts, ops=st.lists(operations, min_size=10, max_size=30))
def test_a_credential_only_ever_sees_its_own_tenant(http, world, layout, ops):
    credentials = fresh_credentials(http, world)
    model = Model()
    for op in prelude(layout) + ops:
        apply(http, credentials, model, op)
    for who, headers in enumerate(credentials):
        for include_deleted in (False, True):
            check_lists(http, headers, CREDENTIAL_TENANT[who], model, include_deleted)

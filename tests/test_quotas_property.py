"""Quotas under random interleavings (hypothesis): creates, soft deletes, restores, hard
deletes (members) and plan changes, on one tenant. After every step the counters equal
the real counts, and a resource is over its limit only after a limit came down below
its usage (a downgrade) -- and then no create of it succeeds until it is under again.
"""

from __future__ import annotations

import uuid

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import TEST_PASSWORD_HASH, one
from tests.test_quotas import COUNTED, counters, real_counts

PLANS = ("free", "pro")
#: small limits for the walk, per plan (through overrides would hide the plan rule, so
#: a scratch plan pair with tiny limits is seeded by the test)
SMALL = {"free": {"projects": 2, "tasks": 3, "members": 2}, "pro": {"projects": 4, "tasks": 6, "members": 3}}

steps = st.lists(
    st.one_of(
        st.tuples(st.just("create_project"), st.just(0)),
        st.tuples(st.just("delete_project"), st.integers(0, 5)),
        st.tuples(st.just("restore_project"), st.integers(0, 5)),
        st.tuples(st.just("create_task"), st.integers(0, 5)),
        st.tuples(st.just("delete_task"), st.integers(0, 8)),
        st.tuples(st.just("restore_task"), st.integers(0, 8)),
        st.tuples(st.just("add_member"), st.just(0)),
        st.tuples(st.just("remove_member"), st.integers(0, 3)),
        st.tuples(st.just("plan"), st.sampled_from(PLANS)),
    ),
    min_size=5,
    max_size=30,
)


def limits(owner, tenant) -> dict[str, object]:
    rows = owner.execute(
        "SELECT resource, max_value FROM core.quota_counters WHERE tenant_id = %s", (tenant,)
    ).fetchall()
    return {row["resource"]: row["max_value"] for row in rows}


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(walk=steps)
def test_counters_stay_exact_and_limits_hold_under_any_interleaving(walk, api_pool, owner, new_tenant):
    tag = uuid.uuid4().hex[:6]
    plans = {name: f"q{name}_{tag}" for name in PLANS}
    for name, plan in plans.items():
        owner.execute(
            "INSERT INTO core.plans (plan_id, name, price_cents, limits, features)"
            " VALUES (%s, %s, %s, %s, '{api_keys}')",
            (plan, plan, 0 if name == "free" else 100, psycopg.types.json.Jsonb(SMALL[name])),
        )
    tenant = new_tenant(plan="free")
    owner.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (plans["free"], tenant))
    projects: list[uuid.UUID] = []
    tasks: list[uuid.UUID] = []
    members: list[uuid.UUID] = []
    # resources a downgrade left over their limit: creates must fail until under again
    over: set[str] = set()
    try:
        for action, arg in walk:
            before = counters(owner, tenant)
            resource = None
            try:
                if action == "create_project":
                    resource = "projects"
                    projects.append(one(api_pool, tenant, "create_project", f"p{len(projects)}")["project_id"])
                elif action == "create_task" and projects:
                    resource = "tasks"
                    project = projects[arg % len(projects)]
                    tasks.append(one(api_pool, tenant, "create_task", project, "t")["task_id"])
                elif action == "add_member":
                    resource = "members"
                    user = owner.execute(
                        "INSERT INTO core.users (email, name, password_hash) VALUES (%s, 'M', %s) RETURNING user_id",
                        (f"m-{uuid.uuid4().hex[:10]}@tenantry.test", TEST_PASSWORD_HASH),
                    ).fetchone()["user_id"]
                    owner.execute(
                        "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, 'viewer')",
                        (tenant, user),
                    )
                    members.append(user)
                elif action == "remove_member" and members:
                    user = members.pop(arg % len(members))
                    owner.execute("DELETE FROM core.memberships WHERE tenant_id = %s AND user_id = %s", (tenant, user))
                elif action in ("delete_project", "restore_project") and projects:
                    resource = "projects" if action == "restore_project" else None
                    one(api_pool, tenant, action, projects[arg % len(projects)])
                elif action in ("delete_task", "restore_task") and tasks:
                    resource = "tasks" if action == "restore_task" else None
                    one(api_pool, tenant, action, tasks[arg % len(tasks)])
                elif action == "plan":
                    owner.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (plans[arg], tenant))
                    now, cap = counters(owner, tenant), limits(owner, tenant)
                    over = {r for r in ("projects", "tasks", "members") if cap[r] is not None and now[r] > cap[r]}
                else:
                    continue
                grew = {r for r in COUNTED if counters(owner, tenant)[r] > before[r]}
                # no create succeeded while its resource was over quota
                assert not (grew & over), (action, grew, over)
            except psycopg.Error as exc:
                # refusals: over the limit, a restore into a deleted project, a duplicate
                # name on restore; nothing else
                assert exc.sqlstate in ("TQ001", "TN010", "23505", "P0002"), exc
                if exc.sqlstate == "TQ001":
                    assert resource is not None
            now, cap = counters(owner, tenant), limits(owner, tenant)
            assert now == real_counts(owner, tenant)
            over = {r for r in over if cap[r] is not None and now[r] > cap[r]}
            for r in ("projects", "tasks", "members"):
                assert cap[r] is None or now[r] <= cap[r] or r in over, (r, now[r], cap[r], over)
    finally:
        owner.execute("UPDATE core.tenants SET plan_id = 'free' WHERE tenant_id = %s", (tenant,))
        owner.execute("DELETE FROM core.plans WHERE plan_id = ANY(%s)", (list(plans.values()),))

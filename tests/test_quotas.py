"""Quotas in the database (sql/repeatable/070_quotas.sql): counted limits enforced by
triggers, slots given back and taken again, the downgrade rule, overrides, plan features,
metered reservations, reconciliation, parallel inserts at the edge of a limit, and the
HTTP answers (403 quota_exceeded with the details).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from db.context import Context, transaction
from db.dsn import role_url
from db.settings import API_ROLE
from tests.helpers import OWNERS, TEST_PASSWORD_HASH, bearer, call, one, owner_transaction, problem

COUNTED = ("api_keys", "members", "projects", "storage_bytes", "tasks")


# -- helpers ---------------------------------------------------------------------------------


def counters(owner, tenant) -> dict[str, Decimal]:
    rows = owner.execute(
        "SELECT resource, used FROM core.quota_counters WHERE tenant_id = %s AND resource = ANY(%s)",
        (tenant, list(COUNTED)),
    ).fetchall()
    return {row["resource"]: row["used"] for row in rows}


def real_counts(owner, tenant) -> dict[str, Decimal]:
    return {
        resource: owner.execute("SELECT core.count_quota_usage(%s, %s) AS n", (tenant, resource)).fetchone()["n"]
        for resource in COUNTED
    }


def assert_exact(owner, tenant) -> None:
    assert counters(owner, tenant) == real_counts(owner, tenant)


def refused(action: Callable[[], Any], sqlstate: str = "TQ001") -> psycopg.Error:
    with pytest.raises(psycopg.Error) as exc:
        action()
    assert exc.value.sqlstate == sqlstate, exc.value
    return exc.value


def has(found: dict, expected: dict) -> bool:
    """`found` holds every key of `expected` with its value."""
    return {key: found.get(key) for key in expected} == expected


def details(error: psycopg.Error) -> dict[str, Any]:
    return json.loads(error.diag.message_detail or "null")


def project(api_pool, tenant, name: str | None = None, description: str = "") -> dict:
    return one(api_pool, tenant, "create_project", name or f"p-{uuid.uuid4().hex[:8]}", description)


def add_member(owner, tenant) -> uuid.UUID:
    user = owner.execute(
        "INSERT INTO core.users (email, name, password_hash) VALUES (%s, 'M', %s) RETURNING user_id",
        (f"m-{uuid.uuid4().hex[:10]}@tenantry.test", TEST_PASSWORD_HASH),
    ).fetchone()["user_id"]
    owner.execute("INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, 'member')", (tenant, user))
    return user


def add_key(owner, tenant) -> uuid.UUID:
    return owner.execute(
        "INSERT INTO core.api_keys (tenant_id, prefix, key_hash, name, scopes, created_by, user_id)"
        " VALUES (%s, %s, %s, 'k', '{tenant:read}', %s, %s) RETURNING key_id",
        (tenant, uuid.uuid4().hex[:12], uuid.uuid4().bytes * 2, OWNERS[tenant], OWNERS[tenant]),
    ).fetchone()["key_id"]


def override(as_admin, tenant, resource: str, limit) -> None:
    with as_admin() as conn:
        conn.execute("SELECT admin.set_quota_override(%s, %s, %s)", (tenant, resource, limit))


def report(api_pool, tenant) -> dict[str, dict]:
    got = one(api_pool, tenant, "get_quotas")["get_quotas"]
    return {item["resource"]: item for item in got["resources"]} | {"_": got}


# -- counted limits ----------------------------------------------------------------------------


def test_a_free_tenant_gets_three_projects_and_a_clear_refusal(api_pool, owner, new_tenant):
    tenant = new_tenant(plan="free")
    for _ in range(3):
        project(api_pool, tenant)
    error = refused(lambda: project(api_pool, tenant))
    assert "quota exceeded" in error.diag.message_primary
    assert details(error) == {
        "resource": "projects",
        "current": 3,
        "limit": 3,
        "requested": 1,
        "plan": "free",
        "upgrade_plan": "pro",
        "upgrade_limit": 100,
    }
    assert "Pro plan allows 100" in error.diag.message_hint
    assert owner.execute("SELECT count(*) AS n FROM core.projects WHERE tenant_id = %s", (tenant,)).fetchone()["n"] == 3
    assert_exact(owner, tenant)


def test_soft_delete_restore_and_hard_delete_move_the_slot(api_pool, owner, new_tenant):
    tenant = new_tenant(plan="free")
    first, second, _ = (project(api_pool, tenant) for _ in range(3))
    one(api_pool, tenant, "delete_project", first["project_id"])
    assert counters(owner, tenant)["projects"] == 2
    fourth = project(api_pool, tenant)  # the deleted one's slot
    # restoring takes a slot again: refused at the limit, nothing restored
    refused(lambda: one(api_pool, tenant, "restore_project", first["project_id"]))
    one(api_pool, tenant, "delete_project", second["project_id"])
    restored = one(api_pool, tenant, "restore_project", first["project_id"])
    assert restored["deleted_at"] is None
    assert one(api_pool, tenant, "restore_project", first["project_id"])["deleted_at"] is None  # live: unchanged
    assert_exact(owner, tenant)
    # a hard delete (only the owner may) gives the slot back
    owner.execute("DELETE FROM core.projects WHERE tenant_id = %s AND project_id = %s", (tenant, fourth["project_id"]))
    assert counters(owner, tenant)["projects"] == 2
    project(api_pool, tenant)
    assert_exact(owner, tenant)


def test_tasks_follow_their_project_and_restores_are_checked(api_pool, owner, new_tenant, as_admin):
    tenant = new_tenant()
    override(as_admin, tenant, "tasks", 3)
    doomed, other = project(api_pool, tenant), project(api_pool, tenant)
    tasks = [one(api_pool, tenant, "create_task", doomed["project_id"], f"t{i}") for i in range(2)]
    one(api_pool, tenant, "create_task", other["project_id"], "o")
    refused(lambda: one(api_pool, tenant, "create_task", other["project_id"], "too many"))
    one(api_pool, tenant, "delete_project", doomed["project_id"])  # its tasks go with it
    assert counters(owner, tenant)["tasks"] == 1
    # a task of a deleted project cannot come back alone
    refused(lambda: one(api_pool, tenant, "restore_task", tasks[0]["task_id"]), "TN010")
    filler = one(api_pool, tenant, "create_task", other["project_id"], "filler")
    # the project's restore brings its 2 tasks: 4 > 3, so nothing is restored
    error = refused(lambda: one(api_pool, tenant, "restore_project", doomed["project_id"]))
    assert details(error)["resource"] == "tasks"
    one(api_pool, tenant, "delete_task", filler["task_id"])
    one(api_pool, tenant, "restore_project", doomed["project_id"])
    live = call(api_pool, tenant, "list_tasks", doomed["project_id"])
    assert {t["task_id"] for t in live} == {t["task_id"] for t in tasks}
    one(api_pool, tenant, "delete_task", tasks[0]["task_id"])
    assert one(api_pool, tenant, "restore_task", tasks[0]["task_id"])["deleted_at"] is None
    assert_exact(owner, tenant)


def test_members_and_api_keys_are_counted(api_pool, owner, new_tenant):
    tenant = new_tenant(plan="free")  # 3 members (the owner is one), 5 keys
    extra = [add_member(owner, tenant) for _ in range(2)]
    assert details(refused(lambda: add_member(owner, tenant)))["resource"] == "members"
    owner.execute("DELETE FROM core.memberships WHERE tenant_id = %s AND user_id = %s", (tenant, extra[0]))
    add_member(owner, tenant)
    keys = [add_key(owner, tenant) for _ in range(5)]
    assert details(refused(lambda: add_key(owner, tenant)))["resource"] == "api_keys"
    one(api_pool, tenant, "revoke_api_key", keys[0])  # a revoked key frees its slot
    add_key(owner, tenant)
    assert_exact(owner, tenant)


def test_storage_bytes_count_live_text(api_pool, owner, new_tenant, as_admin):
    tenant = new_tenant()
    base = counters(owner, tenant)["storage_bytes"]
    override(as_admin, tenant, "storage_bytes", 100)
    p = project(api_pool, tenant, "abc", "é" * 10)  # 3 + 20 bytes
    assert counters(owner, tenant)["storage_bytes"] == base + 23
    error = refused(
        lambda: one(api_pool, tenant, "update_project", p["project_id"], json.dumps({"description": "x" * 98}))
    )
    assert details(error)["resource"] == "storage_bytes"
    one(api_pool, tenant, "update_project", p["project_id"], json.dumps({"description": "x" * 90}))
    one(api_pool, tenant, "delete_project", p["project_id"])
    assert counters(owner, tenant)["storage_bytes"] == base
    assert_exact(owner, tenant)


# -- plans, downgrades, overrides, features -----------------------------------------------------


def test_a_downgrade_is_allowed_and_blocks_creates_until_under_the_limit(api_pool, owner, new_tenant, as_admin):
    tenant = new_tenant(plan="pro")
    made = [project(api_pool, tenant) for _ in range(5)]
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_plan(%s, 'free')", (tenant,))
        action = conn.execute(
            "SELECT action, details FROM admin.list_tenant_actions(%s) ORDER BY at DESC LIMIT 1", (tenant,)
        ).fetchone()
    assert action == ("set_plan", {"plan": "free"})
    seen = report(api_pool, tenant)["projects"]
    assert (seen["used"], seen["limit"], seen["over_limit"], seen["warning"], seen["remaining"]) == (
        5,
        3,
        True,
        True,
        0,
    )
    assert details(refused(lambda: project(api_pool, tenant)))["current"] == 5
    for p in made[:2]:
        one(api_pool, tenant, "delete_project", p["project_id"])  # deletes always work
    refused(lambda: project(api_pool, tenant))  # 3 of 3: still no room
    one(api_pool, tenant, "delete_project", made[2]["project_id"])
    project(api_pool, tenant)
    assert not report(api_pool, tenant)["projects"]["over_limit"]
    assert_exact(owner, tenant)


def test_overrides_replace_the_plan_limit_and_only_admins_set_them(api_pool, owner, new_tenant, as_admin, database):
    tenant = new_tenant(plan="free")
    override(as_admin, tenant, "projects", 1)
    project(api_pool, tenant)
    assert details(refused(lambda: project(api_pool, tenant)))["limit"] == 1
    assert report(api_pool, tenant)["projects"]["source"] == "override"
    override(as_admin, tenant, "projects", None)  # unlimited
    for _ in range(4):
        project(api_pool, tenant)
    with as_admin() as conn:
        conn.execute("SELECT admin.clear_quota_override(%s, 'projects')", (tenant,))
    assert has(report(api_pool, tenant)["projects"], {"limit": 3, "source": "plan", "over_limit": True})
    refused(lambda: override(as_admin, tenant, "nonsense", 1), "23503")
    refused(lambda: override(as_admin, tenant, "projects", -1), "22023")
    # a tenant cannot raise its own limit: the api role may not UPDATE max_value
    with pytest.raises(psycopg.Error) as exc, owner_transaction(api_pool, tenant) as conn:
        conn.execute("UPDATE core.quota_counters SET max_value = NULL WHERE tenant_id = %s", (tenant,))
    assert exc.value.sqlstate == "42501"


def test_plan_features_are_enforced(owner, new_tenant):
    tenant = new_tenant(plan="pro")
    owner.execute("SELECT core.assert_plan_feature(%s, 'webhooks')", (tenant,))
    error = refused(lambda: owner.execute("SELECT core.assert_plan_feature(%s, 'sso')", (tenant,)), "TQ002")
    assert details(error) == {"feature": "sso", "plan": "pro", "upgrade_plan": "enterprise"}
    # the real use: API keys need the plan feature 'api_keys'
    plan = f"nokeys_{uuid.uuid4().hex[:6]}"
    owner.execute("INSERT INTO core.plans (plan_id, name, price_cents) VALUES (%s, 'No keys', 0)", (plan,))
    try:
        owner.execute("UPDATE core.tenants SET plan_id = %s WHERE tenant_id = %s", (plan, tenant))
        assert details(refused(lambda: add_key(owner, tenant), "TQ002"))["feature"] == "api_keys"
    finally:
        owner.execute("UPDATE core.tenants SET plan_id = 'pro' WHERE tenant_id = %s", (tenant,))
        owner.execute("DELETE FROM core.plans WHERE plan_id = %s", (plan,))


# -- metered: reservations and consumption ------------------------------------------------------


def test_reservations_are_idempotent_and_settle_once(api_pool, owner, new_tenant, as_admin):
    tenant = new_tenant(plan="free")  # overage blocked
    override(as_admin, tenant, "tokens", 100)
    held = one(api_pool, tenant, "reserve_quota", "job-1", "tokens", 60)
    again = one(api_pool, tenant, "reserve_quota", "job-1", "tokens", 60)
    assert again == held and held["status"] == "held"
    refused(lambda: one(api_pool, tenant, "reserve_quota", "job-1", "tokens", 61), "TQ003")
    error = refused(lambda: one(api_pool, tenant, "reserve_quota", "job-2", "tokens", 41))
    assert has(details(error), {"resource": "tokens", "current": 60, "limit": 100, "requested": 41})
    one(api_pool, tenant, "reserve_quota", "job-2", "tokens", 40)
    assert has(report(api_pool, tenant)["tokens"], {"used": 0, "reserved": 100, "remaining": 0, "warning": True})
    confirmed = one(api_pool, tenant, "confirm_reservation", "job-1", 25)
    assert (confirmed["status"], confirmed["actual_units"]) == ("confirmed", 25)
    assert one(api_pool, tenant, "confirm_reservation", "job-1", 25) == confirmed  # idempotent
    refused(lambda: one(api_pool, tenant, "confirm_reservation", "job-1", 26), "TQ003")
    refused(lambda: one(api_pool, tenant, "release_reservation", "job-1"), "TQ004")
    released = one(api_pool, tenant, "release_reservation", "job-2")
    assert one(api_pool, tenant, "release_reservation", "job-2") == released
    refused(lambda: one(api_pool, tenant, "confirm_reservation", "job-2", 1), "TQ004")
    assert has(report(api_pool, tenant)["tokens"], {"used": 25, "reserved": 0, "remaining": 75})
    refused(lambda: one(api_pool, tenant, "reserve_quota", "x", "projects", 1), "22023")
    refused(lambda: one(api_pool, tenant, "confirm_reservation", "nope", 1), "P0002")


def test_expired_reservations_are_released_by_the_job(api_pool, owner, new_tenant, as_admin, database):
    tenant = new_tenant(plan="free")
    override(as_admin, tenant, "compute_minutes", 10)
    one(api_pool, tenant, "reserve_quota", "short", "compute_minutes", 10, "1 second")
    refused(lambda: one(api_pool, tenant, "reserve_quota", "more", "compute_minutes", 1))
    owner.execute(
        "UPDATE core.quota_reservations SET expires_at = now() - interval '1 second' WHERE tenant_id = %s", (tenant,)
    )
    with database.transaction(Context(role="tenantry_worker")) as conn:
        assert conn.execute("SELECT ops.expire_quota_reservations()").fetchone()[0] >= 1
    assert report(api_pool, tenant)["compute_minutes"]["reserved"] == 0
    one(api_pool, tenant, "reserve_quota", "more", "compute_minutes", 1)
    # an expired reservation's work still counts when it is confirmed
    assert one(api_pool, tenant, "confirm_reservation", "short", 4)["status"] == "confirmed"
    assert has(report(api_pool, tenant)["compute_minutes"], {"used": 4, "reserved": 1})


def test_overage_is_blocked_or_billed_by_plan_and_periods_start_over(api_pool, owner, new_tenant, as_admin):
    blocked, billed = new_tenant(plan="free"), new_tenant(plan="pro")
    for tenant in (blocked, billed):
        override(as_admin, tenant, "api_calls", 10)
        owner.execute("SELECT core.consume_metered(%s, 'api_calls', 8)", (tenant,))
    refused(lambda: owner.execute("SELECT core.consume_metered(%s, 'api_calls', 3)", (blocked,)))
    # usage that already happened (API calls flushed from Redis) is recorded even beyond a blocking limit
    owner.execute("SELECT core.consume_metered(%s, 'api_calls', 3, false)", (blocked,))
    seen = report(api_pool, blocked)["api_calls"]
    assert (seen["used"], seen["over_limit"], seen["overage"]) == (11, True, "block")
    owner.execute("SELECT core.consume_metered(%s, 'api_calls', 3)", (billed,))
    one(api_pool, billed, "reserve_quota", "big", "api_calls", 50)
    seen = report(api_pool, billed)["api_calls"]
    assert (seen["used"], seen["over_limit"], seen["overage"]) == (11, True, "bill")
    owner.execute("SELECT core.consume_metered(%s, 'not_a_quota', 5)", (blocked,))  # no metered limit: ignored
    # a counter of an earlier period starts again from zero
    owner.execute(
        # in UTC: Citus refuses a STABLE timestamptz - interval over a column in an UPDATE
        "UPDATE core.quota_counters SET period_start = ((period_start AT TIME ZONE 'UTC') - interval '1 month')"
        " AT TIME ZONE 'UTC'"
        " WHERE tenant_id = %s AND resource = 'api_calls'",
        (blocked,),
    )
    assert report(api_pool, blocked)["api_calls"]["used"] == 0
    owner.execute("SELECT core.consume_metered(%s, 'api_calls', 10)", (blocked,))
    assert report(api_pool, blocked)["api_calls"]["used"] == 10


# -- reconciliation -------------------------------------------------------------------------------


def test_reconcile_reports_and_repairs_drift(owner, owner_url, new_tenant, database, api_pool):
    tenant = new_tenant()
    project(api_pool, tenant)
    one(api_pool, tenant, "reserve_quota", "r", "tokens", 5)
    # drift: rows written with the triggers off, a counter and the held units tampered with
    # (SET LOCAL propagated: the Citus workers, where the triggers run, must see it too;
    # a placeholder setting on plain PostgreSQL)
    with psycopg.connect(owner_url) as conn, conn.transaction():
        conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        conn.execute("SET LOCAL session_replication_role = replica")
        conn.execute(
            "INSERT INTO core.projects (tenant_id, name) VALUES (%s, 'ghost'), (%s, 'ghost 2')", (tenant, tenant)
        )
        conn.execute("UPDATE core.quota_counters SET used = 7 WHERE tenant_id = %s AND resource = 'members'", (tenant,))
        conn.execute(
            "UPDATE core.quota_counters SET reserved = 0 WHERE tenant_id = %s AND resource = 'tokens'", (tenant,)
        )
    worker = Context(role="tenantry_worker")
    with database.transaction(worker) as conn:
        fixed = conn.execute("SELECT resource, was, now FROM ops.reconcile_quotas(%s) ORDER BY 1", (tenant,)).fetchall()
    storage = counters(owner, tenant)["storage_bytes"]
    assert [(r, w, n) for r, w, n in fixed if r != "storage_bytes"] == [
        ("members", 7, 1),
        ("projects", 1, 3),
        ("tokens.reserved", 0, 5),
    ]
    assert any(r == "storage_bytes" and n == storage for r, _, n in fixed)
    assert_exact(owner, tenant)
    with database.transaction(worker) as conn:
        assert conn.execute("SELECT * FROM ops.reconcile_quotas(%s)", (tenant,)).fetchall() == []
        # all tenants: runs, and finds nothing wrong with this one
        everyone = conn.execute("SELECT tenant_id FROM ops.reconcile_quotas()").fetchall()
    assert (tenant,) not in everyone


def test_counters_exist_for_every_tenant_and_the_api_role_cannot_create_them(owner, new_tenant):
    tenant = new_tenant()
    rows = owner.execute("SELECT count(*) AS n FROM core.quota_counters WHERE tenant_id = %s", (tenant,)).fetchone()
    catalog = owner.execute("SELECT count(*) AS n FROM core.quota_resources").fetchone()
    assert rows["n"] == catalog["n"] >= 8


# -- concurrency ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_pool(test_settings):
    """20 connections of the api role: one per thread."""
    pool = ConnectionPool(role_url(test_settings, API_ROLE), min_size=20, max_size=20, open=False, name="quota-race")
    pool.open(wait=True, timeout=60)
    yield pool
    pool.close()


def race(pool: ConnectionPool, tenant, statement: str, args: tuple, threads: int = 20) -> tuple[int, list[str]]:
    """Run `statement` in `threads` transactions at once; return (successes, SQLSTATEs of failures)."""
    barrier = threading.Barrier(threads)
    outcomes: list[str | None] = []
    lock = threading.Lock()

    def worker(n: int) -> None:
        try:
            with transaction(pool, Context(tenant, OWNERS[tenant], "user")) as conn:
                barrier.wait(timeout=30)
                conn.execute(statement, tuple(a.format(n=n) if isinstance(a, str) else a for a in args))
            result = None
        except psycopg.Error as exc:
            result = exc.sqlstate or "?"
        with lock:
            outcomes.append(result)

    started = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=60)
    failures = [o for o in outcomes if o is not None]
    return len(outcomes) - len(failures), failures


@pytest.mark.parametrize("round_no", range(5))
def test_parallel_creates_at_the_edge_never_pass_the_limit(round_no, wide_pool, owner, new_tenant, as_admin):
    tenant = new_tenant()
    override(as_admin, tenant, "projects", 5)
    made, failures = race(wide_pool, tenant, "SELECT api.create_project(%s, %s)", (tenant, "race {n}"))
    assert made == 5 and failures == ["TQ001"] * 15, (made, failures)
    live = owner.execute(
        "SELECT count(*) AS n FROM core.projects WHERE tenant_id = %s AND deleted_at IS NULL", (tenant,)
    ).fetchone()
    assert live["n"] == 5
    assert_exact(owner, tenant)


@pytest.mark.parametrize("round_no", range(3))
def test_parallel_reservations_at_the_edge_never_pass_the_limit(round_no, wide_pool, owner, new_tenant, as_admin):
    tenant = new_tenant(plan="free")
    override(as_admin, tenant, "tokens", 50)
    made, failures = race(wide_pool, tenant, "SELECT api.reserve_quota(%s, %s, 'tokens', 10)", (tenant, "k{n}"))
    assert made == 5 and failures == ["TQ001"] * 15, (made, failures)
    row = owner.execute(
        "SELECT reserved, (SELECT sum(units) FROM core.quota_reservations WHERE tenant_id = %s) AS held"
        " FROM core.quota_counters WHERE tenant_id = %s AND resource = 'tokens'",
        (tenant, tenant),
    ).fetchone()
    assert row["reserved"] == row["held"] == 50


# -- HTTP ---------------------------------------------------------------------------------------------


def test_http_quota_problem_quotas_and_restore(http, sign_up, owner_url):
    acct = sign_up(plan="free")
    h = acct.headers
    made = [http.post("/v1/projects", headers=h, json={"name": f"P{i}"}) for i in range(3)]
    assert all(r.status_code == 201 for r in made), [r.text for r in made]
    body = problem(http.post("/v1/projects", headers=h, json={"name": "P4"}), 403, "quota_exceeded")
    assert has(body, {"resource": "projects", "current": 3, "limit": 3, "plan": "free", "upgrade_plan": "pro"})
    assert "hint" in body
    quotas = http.get("/v1/quotas", headers=h)
    assert quotas.status_code == 200, quotas.text
    got = quotas.json()
    assert got["plan"] == "free" and "api_keys" in got["features"]
    by = {item["resource"]: item for item in got["resources"]}
    assert has(by["projects"], {"used": 3, "limit": 3, "remaining": 0, "warning": True, "over_limit": False})
    assert by["tasks"]["warning"] is False and by["tokens"]["period_start"] is not None
    first = made[0].json()["project_id"]
    assert http.delete(f"/v1/projects/{first}", headers=h).status_code == 200
    assert http.post("/v1/projects", headers=h, json={"name": "P4"}).status_code == 201
    problem(http.post(f"/v1/projects/{first}/restore", headers=h), 403, "quota_exceeded")
    problem(http.post(f"/v1/projects/{uuid.uuid4()}/restore", headers=h), 404, "not_found")


def test_http_reservations(http, sign_up):
    acct = sign_up(plan="free")
    h = acct.headers
    made = http.post("/v1/quotas/reservations", headers=h, json={"key": "job-9", "resource": "tokens", "units": 10})
    assert made.status_code == 201, made.text
    assert has(made.json(), {"key": "job-9", "status": "held", "units": "10"})
    again = http.post("/v1/quotas/reservations", headers=h, json={"key": "job-9", "resource": "tokens", "units": 10})
    assert again.json() == made.json()
    problem(
        http.post("/v1/quotas/reservations", headers=h, json={"key": "job-9", "resource": "tokens", "units": 11}),
        409,
        "reservation_key_reused",
    )
    problem(
        http.post("/v1/quotas/reservations", headers=h, json={"key": "big", "resource": "tokens", "units": 10**9}),
        403,
        "quota_exceeded",
    )
    done = http.post("/v1/quotas/reservations/job-9/confirm", headers=h, json={"actual_units": 7})
    assert done.status_code == 200 and done.json()["actual_units"] == "7", done.text
    problem(http.post("/v1/quotas/reservations/job-9/release", headers=h), 409, "reservation_settled")
    problem(http.post("/v1/quotas/reservations/none/release", headers=h), 404, "not_found")


@pytest.fixture(scope="module")
def admin_headers(http, sign_up, owner_url) -> dict[str, str]:
    account = sign_up()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (account.user_id,))
    login = http.post("/v1/auth/login", json={"email": account.email, "password": account.password})
    assert login.status_code == 200, login.text
    return bearer(login.json()["access_token"])


def test_http_admin_overrides_and_plan(http, sign_up, admin_headers):
    acct = sign_up(plan="free")
    admin = admin_headers
    url = f"/v1/admin/tenants/{acct.tenant_id}"
    set_ = http.put(f"{url}/quotas/projects", headers=admin, json={"limit": 1})
    assert set_.status_code == 200, set_.text
    by = {i["resource"]: i for i in set_.json()["resources"]}
    assert by["projects"]["limit"] == 1 and by["projects"]["source"] == "override"
    assert http.post("/v1/projects", headers=acct.headers, json={"name": "one"}).status_code == 201
    problem(http.post("/v1/projects", headers=acct.headers, json={"name": "two"}), 403, "quota_exceeded")
    problem(http.put(f"{url}/quotas/nonsense", headers=admin, json={"limit": 1}), 422, "unknown_reference", "resource")
    cleared = http.delete(f"{url}/quotas/projects", headers=admin)
    assert {i["resource"]: i for i in cleared.json()["resources"]}["projects"]["limit"] == 3
    moved = http.put(f"{url}/plan", headers=admin, json={"plan": "pro"})
    assert moved.status_code == 200 and moved.json()["plan_id"] == "pro", moved.text
    problem(http.put(f"{url}/plan", headers=admin, json={"plan": "nope"}), 422, "unknown_reference", "plan")
    problem(
        http.put(f"{url}/quotas/projects", headers=acct.headers, json={"limit": 99}), 403, "platform_admin_required"
    )

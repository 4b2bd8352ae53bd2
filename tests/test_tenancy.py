"""The tenancy core's SQL functions, called as the api role with a tenant context."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb

from db.context import Context, transaction
from tests.helpers import OWNERS, TEST_PASSWORD_HASH, call, one, owner_transaction


def test_create_get_update_delete_project(api_pool, new_tenant):
    tenant = new_tenant()
    actor = OWNERS[tenant]
    with transaction(api_pool, Context(tenant, actor_id=actor, actor_type="user")) as conn:
        created = conn.execute(
            "SELECT project_id, created_by FROM api.create_project(%s, %s, %s)", (tenant, "Apollo", "to the moon")
        ).fetchone()
    project_id, created_by = created
    assert created_by == actor  # the context's actor is recorded

    got = one(api_pool, tenant, "get_project", project_id)
    assert (got["name"], got["description"], got["deleted_at"]) == ("Apollo", "to the moon", None)

    updated = one(api_pool, tenant, "update_project", project_id, Jsonb({"name": "Artemis"}))
    assert updated["name"] == "Artemis" and updated["description"] == "to the moon"
    assert updated["updated_at"] > got["updated_at"]

    deleted = one(api_pool, tenant, "delete_project", project_id)
    assert deleted["deleted_at"] is not None
    with pytest.raises(errors.NoDataFound):
        one(api_pool, tenant, "get_project", project_id)
    with pytest.raises(errors.NoDataFound):  # deleting twice: it is gone
        one(api_pool, tenant, "delete_project", project_id)


def test_live_project_names_are_unique_per_tenant_case_insensitively(api_pool, new_tenant):
    tenant, other = new_tenant(), new_tenant()
    first = one(api_pool, tenant, "create_project", "Billing")
    with pytest.raises(errors.UniqueViolation) as exc:
        one(api_pool, tenant, "create_project", "billing")
    assert (exc.value.diag.constraint_name, exc.value.diag.column_name) == ("projects_live_name_key", "name")
    one(api_pool, other, "create_project", "Billing")  # another tenant may use the name
    renamed = one(api_pool, tenant, "create_project", "Invoices")
    with pytest.raises(errors.UniqueViolation) as exc:
        one(api_pool, tenant, "update_project", renamed["project_id"], Jsonb({"name": "BILLING"}))
    assert exc.value.diag.constraint_name == "projects_live_name_key"
    one(api_pool, tenant, "delete_project", first["project_id"])
    one(api_pool, tenant, "create_project", "Billing")  # a deleted project frees its name


@pytest.mark.parametrize(
    ("changes", "sqlstate", "column"),
    [
        ({"colour": "red"}, "22023", "colour"),
        ({"name": None}, "23502", "name"),
        ({"name": "   "}, "23514", None),
    ],
)
def test_bad_project_changes_are_named_errors(api_pool, new_tenant, is_citus, changes, sqlstate, column):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "P")
    with pytest.raises(psycopg.Error) as exc:
        one(api_pool, tenant, "update_project", project["project_id"], Jsonb(changes))
    assert exc.value.sqlstate == sqlstate
    if column and is_citus and sqlstate.startswith("23"):
        # Citus forwards a worker's constraint error with its SQLSTATE and message only
        # (no column/constraint fields), so the column is named in the message.
        assert f'column "{column}"' in exc.value.diag.message_primary
    else:
        assert exc.value.diag.column_name == column
    assert one(api_pool, tenant, "get_project", project["project_id"])["name"] == "P"  # nothing lost


def test_tasks_lifecycle_and_filters(api_pool, new_tenant):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "Roadmap")["project_id"]
    assignee = OWNERS[tenant]  # a member of the tenant (the only kind of assignee)
    due = dt.date(2027, 1, 31)
    urgent = one(
        api_pool, tenant, "create_task", project, "Ship", p_priority="urgent", p_assignee_id=assignee, p_due_date=due
    )
    plain = one(api_pool, tenant, "create_task", project, "Write docs")
    assert (urgent["status"], urgent["priority"], urgent["due_date"]) == ("todo", "urgent", due)
    assert (plain["status"], plain["priority"]) == ("todo", "normal")

    done = one(api_pool, tenant, "update_task", plain["task_id"], Jsonb({"status": "done", "due_date": "2027-02-01"}))
    assert (done["status"], done["due_date"]) == ("done", dt.date(2027, 2, 1))

    assert [t["title"] for t in call(api_pool, tenant, "list_tasks", p_status="done")] == ["Write docs"]
    assert [t["title"] for t in call(api_pool, tenant, "list_tasks", p_assignee_id=assignee)] == ["Ship"]
    assert len(call(api_pool, tenant, "list_tasks", p_project_id=project)) == 2

    one(api_pool, tenant, "delete_task", urgent["task_id"])
    assert [t["title"] for t in call(api_pool, tenant, "list_tasks")] == ["Write docs"]
    assert len(call(api_pool, tenant, "list_tasks", p_include_deleted=True)) == 2


@pytest.mark.parametrize(("field", "value"), [("status", "blocked"), ("priority", "critical"), ("title", "")])
def test_task_values_out_of_range_are_check_violations(api_pool, new_tenant, field, value):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "P")["project_id"]
    task = one(api_pool, tenant, "create_task", project, "T")
    with pytest.raises(errors.CheckViolation):
        one(api_pool, tenant, "update_task", task["task_id"], Jsonb({field: value}))


def test_soft_deleting_a_project_deletes_its_live_tasks_at_the_same_instant(api_pool, new_tenant):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "Doomed")["project_id"]
    keep = one(api_pool, tenant, "create_project", "Kept")["project_id"]
    earlier = one(api_pool, tenant, "create_task", project, "already deleted")
    one(api_pool, tenant, "delete_task", earlier["task_id"])
    for title in ("a", "b", "c"):
        one(api_pool, tenant, "create_task", project, title)
    survivor = one(api_pool, tenant, "create_task", keep, "survivor")

    deleted = one(api_pool, tenant, "delete_project", project)

    rows = call(api_pool, tenant, "list_tasks", p_project_id=project, p_include_deleted=True)
    cascaded = [r for r in rows if r["title"] in ("a", "b", "c")]
    assert len(cascaded) == 3 and all(r["deleted_at"] == deleted["deleted_at"] for r in cascaded)
    # the task deleted before keeps its own deletion time
    assert next(r for r in rows if r["title"] == "already deleted")["deleted_at"] < deleted["deleted_at"]
    assert one(api_pool, tenant, "get_task", survivor["task_id"])["deleted_at"] is None


def test_no_live_task_in_a_deleted_project(api_pool, new_tenant):
    tenant = new_tenant()
    live = one(api_pool, tenant, "create_project", "Live")["project_id"]
    dead = one(api_pool, tenant, "create_project", "Dead")["project_id"]
    task = one(api_pool, tenant, "create_task", live, "T")
    one(api_pool, tenant, "delete_project", dead)
    with pytest.raises(errors.NoDataFound):  # through the api: it is not found
        one(api_pool, tenant, "create_task", dead, "T2")
    with pytest.raises(errors.NoDataFound):
        one(api_pool, tenant, "update_task", task["task_id"], Jsonb({"project_id": str(dead)}))
    # and in the table itself, whatever the path: TN010
    with owner_transaction(api_pool, tenant) as conn, pytest.raises(psycopg.Error) as exc:
        conn.execute(
            "UPDATE core.tasks SET project_id = %s WHERE tenant_id = %s AND task_id = %s",
            (dead, tenant, task["task_id"]),
        )
    assert exc.value.sqlstate == "TN010"


def test_keyset_pagination_walks_every_row_once(api_pool, new_tenant):
    tenant = new_tenant()
    names = {f"p{i:02}" for i in range(23)}
    for name in names:
        one(api_pool, tenant, "create_project", name)
    seen, after = [], (None, None)
    while True:
        page = call(api_pool, tenant, "list_projects", p_limit=5, p_after_created_at=after[0], p_after_id=after[1])
        if not page:
            break
        seen += page
        after = (page[-1]["created_at"], page[-1]["project_id"])
    assert [p["name"] for p in seen if p["name"] in names] == [p["name"] for p in seen]
    assert sorted(p["name"] for p in seen) == sorted(names)
    keys = [(p["created_at"], p["project_id"]) for p in seen]
    assert keys == sorted(keys)


@pytest.mark.parametrize("limit", [0, 501, None])
def test_page_size_is_bounded(api_pool, new_tenant, limit):
    tenant = new_tenant()
    with pytest.raises(psycopg.Error) as exc:
        call(api_pool, tenant, "list_projects", p_limit=limit)
    assert (exc.value.sqlstate, exc.value.diag.column_name) == ("22023", "limit")


@pytest.mark.parametrize(("field", "value"), [("due_date", "next tuesday"), ("assignee_id", "bob")])
def test_unparsable_task_values_name_their_field(api_pool, new_tenant, field, value):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "P")["project_id"]
    task = one(api_pool, tenant, "create_task", project, "T")
    with pytest.raises(psycopg.Error) as exc:
        one(api_pool, tenant, "update_task", task["task_id"], Jsonb({field: value}))
    assert (exc.value.sqlstate, exc.value.diag.column_name) == ("22023", field)


# -- tenant status ------------------------------------------------------------------------


def test_suspended_tenant_reads_but_cannot_write(api_pool, as_admin, new_tenant):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "P")["project_id"]
    with as_admin() as conn:
        row = conn.execute(
            "SELECT status, suspended_at FROM admin.set_tenant_status(%s, 'suspended')", (tenant,)
        ).fetchone()
    assert row[0] == "suspended" and row[1] is not None

    assert one(api_pool, tenant, "get_project", project)["name"] == "P"
    assert len(call(api_pool, tenant, "list_projects")) == 1
    for attempt in (
        lambda: one(api_pool, tenant, "create_project", "Q"),
        lambda: one(api_pool, tenant, "update_project", project, Jsonb({"name": "R"})),
        lambda: one(api_pool, tenant, "delete_project", project),
    ):
        with pytest.raises(psycopg.Error) as exc:
            attempt()
        assert exc.value.sqlstate == "TN001"
        assert "suspended" in exc.value.diag.message_primary

    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'active')", (tenant,))
    assert one(api_pool, tenant, "create_project", "Q")["name"] == "Q"


def test_deleted_tenant_can_neither_read_nor_write_and_stays_deleted(api_pool, as_admin, new_tenant):
    tenant = new_tenant()
    project = one(api_pool, tenant, "create_project", "P")["project_id"]
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'deleted')", (tenant,))
    for attempt in (
        lambda: one(api_pool, tenant, "get_project", project),
        lambda: call(api_pool, tenant, "list_projects"),
        lambda: one(api_pool, tenant, "get_tenant"),
        lambda: one(api_pool, tenant, "create_project", "Q"),
    ):
        with pytest.raises(psycopg.Error) as exc:
            attempt()
        assert exc.value.sqlstate == "TN002"
    with as_admin() as conn, pytest.raises(psycopg.Error) as exc:
        conn.execute("SELECT admin.set_tenant_status(%s, 'active')", (tenant,))
    assert exc.value.sqlstate == "TN003"


def test_status_timestamps_cannot_contradict_the_status(owner, new_tenant):
    tenant = new_tenant()
    with pytest.raises(errors.CheckViolation):
        owner.execute("UPDATE core.tenants SET suspended_at = now() WHERE tenant_id = %s", (tenant,))


def test_tenant_slugs_are_globally_unique_and_validated(api_pool, owner):
    def sign_up(slug: str) -> uuid.UUID:
        email = f"{uuid.uuid4().hex[:10]}@tenantry.test"
        with api_pool.connection() as conn:
            return conn.execute(
                "SELECT tenant_id FROM auth.sign_up(%s, 'Ann', %s, %s, 'Acme', %s)",
                (email, TEST_PASSWORD_HASH, slug, f"vfy_{uuid.uuid4().hex}"),
            ).fetchone()[0]

    slug = f"acme-{uuid.uuid4().hex[:8]}"
    tenant = sign_up(slug)
    with pytest.raises(errors.UniqueViolation) as exc:
        sign_up(slug)
    assert (exc.value.diag.constraint_name, exc.value.diag.column_name) == ("tenant_slugs_pkey", "slug")
    with pytest.raises(errors.CheckViolation):
        sign_up("Not A Slug!")
    # sign-up chooses no plan: the free one (paid plans come from billing or an administrator)
    assert owner.execute("SELECT plan_id FROM core.tenants WHERE tenant_id = %s", (tenant,)).fetchone() == {
        "plan_id": "free"
    }


def test_platform_admin_actions_are_recorded_with_the_admin(as_admin, platform_admin, admin_pool, new_tenant):
    tenant = new_tenant()
    with as_admin(request_id="req-42") as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (tenant,))
        conn.execute("SELECT admin.set_tenant_status(%s, 'active')", (tenant,))
        actions = conn.execute(
            "SELECT action, admin_user_id, request_id FROM admin.list_tenant_actions(%s)", (tenant,)
        ).fetchall()
    assert sorted(actions) == [("reactivate", platform_admin, "req-42"), ("suspend", platform_admin, "req-42")]


@pytest.mark.parametrize("actor_type", ["platform_admin", "user", None])
def test_only_a_platform_administrator_may_use_admin_functions(admin_pool, new_tenant, actor_type):
    tenant = new_tenant()
    owner = OWNERS[tenant]  # a real user, but not a platform administrator
    context = Context(actor_id=owner if actor_type else None, actor_type=actor_type)
    with pytest.raises(psycopg.Error) as exc, transaction(admin_pool, context) as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (tenant,))
    assert exc.value.sqlstate == "TA060"


def test_tenant_sees_its_own_record_and_plan(api_pool, new_tenant):
    tenant = new_tenant(plan="free")
    me = one(api_pool, tenant, "get_tenant")
    assert (me["tenant_id"], me["plan_id"], me["status"]) == (tenant, "free", "active")
    with owner_transaction(api_pool, tenant) as conn:
        limits = conn.execute("SELECT limits FROM core.plans WHERE plan_id = 'free'").fetchone()[0]
    assert limits["projects"] == 3

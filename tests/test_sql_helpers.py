"""The shared SQL helpers (sql/repeatable/030_shared_checks.sql): one not-found error, one
maximum page size."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import errors

from tests.helpers import call, owner_transaction


def test_not_found_names_the_thing_and_its_id(api_pool, new_tenant):
    tenant, missing = new_tenant(), uuid.uuid4()
    for function, thing in (
        ("get_project", "project"),
        ("get_task", "task"),
        ("revoke_api_key", "API key"),
        ("remove_member", "member"),
    ):
        with pytest.raises(errors.NoDataFound) as exc:
            call(api_pool, tenant, function, missing)
        assert exc.value.diag.message_primary == f"{thing} {missing} not found"
        assert exc.value.diag.column_name is None


def test_not_found_keeps_the_field_it_was_given(as_admin):
    owner = uuid.uuid4()
    with pytest.raises(errors.NoDataFound) as exc, as_admin() as conn:
        conn.execute("SELECT admin.create_tenant(%s, 'Acme', 'free', %s)", (f"nf-{owner.hex[:8]}", owner))
    assert exc.value.diag.message_primary == f"user {owner} not found"
    assert exc.value.diag.column_name == "owner_user_id"


def test_one_maximum_page_size_and_one_row_to_peek(api_pool, new_tenant):
    tenant = new_tenant()
    with owner_transaction(api_pool, tenant) as conn:
        maximum = conn.execute("SELECT core.max_page_size()").fetchone()[0]
    assert maximum == 200  # the API's `limit` allows the same
    for limit in (1, maximum, maximum + 1):  # a full page and one row past it
        call(api_pool, tenant, "list_projects", p_limit=limit)
    for limit in (0, maximum + 2):
        with pytest.raises(psycopg.Error) as exc:
            call(api_pool, tenant, "list_projects", p_limit=limit)
        assert (exc.value.sqlstate, exc.value.diag.column_name) == ("22023", "limit")

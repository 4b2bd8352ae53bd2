"""The immutable audit log (sql/repeatable/500_audit.sql): rows for every change of the
audited tables made through the real API (actor, request id, client address), secrets
never copied, nobody able to change or delete audit rows, retention by whole partitions,
the seal chain with tamper detection (and the CLI's exit codes), concurrent sealing, and
the API's list and CSV export.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
import uuid
from typing import Any

import httpx
import psycopg
import pytest
from psycopg.rows import dict_row

from db.context import Context, Database
from db.dsn import role_url
from db.settings import ANALYST_ROLE, API_ROLE, PLATFORM_ADMIN_ROLE, WORKER_ROLE
from tests.helpers import Account, role_environment

WORKER = Context(actor_type="system", role=WORKER_ROLE)


def trail(owner, tenant_id: str | uuid.UUID, **where: Any) -> list[dict]:
    """The tenant's audit rows (as the owner), oldest first, filtered by column equality."""
    clauses = "".join(f" AND {column} = %({column})s" for column in where)
    return owner.execute(
        f"SELECT * FROM core.audit_log WHERE tenant_id = %(t)s{clauses} ORDER BY occurred_at, audit_id",
        {"t": tenant_id, **where},
    ).fetchall()


def seal(database: Database, tenant_id: str | uuid.UUID | None = None) -> list[dict]:
    with database.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ops.seal_audit(%s)", (tenant_id,)).fetchall()


def verify(database: Database, tenant_id: str | uuid.UUID) -> dict:
    with database.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM ops.verify_audit(%s)", (tenant_id,)).fetchone()


def superuser(owner_url: str) -> psycopg.Connection[dict[str, Any]]:
    """A superuser connection that bypasses the audit triggers (what an intruder with
    database superuser rights could do behind the application's back)."""
    conn = psycopg.connect(owner_url, row_factory=dict_row)  # one transaction, committed by `with`
    # SET LOCAL, propagated: on Citus the triggers fire on the workers' shards (a plain
    # PostgreSQL takes the citus.* setting as an unused placeholder)
    conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
    conn.execute("SET LOCAL session_replication_role = replica")
    return conn


def some_changes(http: httpx.Client, account: Account, n: int = 3) -> list[str]:
    """n projects created, and the first one renamed and deleted: audit rows to seal."""
    ids = []
    for i in range(n):
        resp = http.post("/v1/projects", json={"name": f"p{i}-{uuid.uuid4().hex[:6]}"}, headers=account.headers)
        assert resp.status_code == 201, resp.text
        ids.append(resp.json()["project_id"])
    assert http.patch(f"/v1/projects/{ids[0]}", json={"name": "renamed"}, headers=account.headers).status_code == 200
    assert http.delete(f"/v1/projects/{ids[0]}", headers=account.headers).status_code in (200, 204)
    return ids


# -- row changes and events ------------------------------------------------------------------


def test_changes_through_the_api_are_audited_with_actor_request_and_address(http, sign_up, owner) -> None:
    account = sign_up()
    rid = f"req-{uuid.uuid4().hex}"
    headers = account.headers | {"X-Request-ID": rid}
    created = http.post("/v1/projects", json={"name": "Website", "description": "d"}, headers=headers)
    assert created.status_code == 201, created.text
    project = created.json()["project_id"]
    assert http.patch(f"/v1/projects/{project}", json={"name": "Site"}, headers=account.headers).status_code == 200
    task = http.post("/v1/tasks", json={"project_id": project, "title": "T"}, headers=account.headers)
    assert task.status_code == 201, task.text
    assert http.delete(f"/v1/projects/{project}", headers=account.headers).status_code in (200, 204)

    rows = trail(owner, account.tenant_id, table_name="core.projects")
    assert [row["action"] for row in rows] == ["insert", "update", "update"]  # the delete is soft
    insert, rename, delete = rows
    assert insert["actor_id"] == uuid.UUID(account.user_id) and insert["actor_type"] == "user"
    assert insert["request_id"] == rid
    assert str(insert["ip"]) == "127.0.0.1"
    assert insert["row_key"] == {"project_id": project}
    assert insert["changes"]["name"] == "Website" and "tenant_id" not in insert["changes"]
    assert rename["changes"] == {"name": ["Website", "Site"]}  # updated_at, row_version: bookkeeping
    assert set(delete["changes"]) == {"deleted_at"}
    # the cascade of the soft delete to the task is audited too, in the same request
    tasks = trail(owner, account.tenant_id, table_name="core.tasks")
    assert [row["action"] for row in tasks] == ["insert", "update"]
    assert tasks[1]["request_id"] == delete["request_id"]


def test_memberships_invitations_keys_and_tenant_changes_are_audited(http, sign_up, owner) -> None:
    account = sign_up()
    key = http.post("/v1/api-keys", json={"name": "ci", "scopes": ["projects:read"]}, headers=account.headers)
    assert key.status_code == 201, key.text
    key_id = key.json()["key_id"]
    # the key's own use is bookkeeping (last_used_at, use_count): no audit row
    assert http.get("/v1/projects", headers={"X-API-Key": key.json()["key"]}).status_code == 200
    assert http.delete(f"/v1/api-keys/{key_id}", headers=account.headers).status_code in (200, 204)
    invite = http.post(
        "/v1/invitations",
        json={"email": f"i-{uuid.uuid4().hex[:8]}@tenantry.test", "role": "member"},
        headers=account.headers,
    )
    assert invite.status_code == 201, invite.text
    assert http.patch("/v1/tenant", json={"name": "Renamed Inc"}, headers=account.headers).status_code == 200

    keys = trail(owner, account.tenant_id, table_name="core.api_keys")
    assert [row["action"] for row in keys] == ["insert", "update"]
    assert set(keys[1]["changes"]) == {"revoked_at"}
    assert trail(owner, account.tenant_id, table_name="core.invitations")[0]["action"] == "insert"
    assert trail(owner, account.tenant_id, table_name="core.memberships")[0]["changes"]["role"] == "owner"
    renamed = trail(owner, account.tenant_id, table_name="core.tenants", action="update")
    assert renamed[-1]["changes"]["name"][1] == "Renamed Inc"


def test_secrets_are_never_copied(http, sign_up, owner) -> None:
    account = sign_up()
    key = http.post("/v1/api-keys", json={"name": "ci", "scopes": ["projects:read"]}, headers=account.headers)
    assert key.status_code == 201
    rotated = http.post(f"/v1/api-keys/{key.json()['key_id']}/rotate", json={}, headers=account.headers)
    assert rotated.status_code in (200, 201), rotated.text
    http.post(
        "/v1/invitations",
        json={"email": f"i-{uuid.uuid4().hex[:8]}@tenantry.test", "role": "member"},
        headers=account.headers,
    )
    secrets = [
        row["h"]
        for row in owner.execute(
            "SELECT encode(key_hash, 'hex') AS h FROM core.api_keys WHERE tenant_id = %(t)s"
            " UNION ALL SELECT encode(token_hash, 'hex') FROM core.invitations WHERE tenant_id = %(t)s",
            {"t": account.tenant_id},
        )
    ]
    assert len(secrets) >= 3
    text = " ".join(str(row) for row in trail(owner, account.tenant_id))
    for name in ("key_hash", "token_hash"):
        assert f"'{name}'" not in text.replace("'[redacted]'", "") or "'[redacted]'" in text
    for secret in secrets:
        assert secret not in text and secret.upper() not in text
    # every secret-bearing column of every audited table is redacted by the rule (bytea:
    # hashes and ciphertext; the names of tokens and passwords)
    unredacted = owner.execute(
        """SELECT c.oid::regclass::text AS t, a.attname AS col
             FROM pg_trigger AS g JOIN pg_class AS c ON c.oid = g.tgrelid
             JOIN pg_attribute AS a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            WHERE g.tgname = 'audit_row_change' AND NOT c.relispartition
              AND (a.atttypid = 'bytea'::regtype OR a.attname ~ '(hash|secret|token|password|cipher)')
              AND NOT core.audit_redacts(a.attname)"""
    ).fetchall()
    assert unredacted == []


def test_login_failed_login_lockout_and_logout_are_audited_events(http, sign_up, owner) -> None:
    account = sign_up()
    for _ in range(5):
        wrong = http.post("/v1/auth/login", json={"email": account.email, "password": "not it"})
        assert wrong.status_code in (401, 429)
    events = [row["action"] for row in trail(owner, account.tenant_id) if row["table_name"] is None]
    assert events.count("login_failed") == 5 and "account_locked" in events
    failed = trail(owner, account.tenant_id, action="login_failed")[0]
    assert failed["actor_type"] == "anonymous" and failed["details"]["user_id"] == account.user_id
    assert str(failed["ip"]) == "127.0.0.1"

    other = sign_up()
    login = http.post("/v1/auth/login", json={"email": other.email, "password": other.password})
    assert login.status_code == 200, login.text
    assert http.post(
        "/v1/auth/logout", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
    ).status_code in (
        200,
        204,
    )
    actions = [row["action"] for row in trail(owner, other.tenant_id, actor_id=uuid.UUID(other.user_id))]
    assert "login" in actions and "session_revoked" in actions


def test_platform_admin_actions_are_audited_in_the_target_tenant(as_admin, new_tenant, owner, platform_admin) -> None:
    tenant = new_tenant()
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (tenant,))
        conn.execute("SELECT admin.set_tenant_plan(%s, 'enterprise')", (tenant,))
    admin_events = [row for row in trail(owner, tenant) if row["action"].startswith("admin.")]
    assert [row["action"] for row in admin_events] == ["admin.suspend", "admin.set_plan"]
    assert all(row["actor_id"] == platform_admin and row["actor_type"] == "platform_admin" for row in admin_events)


# -- immutability ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role", [API_ROLE, WORKER_ROLE, PLATFORM_ADMIN_ROLE, ANALYST_ROLE, "tenantry_owner", "superuser"]
)
def test_no_role_updates_deletes_or_truncates_audit_rows(
    role, owner_url, test_settings, database, new_tenant, owner
) -> None:
    """Privileges refuse the application roles (42501); the owner has no UPDATE or
    TRUNCATE either, and its DELETE (kept for the erase hook) meets the trigger (TL001),
    as does a superuser, who passes every privilege."""
    tenant = new_tenant()
    assert trail(owner, tenant)
    seal(database, tenant)  # so there are seals to refuse changing
    url = owner_url if role in ("tenantry_owner", "superuser") else role_url(test_settings, role)
    for statement, table in (
        ("UPDATE core.audit_log SET action = 'forged' WHERE tenant_id = %(t)s", "audit_log"),
        ("DELETE FROM core.audit_log WHERE tenant_id = %(t)s", "audit_log"),
        ("TRUNCATE core.audit_log", "audit_log"),
        ("UPDATE core.audit_seals SET hash = '' WHERE tenant_id = %(t)s", "audit_seals"),
        ("DELETE FROM core.audit_seals WHERE tenant_id = %(t)s", "audit_seals"),
    ):
        with psycopg.connect(url) as conn:  # one transaction each, rolled back
            if role == "tenantry_owner":
                conn.execute("SET ROLE tenantry_owner")
            conn.execute(f"SET LOCAL app.tenant_id = '{tenant}'")
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement, {"t": tenant})
            state = refused.value.sqlstate
            if role == "superuser" or (role == "tenantry_owner" and statement.startswith("DELETE")):
                assert state == "TL001", (role, statement, refused.value)
                assert f"the audit log is immutable: {statement.split()[0]} on {table}" in str(refused.value)
            else:
                assert state == "42501", (role, statement, refused.value)
    assert trail(owner, tenant)  # still there


def test_the_erase_hook_deletes_only_the_tenant_being_erased(owner_url, new_tenant, owner, is_citus) -> None:
    erased, kept = new_tenant(), new_tenant()
    with psycopg.connect(owner_url) as conn:
        conn.execute("SET ROLE tenantry_owner")
        if is_citus:  # the trigger runs on the shards: the setting must reach the workers
            conn.execute("SET LOCAL citus.propagate_set_commands = 'local'")
        conn.execute(f"SET LOCAL tenantry.erasing_tenant = '{erased}'")
        conn.execute("DELETE FROM core.audit_log WHERE tenant_id = %s", (erased,))
        with pytest.raises(psycopg.Error) as refused:
            conn.execute("DELETE FROM core.audit_log WHERE tenant_id = %s", (kept,))
        assert refused.value.sqlstate == "TL001"
        conn.rollback()
    assert trail(owner, erased) and trail(owner, kept)  # rolled back: nothing went


# -- retention -------------------------------------------------------------------------------


def test_retention_drops_only_whole_old_partitions_and_says_so(owner_url, database, new_tenant, owner) -> None:
    tenant = new_tenant()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("SET ROLE tenantry_owner")  # as ops.maintain_audit_partitions makes them
        conn.execute(
            "CREATE TABLE core.audit_log_p2001m01 PARTITION OF core.audit_log"
            " FOR VALUES FROM ('2001-01-01 00:00+00') TO ('2001-02-01 00:00+00')"
        )
        conn.execute(
            "INSERT INTO core.audit_log (tenant_id, occurred_at, action) VALUES (%s, '2001-01-15 00:00+00', 'ancient')",
            (tenant,),
        )
    before = {row["partition_name"] for row in owner.execute("SELECT * FROM core.audit_partitions()")}
    with database.transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
        dropped = cur.execute("SELECT * FROM ops.drop_expired_audit_partitions()").fetchall()
    assert [row["partition_name"] for row in dropped] == ["core.audit_log_p2001m01"]
    assert dropped[0]["tenants"] >= 1
    after = {row["partition_name"] for row in owner.execute("SELECT * FROM core.audit_partitions()")}
    assert after == before - {"core.audit_log_p2001m01"} and after
    assert not trail(owner, tenant, action="ancient")
    event = trail(owner, tenant, action="audit.partition_dropped")
    assert event and event[0]["actor_type"] == "system"
    assert event[0]["details"]["partition"] == "core.audit_log_p2001m01"


# -- the seal chain ------------------------------------------------------------------------


def test_seal_then_verify_is_ok_and_new_rows_extend_the_chain(http, sign_up, database, owner) -> None:
    account = sign_up()
    some_changes(http, account)
    first = seal(database, account.tenant_id)
    assert first[0]["sealed"] == len(trail(owner, account.tenant_id))
    assert verify(database, account.tenant_id)["ok"]
    some_changes(http, account, 1)
    seal(database, account.tenant_id)
    seals = owner.execute(
        "SELECT seal_no, prev_hash, hash FROM core.audit_seals WHERE tenant_id = %s ORDER BY seal_no",
        (account.tenant_id,),
    ).fetchall()
    assert [s["seal_no"] for s in seals] == [1, 2] and seals[1]["prev_hash"] == seals[0]["hash"]
    result = verify(database, account.tenant_id)
    assert result["ok"] and result["seals"] == 2 and result["rows_checked"] == len(trail(owner, account.tenant_id))


@pytest.mark.parametrize("tamper", ["modify", "delete", "reorder", "insert", "seal"])
def test_tampering_behind_the_database_s_back_is_detected_and_named(
    tamper, http, sign_up, database, owner, owner_url
) -> None:
    account = sign_up()
    some_changes(http, account)
    seal(database, account.tenant_id)
    assert verify(database, account.tenant_id)["ok"]
    rows = trail(owner, account.tenant_id)
    victim, other = rows[2], rows[3]
    with superuser(owner_url) as conn:
        if tamper == "modify":
            conn.execute("UPDATE core.audit_log SET request_id = 'forged' WHERE audit_id = %s", (victim["audit_id"],))
        elif tamper == "delete":
            conn.execute("DELETE FROM core.audit_log WHERE audit_id = %s", (victim["audit_id"],))
        elif tamper == "reorder":  # swap the ids of two rows (one at a time: the key is unique)
            ids = {"a": victim["audit_id"], "b": other["audit_id"], "t": account.tenant_id}
            conn.execute("UPDATE core.audit_log SET audit_id = -1 WHERE tenant_id = %(t)s AND audit_id = %(a)s", ids)
            conn.execute("UPDATE core.audit_log SET audit_id = %(a)s WHERE tenant_id = %(t)s AND audit_id = %(b)s", ids)
            conn.execute("UPDATE core.audit_log SET audit_id = %(b)s WHERE tenant_id = %(t)s AND audit_id = -1", ids)
        elif tamper == "insert":
            conn.execute(
                "INSERT INTO core.audit_log (tenant_id, audit_id, epoch, occurred_at, action)"
                " VALUES (%s, %s, %s, %s, 'forged')",
                (account.tenant_id, victim["audit_id"] + 1000000, 0, victim["occurred_at"]),  # before seal 1's end
            )
            victim = {"audit_id": victim["audit_id"] + 1000000}
        else:
            conn.execute("UPDATE core.audit_seals SET row_count = row_count WHERE false")
            conn.execute(
                "UPDATE core.audit_seals SET max_occurred_at = max_occurred_at, digests = digests || ''::bytea,"
                " hash = sha256(hash) WHERE tenant_id = %s AND seal_no = 1",
                (account.tenant_id,),
            )
    result = verify(database, account.tenant_id)
    assert not result["ok"]
    if tamper == "seal":
        assert result["seal_no"] == 1 and "seal 1" in result["problem"]
    else:
        assert result["audit_id"] in (victim["audit_id"], other["audit_id"]), result
        assert str(result["audit_id"]) in result["problem"]


def test_cli_seal_and_verify_exit_codes(http, sign_up, owner_url, tmp_path) -> None:
    account = sign_up()
    some_changes(http, account)
    env = role_environment_for_cli(owner_url, tmp_path)

    def tenantry(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "tenantry", "audit", *args], env=env, capture_output=True, text=True, timeout=120
        )

    sealed = tenantry("seal", "--tenant", account.tenant_id)
    assert sealed.returncode == 0, sealed.stderr
    assert "rows sealed" in sealed.stdout
    ok = tenantry("verify", "--tenant", account.tenant_id)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stdout + ok.stderr
    with superuser(owner_url) as conn:
        first = conn.execute(
            "SELECT audit_id FROM core.audit_log WHERE tenant_id = %s ORDER BY audit_id LIMIT 1", (account.tenant_id,)
        ).fetchone()
        assert first is not None
        victim = first["audit_id"]
        conn.execute("UPDATE core.audit_log SET request_id = 'forged' WHERE audit_id = %s", (victim,))
    broken = tenantry("verify", "--tenant", account.tenant_id)
    assert broken.returncode == 1
    assert f"audit row {victim} of seal 1 was altered" in broken.stderr


def role_environment_for_cli(owner_url: str, tmp_path) -> dict[str, str]:
    from db.settings import Settings

    return (
        dict(os.environ)
        | role_environment(Settings(database_url=owner_url))
        | {
            "TENANTRY_DATABASE_URL": owner_url,
            "TENANTRY_STATE_DIR": str(tmp_path),
        }
    )


def test_concurrent_sealers_and_writers_never_fork_or_miss_the_chain(test_settings, new_tenant, owner) -> None:
    """Sealers of one tenant at once (each on its own connection, started together),
    while writers add audit rows: the seals stay one chain, numbered without gaps, and
    every committed row ends up sealed exactly once (repeated rounds)."""
    tenant = new_tenant()
    dbs = [Database(test_settings, name=f"sealer-{i}") for i in range(6)]
    try:
        for _ in range(8):
            barrier = threading.Barrier(6)
            errors: list[BaseException] = []

            def sealer(db: Database, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
                try:
                    barrier.wait()
                    seal(db, tenant)
                except BaseException as exc:
                    errors.append(exc)

            def writer(db: Database, barrier: threading.Barrier = barrier, errors: list = errors) -> None:
                try:
                    barrier.wait()
                    for _ in range(5):
                        with db.transaction(Context(tenant, actor_type="system", role=API_ROLE)) as conn:
                            conn.execute("SELECT core.audit_event(%s, 'test.write', '{}')", (tenant,))
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=sealer, args=(db,)) for db in dbs[:4]]
            threads += [threading.Thread(target=writer, args=(db,)) for db in dbs[4:]]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not errors, errors
        seal(dbs[0], tenant)
        numbers = [
            row["seal_no"]
            for row in owner.execute(
                "SELECT seal_no FROM core.audit_seals WHERE tenant_id = %s ORDER BY seal_no", (tenant,)
            )
        ]
        assert numbers == list(range(1, len(numbers) + 1))
        sealed = owner.execute(
            "SELECT count(*) AS n, count(DISTINCT x) AS d"
            " FROM core.audit_seals, unnest(audit_ids) AS x WHERE tenant_id = %s",
            (tenant,),
        ).fetchone()
        assert sealed["n"] == sealed["d"] == len(trail(owner, tenant))
        with dbs[0].transaction(WORKER) as conn, conn.cursor(row_factory=dict_row) as cur:
            assert cur.execute("SELECT * FROM ops.verify_audit(%s)", (tenant,)).fetchone()["ok"]
    finally:
        for db in dbs:
            db.close()


# -- the API ---------------------------------------------------------------------------------


def test_the_api_lists_filters_and_pages_the_trail(http, sign_up) -> None:
    account = sign_up()
    some_changes(http, account, 3)
    listed = http.get(
        "/v1/audit", params={"table": "core.projects", "action": "insert", "limit": 2}, headers=account.headers
    )
    assert listed.status_code == 200, listed.text
    page = listed.json()
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = http.get(
        "/v1/audit",
        params={"table": "core.projects", "action": "insert", "limit": 2, "cursor": page["next_cursor"]},
        headers=account.headers,
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    ids = [item["audit_id"] for item in page["items"] + rest["items"]]
    assert ids == sorted(ids) and len(set(ids)) == 3
    mine = http.get("/v1/audit", params={"actor_id": account.user_id, "limit": 200}, headers=account.headers).json()
    assert mine["items"] and all(item["actor_id"] == account.user_id for item in mine["items"])
    future = http.get("/v1/audit", params={"from": "2999-01-01T00:00:00+00:00"}, headers=account.headers).json()
    assert future["items"] == []
    bad = http.get("/v1/audit", params={"from": "yesterday"}, headers=account.headers)
    assert bad.status_code == 400 and bad.json()["field"] == "from"
    # audit:read: a viewer's API key without it is refused
    key = http.post("/v1/api-keys", json={"name": "ro", "scopes": ["projects:read"]}, headers=account.headers).json()
    refused = http.get("/v1/audit", headers={"X-API-Key": key["key"]})
    assert refused.status_code == 403 and refused.json()["code"] == "missing_scope"


def test_the_csv_export_streams_the_trail_is_audited_and_needs_the_feature(http, sign_up, owner) -> None:
    free = sign_up(plan="free")
    refused = http.get("/v1/audit/export", headers=free.headers)
    assert refused.status_code == 403 and refused.json()["code"] == "feature_not_in_plan"

    account = sign_up()  # enterprise
    some_changes(http, account, 3)
    exported = http.get("/v1/audit/export", params={"table": "core.projects"}, headers=account.headers)
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(trail(owner, account.tenant_id, table_name="core.projects")) == 5
    assert {row["action"] for row in rows} == {"insert", "update"}
    export = trail(owner, account.tenant_id, action="audit.export")
    assert len(export) == 1 and export[0]["details"] == {"filters": {"table": "core.projects"}}

"""Fuzzing the live API from its own OpenAPI document with schemathesis: whatever
schemathesis sends (valid and invalid data, every documented operation), the API never
answers with a server error (5xx).

The command, run in a subprocess against the session's gunicorn-served API:

    schemathesis run <api>/v1/openapi.json -H 'Authorization: Bearer <token>'
        --checks not_a_server_error --phases examples,coverage,fuzzing --max-examples 30
        --seed 20250101 --workers 1 --generation-database none --continue-on-failure
        --generation-allow-x00 true --request-timeout 10 --no-color
        --exclude-path /v1/auth/logout --exclude-path /v1/auth/sessions

once with a tenant owner's token (every operation; /v1/admin/* answers 403), and once
with a platform administrator's token on the admin operations that change no existing
tenant (list, create, actions): schemathesis feeds ids it sees in responses back into
paths, so an admin fuzzing suspend/reactivate/delete would suspend and delete the other
tests' tenants in the shared database. Logout and "revoke all my sessions" are left
out: they end the token's own session and every later call would only be a 401. One
worker: schemathesis's generator is not thread-safe on Python 3.11 (ast.parse
SystemError inside hypothesis, seen with --workers 2).

NUL characters are generated (--generation-allow-x00 true): they used to 500 on every
route that sends text to PostgreSQL. What schemathesis found that way is replayed
deterministically below, so it stays pinned whatever a seed happens to draw.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
ADMIN_SAFE_PATHS = r"^/v1/admin/tenants(/\{tenant_id\}/actions)?$"


@pytest.fixture(scope="module")
def admin_headers(http, sign_up, owner_url) -> dict[str, str]:
    import psycopg

    account = sign_up()
    with psycopg.connect(owner_url, autocommit=True) as conn:
        conn.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (account.user_id,))
    login = http.post("/v1/auth/login", json={"email": account.email, "password": account.password})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}


def fuzz_command(api_url: str, authorization: str, *selection: str) -> list[str]:
    return [
        str(SCHEMATHESIS),
        "run",
        f"{api_url}/v1/openapi.json",
        "-H",
        f"Authorization: {authorization}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "30",
        "--seed",
        "20250101",
        "--workers",
        "1",
        "--generation-database",
        "none",
        "--continue-on-failure",
        "--generation-allow-x00",
        "true",
        "--request-timeout",
        "10",
        "--no-color",
        *selection,
    ]


def fuzz(command: list[str], cwd: Path) -> tuple[str, str, int]:
    """Run schemathesis; assert it found no server error (and did not crash). Returns
    the output, its summary, and how many operations were tested."""
    assert SCHEMATHESIS.exists(), SCHEMATHESIS
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=240, env=os.environ | {"NO_COLOR": "1"}
    )
    output = done.stdout + done.stderr
    (cwd / "schemathesis.log").write_text(output)
    summary = output[output.find("SUMMARY") :] if "SUMMARY" in output else output[-4000:]
    assert done.returncode == 0, output[-15000:]
    assert "ST101" not in output and "Server error" not in output, output[-15000:]
    assert "Runtime Error" not in output, summary
    generated = re.search(r"(\d+) generated, (\d+) passed", output)
    assert generated and generated.group(1) == generated.group(2), summary
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert tested, summary
    return output, summary, int(tested.group(1))


@pytest.mark.slow
def test_fuzzing_as_a_tenant_owner_finds_no_server_error(http, api_url, sign_up, tmp_path):
    account = sign_up()
    command = fuzz_command(
        api_url,
        account.headers["Authorization"],
        "--exclude-path",
        "/v1/auth/logout",
        "--exclude-path",
        "/v1/auth/sessions",
    )
    output, summary, tested = fuzz(command, tmp_path)
    assert tested >= 38, summary  # every operation but the two left out
    assert int(re.search(r"(\d+) generated", output).group(1)) >= 1000, summary
    # the token still works at the end: the run was not all 401s
    assert http.get("/v1/auth/me", headers=account.headers).status_code == 200


@pytest.mark.slow
def test_fuzzing_admin_reads_and_creates_finds_no_server_error(http, api_url, admin_headers, tmp_path):
    command = fuzz_command(api_url, admin_headers["Authorization"], "--include-path-regex", ADMIN_SAFE_PATHS)
    output, summary, tested = fuzz(command, tmp_path)
    assert tested == 3, summary  # GET and POST /v1/admin/tenants, GET .../actions
    assert "Authentication failed" not in output, summary  # really as an administrator
    assert http.get("/v1/admin/tenants", headers=admin_headers).status_code == 200


# -- what schemathesis found, replayed deterministically --------------------------------------


def test_nul_character_in_api_key_scope_is_a_client_error(http, sign_up):
    # found by schemathesis (with NUL characters allowed): POST /v1/api-keys with a NUL in a scope
    # was a 500 (psycopg.DataError without SQLSTATE, unmapped in api/errors.py)
    account = sign_up()
    resp = http.post("/v1/api-keys", headers=account.headers, json={"name": "fuzz", "scopes": ["projects:read\u0000"]})
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")


def test_nul_characters_in_text_parameters_are_client_errors(http, sign_up):
    # the same DataError on other routes, unauthenticated ones included (each was a 500)
    account = sign_up()
    tag = os.urandom(6).hex()
    answers = {
        "invitation email": http.post("/v1/invitations", headers=account.headers, json={"email": "a\u0000@x.test"}),
        "login email (anonymous)": http.post("/v1/auth/login", json={"email": "a\u0000@x.test", "password": "x"}),
        "signup email (anonymous)": http.post(
            "/v1/signup",
            json={
                "email": f"n{tag}\u0000@x.test",
                "name": "n",
                "password": "password-" + tag,
                "tenant_slug": f"n-{tag}",
                "tenant_name": "N",
            },
        ),
    }
    statuses = {what: resp.status_code for what, resp in answers.items()}
    assert all(400 <= status < 500 for status in statuses.values()), statuses


def test_nul_characters_in_patch_bodies_are_client_errors(http, sign_up):
    # PATCH sends the changes as jsonb, which PostgreSQL refuses with SQLSTATE 22P05 when a
    # string holds \u0000: that SQLSTATE was unmapped, a 500
    account = sign_up()
    project = http.post("/v1/projects", headers=account.headers, json={"name": "p"}).json()
    task = http.post("/v1/tasks", headers=account.headers, json={"project_id": project["project_id"], "title": "t"})
    assert task.status_code == 201, task.text
    answers = {
        "task title": http.patch(
            f"/v1/tasks/{task.json()['task_id']}", headers=account.headers, json={"title": "a\u0000"}
        ),
        "project description": http.patch(
            f"/v1/projects/{project['project_id']}", headers=account.headers, json={"description": "\u0000"}
        ),
    }
    statuses = {what: resp.status_code for what, resp in answers.items()}
    assert statuses == {"task title": 422, "project description": 422}, {w: r.text for w, r in answers.items()}

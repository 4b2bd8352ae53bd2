"""Accounts, through the real API (gunicorn) and real mail (the outbox delivered by
jobs/mail.py to an SMTP server on loopback, tests/mailbox.py): resetting a forgotten
password by mail, changing a known one, the limits of a session (idle timeout, absolute
maximum, refresh lifetime), the profile, and the tenant's name and settings.

Time is not waited for: `travel` moves every timestamp of a session back, which is what
the passing of that much time looks like to the database.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import httpx
import jwt
import psycopg
import pytest

from api.resources.account import RESET_REQUESTED
from db.local.postgres import free_port
from db.local.redis import LocalRedis
from tests.helpers import bearer, problem, start_api
from tests.mailbox import html_of, token_in

RESET_SUBJECT = "Reset your tenantry password"


# -- helpers ----------------------------------------------------------------------------------


def login(http: httpx.Client, email: str, password: str) -> httpx.Response:
    return http.post("/v1/auth/login", json={"email": email, "password": password})


def logged_in(http: httpx.Client, email: str, password: str) -> dict:
    resp = login(http, email, password)
    assert resp.status_code == 200, resp.text
    return resp.json()


def refresh(http: httpx.Client, token: str) -> httpx.Response:
    return http.post("/v1/auth/refresh", json={"refresh_token": token})


def session_of(access_token: str) -> str:
    return jwt.decode(access_token, options={"verify_signature": False})["sid"]


def travel(owner: psycopg.Connection, session_id: str, **delta: float) -> None:
    """Let `delta` (minutes=…, hours=…) pass for a session: all its timestamps move back."""
    # in UTC timestamps: Citus refuses the STABLE timestamptz - interval over a column in an
    # UPDATE of a distributed table (docs/citus.md, fact 14)
    columns = (
        "created_at",
        "last_refreshed_at",
        "last_seen_at",
        "expires_at",
        "absolute_expires_at",
        "refresh_expires_at",
    )
    moves = ", ".join(f"{c} = (({c} AT TIME ZONE 'UTC') - %(d)s) AT TIME ZONE 'UTC'" for c in columns)
    owner.execute(
        f"UPDATE core.sessions SET {moves} WHERE session_id = %(s)s",
        {"d": dt.timedelta(**delta), "s": session_id},
    )


@pytest.fixture
def deliver(mailbox, database, test_settings):
    """One delivery pass of the outbox to the loopback SMTP server."""
    return lambda: mailbox.deliver(database, test_settings)


def reset_mails(mailbox, email: str) -> list:
    return [m for m in mailbox.messages_to(email) if m["Subject"] == RESET_SUBJECT]


def ask_reset(http: httpx.Client, email: str) -> httpx.Response:
    resp = http.post("/v1/auth/password-reset", json={"email": email})
    assert resp.status_code == 202, resp.text
    assert resp.json() == {"detail": RESET_REQUESTED}
    return resp


def confirm(http: httpx.Client, token: str, password: str) -> httpx.Response:
    return http.post("/v1/auth/password-reset/confirm", json={"token": token, "password": password})


# -- password reset by mail ---------------------------------------------------------------------


def test_password_reset_by_mail_ends_every_session(http, sign_up, mailbox, deliver, owner):
    account = sign_up()
    other = logged_in(http, account.email, account.password)
    ask_reset(http, account.email.upper())  # the address as typed, any case
    assert (
        owner.execute(
            "SELECT count(*) AS n FROM core.mail_outbox WHERE to_address = %s AND template = 'password_reset'"
            " AND sent_at IS NULL",
            (account.email,),
        ).fetchone()["n"]
        == 1
    )  # queued by the request's own transaction
    deliver()

    [message] = reset_mails(mailbox, account.email)
    token = token_in(message, "prt_")
    assert f"reset-password?token={token}" in html_of(message)
    # once delivered, the token is no longer in the database, only its hash
    assert (
        owner.execute(
            "SELECT data FROM core.mail_outbox WHERE to_address = %s AND template = 'password_reset'", (account.email,)
        ).fetchone()["data"]
        == {}
    )

    new_password = "a brand new password"
    done = confirm(http, token, new_password)
    assert done.status_code == 200, done.text
    assert done.json() == {"revoked": 2}  # the sign-up's session and the other login
    for access in (account.access_token, other["access_token"]):
        problem(http.get("/v1/auth/me", headers=bearer(access)), 401, "session_revoked")
    problem(refresh(http, other["refresh_token"]), 401, "refresh_revoked")
    problem(login(http, account.email, account.password), 401, "invalid_credentials")
    assert login(http, account.email, new_password).status_code == 200

    # single use
    problem(confirm(http, token, "yet another password"), 404, "reset_token_invalid")


def test_password_reset_answers_the_same_whether_or_not_the_account_exists(http, sign_up, mailbox, deliver):
    account = sign_up()
    nobody = f"nobody-{uuid.uuid4().hex[:10]}@tenantry.test"
    known, unknown = ask_reset(http, account.email), ask_reset(http, nobody)
    assert known.content == unknown.content and known.status_code == unknown.status_code
    ask_reset(http, "not an email at all")
    deliver()
    assert len(reset_mails(mailbox, account.email)) == 1
    assert mailbox.messages_to(nobody) == []


def test_reset_mails_are_capped_per_account(http, sign_up, mailbox, deliver):
    account = sign_up()
    for _ in range(5):
        ask_reset(http, account.email)  # the answer never changes
    deliver()
    mails = reset_mails(mailbox, account.email)
    assert len(mails) == 3  # core.max_open_password_resets(): a flood cannot mail-bomb the owner
    tokens = [token_in(m, "prt_") for m in mails]
    assert len(set(tokens)) == 3
    assert confirm(http, tokens[0], "the password after reset").status_code == 200
    # one reset spends every open token of the account
    for token in tokens[1:]:
        problem(confirm(http, token, "another password again"), 404, "reset_token_invalid")


def test_an_expired_reset_token_is_refused(http, sign_up, mailbox, deliver, owner):
    account = sign_up()
    ask_reset(http, account.email)
    deliver()
    [message] = reset_mails(mailbox, account.email)
    owner.execute(
        "UPDATE core.password_resets SET"  # in UTC: see travel()
        " created_at = ((created_at AT TIME ZONE 'UTC') - interval '31 minutes') AT TIME ZONE 'UTC',"
        " expires_at = ((expires_at AT TIME ZONE 'UTC') - interval '31 minutes') AT TIME ZONE 'UTC'"
        " WHERE user_id = %s",
        (account.user_id,),
    )
    problem(confirm(http, token_in(message, "prt_"), "too late for this"), 410, "reset_token_expired")
    problem(confirm(http, "prt_" + "A" * 43, "a guess at a token"), 404, "reset_token_invalid")
    problem(
        http.post("/v1/auth/password-reset/confirm", json={"token": "prt_x", "password": "short"}),
        422,
        "invalid_body",
        field="password",
    )
    assert login(http, account.email, account.password).status_code == 200  # nothing changed


@pytest.fixture(scope="module")
def limited_http(owner_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """An API allowing 3 unauthenticated calls a minute per client, with a Redis of its own."""
    redis = LocalRedis(tmp_path_factory.mktemp("redis-limited"), free_port())
    redis.start()
    process, url = start_api(
        owner_url, redis.url(), tmp_path_factory.mktemp("api-limited"), TENANTRY_ANONYMOUS_REQUESTS_PER_MINUTE="3"
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=15)
        redis.stop()


def test_the_public_reset_calls_are_rate_limited_per_client(limited_http):
    email = f"anyone-{uuid.uuid4().hex[:10]}@tenantry.test"
    for _ in range(3):
        ask_reset(limited_http, email)
    refused = limited_http.post("/v1/auth/password-reset", json={"email": email})
    problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    problem(confirm(limited_http, "prt_" + "B" * 43, "a guess at a token"), 429, "rate_limited")


# -- password change ------------------------------------------------------------------------------


def change(http: httpx.Client, headers: dict, current: str, new: str) -> httpx.Response:
    return http.post("/v1/auth/password", headers=headers, json={"current_password": current, "new_password": new})


def test_password_change_needs_the_current_password_and_ends_the_other_sessions(http, sign_up):
    account = sign_up()
    other = logged_in(http, account.email, account.password)
    problem(
        change(http, account.headers, "not my password", "a new password 1"), 403, "wrong_password", "current_password"
    )
    problem(change(http, account.headers, account.password, "short"), 422, "invalid_body", field="new_password")

    done = change(http, account.headers, account.password, "a new password 1")
    assert done.status_code == 200, done.text
    assert done.json() == {"revoked": 1}
    # the caller's session goes on; the other one ended
    assert http.get("/v1/auth/me", headers=account.headers).status_code == 200
    assert refresh(http, account.refresh_token).status_code == 200
    problem(http.get("/v1/auth/me", headers=bearer(other["access_token"])), 401, "session_revoked")
    problem(refresh(http, other["refresh_token"]), 401, "refresh_revoked")
    problem(login(http, account.email, account.password), 401, "invalid_credentials")
    assert login(http, account.email, "a new password 1").status_code == 200

    key = http.post("/v1/api-keys", headers=account.headers, json={"name": "ci", "scopes": ["projects:read"]})
    assert key.status_code == 201, key.text
    problem(
        change(http, {"X-API-Key": key.json()["key"]}, "a new password 1", "a new password 2"),
        403,
        "user_token_required",
    )


def test_wrong_current_passwords_count_towards_the_lockout(http, sign_up):
    account = sign_up()
    for _ in range(4):
        problem(change(http, account.headers, "guess", "a new password 1"), 403, "wrong_password")
    fifth = change(http, account.headers, "guess", "a new password 1")
    problem(fifth, 429, "account_locked")
    assert 0 < int(fifth.headers["Retry-After"]) <= 900
    # locked like a login from here: even the right password is refused, here and at login
    problem(change(http, account.headers, account.password, "a new password 1"), 429, "account_locked")
    problem(login(http, account.email, account.password), 429, "account_locked")
    assert http.get("/v1/auth/me", headers=account.headers).status_code == 200  # the session itself goes on


# -- session limits ---------------------------------------------------------------------------------


def test_a_session_unused_for_its_idle_timeout_ends(http, sign_up, owner):
    account = sign_up()
    tokens = logged_in(http, account.email, account.password)
    [listed] = [
        s
        for s in http.get("/v1/auth/sessions", headers=bearer(tokens["access_token"])).json()["items"]
        if s["session_id"] == tokens["session_id"]
    ]
    created = dt.datetime.fromisoformat(listed["created_at"])
    assert dt.datetime.fromisoformat(listed["expires_at"]) - created <= dt.timedelta(minutes=30, seconds=5)

    travel(owner, tokens["session_id"], minutes=29)
    assert http.get("/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
    travel(owner, tokens["session_id"], minutes=31)  # 31 minutes since that request
    problem(http.get("/v1/auth/me", headers=bearer(tokens["access_token"])), 401, "session_revoked")
    problem(refresh(http, tokens["refresh_token"]), 401, "refresh_expired")


def test_an_active_session_ends_at_its_absolute_maximum(http, sign_up, owner):
    account = sign_up()
    tokens = logged_in(http, account.email, account.password)
    session = tokens["session_id"]
    for step in range(23):  # 23 x 25 minutes: 9 h 35, never idle for 30 minutes
        travel(owner, session, minutes=25)
        if step % 4 == 3:
            renewed = refresh(http, tokens["refresh_token"])
            assert renewed.status_code == 200, (step, renewed.text)
            tokens = renewed.json()
        else:
            assert http.get("/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200, step
    travel(owner, session, minutes=26)  # 10 h 01 after login
    problem(http.get("/v1/auth/me", headers=bearer(tokens["access_token"])), 401, "session_revoked")
    problem(refresh(http, tokens["refresh_token"]), 401, "refresh_expired")
    assert login(http, account.email, account.password).status_code == 200  # logging in again works


@pytest.fixture(scope="module")
def long_sessions_http(owner_url: str, redis_url: str, tmp_path_factory) -> Iterator[httpx.Client]:
    """An API whose sessions may idle for a week and last 30 days, with refresh tokens of 1 day."""
    process, url = start_api(
        owner_url,
        redis_url,
        tmp_path_factory.mktemp("api-long-sessions"),
        TENANTRY_SESSION_IDLE_MINUTES=str(7 * 24 * 60),
        TENANTRY_SESSION_MAX_HOURS=str(30 * 24),
        TENANTRY_REFRESH_DAYS="1",
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_a_session_ends_when_its_refresh_token_outlives_the_refresh_lifetime(long_sessions_http, sign_up, owner):
    http = long_sessions_http
    account = sign_up()
    tokens = logged_in(http, account.email, account.password)
    session = tokens["session_id"]
    for _ in range(2):  # refreshed within a day, twice: 46 hours in all
        travel(owner, session, hours=23)
        assert http.get("/v1/auth/me", headers=bearer(tokens["access_token"])).status_code == 200
        renewed = refresh(http, tokens["refresh_token"])
        assert renewed.status_code == 200, renewed.text
        tokens = renewed.json()
    travel(owner, session, hours=25)  # not refreshed for more than a day
    problem(refresh(http, tokens["refresh_token"]), 401, "refresh_expired")
    problem(http.get("/v1/auth/me", headers=bearer(tokens["access_token"])), 401, "session_revoked")


# -- profile and tenant -------------------------------------------------------------------------------


def test_a_user_changes_their_name(http, sign_up):
    account = sign_up()
    changed = http.patch("/v1/auth/me", headers=account.headers, json={"name": "  Ann Example  "})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Ann Example" and changed.json()["actor_id"] == account.user_id
    assert http.get("/v1/auth/me", headers=account.headers).json()["name"] == "Ann Example"

    problem(http.patch("/v1/auth/me", headers=account.headers, json={"name": "   "}), 422, "invalid_value", "name")
    problem(
        http.patch("/v1/auth/me", headers=account.headers, json={"name": "Ann", "email": "x@example.com"}),
        422,
        "invalid_body",
        field="email",
    )
    key = http.post("/v1/api-keys", headers=account.headers, json={"name": "ci", "scopes": ["projects:read"]}).json()
    problem(
        http.patch("/v1/auth/me", headers={"X-API-Key": key["key"]}, json={"name": "Bot"}), 403, "user_token_required"
    )


def member_token(http: httpx.Client, owner: psycopg.Connection, sign_up, tenant_id: str, role: str) -> dict:
    """A new user made `role` of the tenant (by the owner connection) and logged in there."""
    user = sign_up()
    owner.execute(
        "INSERT INTO core.memberships (tenant_id, user_id, role) VALUES (%s, %s, %s)", (tenant_id, user.user_id, role)
    )
    switched = http.post("/v1/auth/switch-tenant", headers=user.headers, json={"tenant_id": tenant_id})
    assert switched.status_code == 200, switched.text
    return bearer(switched.json()["access_token"])


def test_owners_and_admins_change_the_tenants_name_and_settings(http, sign_up, owner, as_admin):
    account = sign_up()
    changed = http.patch(
        "/v1/tenant",
        headers=account.headers,
        json={"name": " Acme Rockets ", "settings": {"timezone": "Europe/Berlin", "locale": "de-DE"}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Acme Rockets"
    assert changed.json()["settings"] == {"timezone": "Europe/Berlin", "locale": "de-DE"}
    # merged; null removes a key
    merged = http.patch(
        "/v1/tenant", headers=account.headers, json={"settings": {"locale": None, "week_start": "monday"}}
    )
    assert merged.status_code == 200, merged.text
    assert http.get("/v1/tenant", headers=account.headers).json()["settings"] == {
        "timezone": "Europe/Berlin",
        "week_start": "monday",
    }

    # validated by the database, naming the field
    for change, field in [
        ({"settings": {"colour": "red"}}, "settings.colour"),
        ({"settings": {"timezone": "Mars/Olympus_Mons"}}, "settings.timezone"),
        ({"settings": {"default_task_priority": "whenever"}}, "settings.default_task_priority"),
    ]:
        problem(http.patch("/v1/tenant", headers=account.headers, json=change), 422, "invalid_body", field)
    problem(http.patch("/v1/tenant", headers=account.headers, json={"name": "  "}), 422, "invalid_value", "name")
    problem(
        http.patch("/v1/tenant", headers=account.headers, json={"plan_id": "enterprise"}),
        422,
        "invalid_body",
        field="plan_id",
    )

    # members may not; admins may
    member = member_token(http, owner, sign_up, account.tenant_id, "member")
    problem(http.patch("/v1/tenant", headers=member, json={"name": "Mine now"}), 403, "missing_scope")
    admin = member_token(http, owner, sign_up, account.tenant_id, "admin")
    assert http.patch("/v1/tenant", headers=admin, json={"name": "Acme Admins"}).status_code == 200

    # a suspended tenant reads but does not change
    with as_admin() as conn:
        conn.execute("SELECT admin.set_tenant_status(%s, 'suspended')", (account.tenant_id,))
    problem(http.patch("/v1/tenant", headers=account.headers, json={"name": "Quietly"}), 403, "tenant_suspended")
    assert http.get("/v1/tenant", headers=account.headers).json()["name"] == "Acme Admins"

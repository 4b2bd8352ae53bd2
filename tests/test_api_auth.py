"""HTTP-level tests of /v1/signup and /v1/auth/*: sign-up, login and lockout, access
tokens, refresh rotation with reuse detection, logout, sessions, switching tenant, and
request ids. Everything runs against the real gunicorn-served API (see conftest)."""

from __future__ import annotations

import base64
import time
import uuid

import jwt
import pytest

from tests.helpers import TEST_JWT_SECRET, bearer, problem


def login(http, email: str, password: str, **extra):
    return http.post("/v1/auth/login", json={"email": email, "password": password, **extra})


def logged_in(http, account) -> dict:
    resp = login(http, account.email, account.password)
    assert resp.status_code == 200, resp.text
    return resp.json()


def signup_body(tag: str | None = None, **changes) -> dict:
    tag = tag or uuid.uuid4().hex[:12]
    return {
        "email": f"a-{tag}@tenantry.test",
        "name": f"A {tag}",
        "password": "password-" + tag,
        "tenant_slug": f"a-{tag}",
        "tenant_name": f"Tenant {tag}",
    } | changes


# -- sign-up -------------------------------------------------------------------------------


def test_signup_returns_tokens_that_work(http):
    data = signup_body()
    resp = http.post("/v1/signup", json=data)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["role"] == "owner"
    assert body["access_token"] and body["refresh_token"].startswith("rt_")
    assert body["expires_in"] > 0 and body["email_verified"] is False  # until the mailed token is sent
    assert "members:manage" in body["scopes"] and "keys:manage" in body["scopes"]
    me = http.get("/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json()["email"] == data["email"]
    assert me.json()["tenant_id"] == body["tenant_id"] and me.json()["actor_id"] == body["user_id"]


def test_signup_duplicate_email_and_slug(http, sign_up):
    existing = sign_up()
    # same email (other case), fresh slug
    dup_email = http.post("/v1/signup", json=signup_body(email=existing.email.upper()))
    problem(dup_email, 409, "email_taken", field="email")
    # fresh email, slug of an existing tenant
    slug = f"dup-{uuid.uuid4().hex[:10]}"
    assert http.post("/v1/signup", json=signup_body(tenant_slug=slug)).status_code == 201
    problem(http.post("/v1/signup", json=signup_body(tenant_slug=slug)), 409, "slug_taken", field="slug")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"email": None}, "email"),  # missing
        ({"password": None}, "password"),  # missing
        ({"password": "short"}, "password"),  # under 10 characters
        ({"is_admin": True}, "is_admin"),  # not a field of the body
    ],
)
def test_signup_bad_body_names_the_field(http, change, field):
    data = signup_body()
    for name, value in change.items():
        if value is None:
            del data[name]
        else:
            data[name] = value
    body = problem(http.post("/v1/signup", json=data), 422, "invalid_body", field=field)
    assert any(error["field"] == field for error in body["errors"])


def test_signup_rules_of_the_database(http):
    problem(http.post("/v1/signup", json=signup_body(email="not-an-email")), 422, "invalid_value")
    problem(http.post("/v1/signup", json=signup_body(tenant_slug="Not A Slug")), 422, "invalid_value")
    # no plan to choose: a new tenant starts on the free plan (tests/test_security_identity.py)
    problem(http.post("/v1/signup", json=signup_body(plan="platinum")), 422, "invalid_body", field="plan")
    # nothing was left behind by the refusals: the same email and slug sign up fine
    tag = uuid.uuid4().hex[:12]
    problem(http.post("/v1/signup", json=signup_body(tag, tenant_slug="Not A Slug")), 422, "invalid_value")
    assert http.post("/v1/signup", json=signup_body(tag)).status_code == 201


def test_signup_non_json_body(http):
    resp = http.post("/v1/signup", content=b"{not json", headers={"Content-Type": "application/json"})
    problem(resp, 400, "invalid_json")


# -- login and lockout ------------------------------------------------------------------------


def test_login_right_and_wrong_password(http, sign_up):
    account = sign_up()
    ok = login(http, account.email, account.password)
    assert ok.status_code == 200, ok.text
    tokens = ok.json()
    assert tokens["tenant_id"] == account.tenant_id and tokens["user_id"] == account.user_id
    assert tokens["session_id"] and tokens["refresh_token"] != account.refresh_token
    me = http.get("/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200 and me.json()["email"] == account.email

    wrong = problem(login(http, account.email, account.password + "x"), 401, "invalid_credentials")
    unknown = problem(
        login(http, f"nobody-{uuid.uuid4().hex}@tenantry.test", account.password), 401, "invalid_credentials"
    )
    assert wrong["detail"] == unknown["detail"]  # nothing tells the two apart


def test_login_email_is_case_insensitive_and_success_resets_failures(http, sign_up):
    account = sign_up()
    assert login(http, account.email.upper(), account.password).status_code == 200
    for _ in range(4):
        problem(login(http, account.email, "wrong-password"), 401, "invalid_credentials")
    assert login(http, account.email, account.password).status_code == 200  # resets the count
    for _ in range(4):
        problem(login(http, account.email, "wrong-password"), 401, "invalid_credentials")
    assert login(http, account.email, account.password).status_code == 200


def test_five_wrong_passwords_lock_the_account(http, sign_up):
    account = sign_up()
    for _ in range(4):
        problem(login(http, account.email, "wrong-password"), 401, "invalid_credentials")
    fifth = login(http, account.email, "wrong-password")
    body = problem(fifth, 429, "account_locked")
    assert 890 <= int(fifth.headers["Retry-After"]) <= 900
    assert 890 <= body["retry_after"] <= 900
    # locked: even the right password is refused
    right = login(http, account.email, account.password)
    problem(right, 429, "account_locked")
    assert 0 < int(right.headers["Retry-After"]) <= 900
    # existing sessions are not affected by the lockout
    assert http.get("/v1/auth/me", headers=account.headers).status_code == 200


# -- access tokens -----------------------------------------------------------------------------


def test_missing_and_bad_credentials(http, sign_up):
    missing = http.get("/v1/auth/me")
    problem(missing, 401, "missing_credentials")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    garbage = http.get("/v1/auth/me", headers=bearer("not-a-jwt"))
    problem(garbage, 401, "invalid_token")
    assert garbage.headers["WWW-Authenticate"].startswith("Bearer")
    problem(http.get("/v1/auth/me", headers={"Authorization": "Basic dXNlcjpwYXNz"}), 401, "invalid_token")

    account = sign_up()
    claims = jwt.decode(account.access_token, TEST_JWT_SECRET, algorithms=["HS256"])
    forged = jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256")
    problem(http.get("/v1/auth/me", headers=bearer(forged)), 401, "invalid_token")
    # a token signed with the right key but with alg none is refused too
    unsigned = jwt.encode(claims, "", algorithm="none")  # "" is no key (typed: cryptography is installed)
    problem(http.get("/v1/auth/me", headers=bearer(unsigned)), 401, "invalid_token")


def test_expired_access_token(http, sign_up):
    account = sign_up()
    real = jwt.decode(account.access_token, TEST_JWT_SECRET, algorithms=["HS256"])
    now = int(time.time())
    claims = {name: real[name] for name in ("sub", "tid", "sid", "jti")} | {"iat": now - 3600, "exp": now - 60}
    expired = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    problem(http.get("/v1/auth/me", headers=bearer(expired)), 401, "token_expired")
    # the same claims, not expired, are accepted: only exp made the difference
    fresh = jwt.encode(claims | {"exp": now + 600}, TEST_JWT_SECRET, algorithm="HS256")
    assert http.get("/v1/auth/me", headers=bearer(fresh)).status_code == 200


# -- refresh -------------------------------------------------------------------------------------


def refresh(http, token: str):
    return http.post("/v1/auth/refresh", json={"refresh_token": token})


def test_refresh_rotates_and_reuse_revokes_the_session(http, sign_up):
    account = sign_up()
    first = refresh(http, account.refresh_token)
    assert first.status_code == 200, first.text
    r1 = first.json()
    assert r1["refresh_token"] != account.refresh_token and r1["tenant_id"] == account.tenant_id
    assert http.get("/v1/auth/me", headers=bearer(r1["access_token"])).status_code == 200

    second = refresh(http, r1["refresh_token"])  # the new one works (once)
    assert second.status_code == 200, second.text
    r2 = second.json()
    assert r2["session_id"] == r1["session_id"]  # same session, new token

    # the spent original token is presented again: reuse, the whole session ends
    problem(refresh(http, account.refresh_token), 401, "refresh_reused")
    problem(http.get("/v1/auth/me", headers=bearer(r2["access_token"])), 401, "session_revoked")
    problem(refresh(http, r2["refresh_token"]), 401, "refresh_revoked")


def test_malformed_and_unknown_refresh_tokens(http, sign_up):
    problem(refresh(http, "garbage"), 401, "refresh_invalid")
    problem(refresh(http, "rt_" + "A" * 10), 401, "refresh_invalid")
    account = sign_up()
    # well-formed, right tenant, unknown secret
    raw = uuid.UUID(account.tenant_id).bytes + b"\x00" * 32
    unknown = "rt_" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    problem(refresh(http, unknown), 401, "refresh_invalid")


# -- logout and sessions -------------------------------------------------------------------------


def test_logout_ends_the_session_at_once(http, sign_up):
    account = sign_up()
    other = logged_in(http, account)
    resp = http.post("/v1/auth/logout", headers=account.headers)
    assert resp.status_code == 204 and resp.content == b""
    problem(http.get("/v1/auth/me", headers=account.headers), 401, "session_revoked")
    problem(refresh(http, account.refresh_token), 401, "refresh_revoked")
    # only that session: another login of the same user still works
    assert http.get("/v1/auth/me", headers=bearer(other["access_token"])).status_code == 200


def test_sessions_list_and_revoke(http, sign_up):
    account = sign_up()
    a = logged_in(http, account)
    b = logged_in(http, account)
    listed = http.get("/v1/auth/sessions", headers=bearer(a["access_token"]))
    assert listed.status_code == 200, listed.text
    items = listed.json()["items"]
    assert len(items) >= 3  # the sign-up's and two logins
    ids = {(s["tenant_id"], s["session_id"]) for s in items}
    assert {(account.tenant_id, a["session_id"]), (account.tenant_id, b["session_id"])} <= ids

    gone = http.delete(f"/v1/auth/sessions/{account.tenant_id}/{b['session_id']}", headers=bearer(a["access_token"]))
    assert gone.status_code == 204, gone.text
    problem(http.get("/v1/auth/me", headers=bearer(b["access_token"])), 401, "session_revoked")
    assert http.get("/v1/auth/me", headers=bearer(a["access_token"])).status_code == 200
    after = {s["session_id"] for s in http.get("/v1/auth/sessions", headers=bearer(a["access_token"])).json()["items"]}
    assert b["session_id"] not in after and a["session_id"] in after

    problem(
        http.delete(f"/v1/auth/sessions/{account.tenant_id}/{uuid.uuid4()}", headers=bearer(a["access_token"])),
        404,
        "not_found",
    )
    problem(
        http.delete(f"/v1/auth/sessions/{account.tenant_id}/{b['session_id']}", headers=bearer(a["access_token"])),
        404,
        "not_found",
    )  # already revoked
    problem(
        http.delete(f"/v1/auth/sessions/{account.tenant_id}/not-a-uuid", headers=bearer(a["access_token"])),
        404,
        "not_found",
    )

    # another user cannot revoke this user's session
    stranger = sign_up()
    problem(
        http.delete(f"/v1/auth/sessions/{account.tenant_id}/{a['session_id']}", headers=stranger.headers),
        404,
        "not_found",
    )
    assert http.get("/v1/auth/me", headers=bearer(a["access_token"])).status_code == 200

    c = logged_in(http, account)
    everything = http.delete("/v1/auth/sessions", headers=bearer(a["access_token"]))
    assert everything.status_code == 200, everything.text
    assert everything.json() == {"revoked": 3}  # sign-up session, a and c
    for token in (account.access_token, a["access_token"], c["access_token"]):
        problem(http.get("/v1/auth/me", headers=bearer(token)), 401, "session_revoked")
    problem(refresh(http, c["refresh_token"]), 401, "refresh_revoked")
    # the stranger's session is untouched
    assert http.get("/v1/auth/me", headers=stranger.headers).status_code == 200


def test_api_keys_cannot_call_user_only_routes(http, sign_up):
    account = sign_up()
    created = http.post("/v1/api-keys", headers=account.headers, json={"name": "ci", "scopes": ["projects:read"]})
    assert created.status_code == 201, created.text
    key = {"X-API-Key": created.json()["key"]}
    problem(http.get("/v1/auth/sessions", headers=key), 403, "user_token_required")
    problem(http.delete("/v1/auth/sessions", headers=key), 403, "user_token_required")
    problem(http.post("/v1/auth/logout", headers=key), 403, "user_token_required")
    problem(
        http.post("/v1/auth/switch-tenant", headers=key, json={"tenant_id": account.tenant_id}),
        403,
        "user_token_required",
    )
    # the key itself is fine on routes open to keys
    me = http.get("/v1/auth/me", headers=key)
    assert me.status_code == 200 and me.json()["actor_type"] == "api_key"
    assert me.json()["scopes"] == ["projects:read"]


# -- switching tenant ------------------------------------------------------------------------------


def test_switch_tenant(http, sign_up, outbox):
    a, b = sign_up(), sign_up()
    invited = http.post("/v1/invitations", headers=a.headers, json={"email": b.email, "role": "member"})
    assert invited.status_code == 201, invited.text
    # b accepts logged in as b (the token alone does not add an existing account)
    token = outbox.token(b.email, "invitation")
    accepted = http.post("/v1/invitations/accept", headers=b.headers, json={"token": token})
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {"user_id": b.user_id, "tenant_id": a.tenant_id, "role": "member", "created_user": False}

    switched = http.post("/v1/auth/switch-tenant", headers=b.headers, json={"tenant_id": a.tenant_id})
    assert switched.status_code == 200, switched.text
    tokens = switched.json()
    assert tokens["tenant_id"] == a.tenant_id and tokens["role"] == "member"
    assert tokens["session_id"] != jwt.decode(b.access_token, options={"verify_signature": False})["sid"]
    me = http.get("/v1/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["tenant_id"] == a.tenant_id and me["role"] == "member" and me["actor_id"] == b.user_id
    assert "members:manage" not in me["scopes"] and "projects:write" in me["scopes"]
    # the new session reads tenant A's data; B's first session is still in B
    assert http.get("/v1/projects", headers=bearer(tokens["access_token"])).status_code == 200
    assert http.get("/v1/auth/me", headers=b.headers).json()["tenant_id"] == b.tenant_id
    # and its refresh token stays in tenant A
    refreshed = refresh(http, tokens["refresh_token"])
    assert refreshed.status_code == 200 and refreshed.json()["tenant_id"] == a.tenant_id
    assert refreshed.json()["role"] == "member"

    # login straight into tenant A works too
    direct = login(http, b.email, b.password, tenant_id=a.tenant_id)
    assert direct.status_code == 200 and direct.json()["tenant_id"] == a.tenant_id

    # a tenant B is not a member of
    c = sign_up()
    problem(
        http.post("/v1/auth/switch-tenant", headers=b.headers, json={"tenant_id": c.tenant_id}), 403, "not_a_member"
    )
    problem(
        http.post("/v1/auth/switch-tenant", headers=b.headers, json={"tenant_id": str(uuid.uuid4())}),
        403,
        "not_a_member",
    )
    problem(login(http, b.email, b.password, tenant_id=c.tenant_id), 403, "not_a_member")


# -- request ids ---------------------------------------------------------------------------------------


def test_request_id_echoed_generated_and_in_problems(http, sign_up):
    account = sign_up()
    given = f"req-{uuid.uuid4().hex}"
    echoed = http.get("/v1/auth/me", headers=account.headers | {"X-Request-ID": given})
    assert echoed.status_code == 200 and echoed.headers["X-Request-ID"] == given

    generated = http.get("/v1/auth/me", headers=account.headers)
    first = generated.headers["X-Request-ID"]
    second = http.get("/v1/auth/me", headers=account.headers).headers["X-Request-ID"]
    assert first and second and first != second

    failed = http.get("/v1/auth/me", headers={"X-Request-ID": given})
    assert problem(failed, 401, "missing_credentials")["request_id"] == given
    unmatched = http.get("/v1/no-such-route")
    assert unmatched.status_code == 404
    assert unmatched.json()["request_id"] == unmatched.headers["X-Request-ID"]

    # an unusable id (too long) is replaced, not echoed
    long_id = "x" * 201
    replaced = http.get("/v1/auth/me", headers=account.headers | {"X-Request-ID": long_id})
    assert replaced.headers["X-Request-ID"] != long_id and replaced.headers["X-Request-ID"]


# -- disabled accounts (no API disables one: the owner connection does) --------------------------


def test_disabled_account_cannot_log_in_or_use_its_sessions(http, sign_up, owner):
    account = sign_up()
    owner.execute("UPDATE core.users SET status = 'disabled' WHERE user_id = %s", (account.user_id,))
    problem(login(http, account.email, account.password), 403, "account_unavailable")
    problem(http.get("/v1/auth/me", headers=account.headers), 401, "session_revoked")


def test_disabled_account_cannot_refresh(http, sign_up, owner):
    account = sign_up()
    owner.execute("UPDATE core.users SET status = 'disabled' WHERE user_id = %s", (account.user_id,))
    problem(refresh(http, account.refresh_token), 401, "refresh_revoked")
    # and the session is over for good, even if the account is enabled again
    owner.execute("UPDATE core.users SET status = 'active' WHERE user_id = %s", (account.user_id,))
    problem(refresh(http, account.refresh_token), 401, "refresh_revoked")

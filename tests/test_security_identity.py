"""Identity takeovers, closed, tested through the real HTTP API (see conftest):

- accepting an invitation needs more than its token: an existing account must be logged
  in as itself, a new account is created verified (the token proves the mailbox);
- sign-up verifies the email address (a single-use token sent by mail); an unverified
  account joins no tenant, and a verified sign-up of the same address replaces it, so an
  account that signed up first with someone else's address (pre-hijacking) keeps nothing;
- only owners create, resend or revoke owner invitations, and no one but the invitee
  ever sees an invitation token (it is mailed, not returned);
- sign-up cannot choose a paid plan: a new tenant starts on the free plan.

Mail is read from core.mail_outbox (the `outbox` fixture), where the transaction that
made a token queued it: the tests' mail sink.
"""

from __future__ import annotations

import uuid

from tests.helpers import bearer, problem


def new_address() -> str:
    return f"id-{uuid.uuid4().hex[:12]}@tenantry.test"


def signup(http, email: str, name: str = "Someone", password: str | None = None):
    tag = uuid.uuid4().hex[:12]
    return http.post(
        "/v1/signup",
        json={
            "email": email,
            "name": name,
            "password": password or "password-" + tag,
            "tenant_slug": f"id-{tag}",
            "tenant_name": f"{name}'s tenant",
        },
    )


def login(http, email: str, password: str):
    return http.post("/v1/auth/login", json={"email": email, "password": password})


def invite(http, headers, email: str, role: str = "member"):
    return http.post("/v1/invitations", headers=headers, json={"email": email, "role": role})


def accept(http, token: str, headers: dict | None = None, **account):
    return http.post("/v1/invitations/accept", headers=headers or {}, json={"token": token, **account})


def member_ids(http, headers) -> set[str]:
    resp = http.get("/v1/members", headers=headers)
    assert resp.status_code == 200, resp.text
    return {m["user_id"] for m in resp.json()["items"]}


# -- item 4: accepting an invitation ---------------------------------------------------------------


def test_an_invitation_token_alone_does_not_add_an_existing_account(http, sign_up, outbox):
    inviter, invitee, stranger = sign_up(), sign_up(), sign_up()
    assert invite(http, inviter.headers, invitee.email).status_code == 201
    token = outbox.token(invitee.email, "invitation")

    # the token without the account's consent (no login): refused, the account joins nothing
    problem(accept(http, token), 401, "login_required")
    problem(accept(http, token, name="Hijacked", password="attacker-password"), 401, "login_required")
    # logged in as someone else
    problem(accept(http, token, stranger.headers), 403, "invitation_email_mismatch")
    assert invitee.user_id not in member_ids(http, inviter.headers)
    assert stranger.user_id not in member_ids(http, inviter.headers)
    # an API key is no person
    key = http.post("/v1/api-keys", headers=invitee.headers, json={"name": "k", "scopes": ["projects:read"]})
    problem(accept(http, token, {"X-API-Key": key.json()["key"]}), 403, "user_token_required")

    # the account itself, logged in: joins; a name or password is refused then
    problem(accept(http, token, invitee.headers, name="x"), 422, "invalid_body", field="name")
    accepted = accept(http, token, invitee.headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json() == {
        "user_id": invitee.user_id,
        "tenant_id": inviter.tenant_id,
        "role": "member",
        "created_user": False,
    }
    assert invitee.user_id in member_ids(http, inviter.headers)
    problem(accept(http, token, invitee.headers), 409, "invitation_used")
    # and its password is unchanged
    assert login(http, invitee.email, invitee.password).status_code == 200


def test_an_unverified_account_cannot_join_a_tenant(http, sign_up, outbox):
    inviter = sign_up()
    unverified = sign_up(verified=False)
    assert invite(http, inviter.headers, unverified.email).status_code == 201
    token = outbox.token(unverified.email, "invitation")
    problem(accept(http, token, unverified.headers), 403, "email_unverified")
    assert unverified.user_id not in member_ids(http, inviter.headers)

    # once verified, the same account accepts
    verified = http.post("/v1/auth/verify-email", json={"token": outbox.token(unverified.email, "verify_email")})
    assert verified.status_code == 200, verified.text
    assert accept(http, token, unverified.headers).status_code == 200
    assert unverified.user_id in member_ids(http, inviter.headers)


def test_a_squatter_of_an_invited_address_does_not_join_and_loses_the_address(http, sign_up, outbox):
    """Pre-hijacking through an invitation: the attacker signs up first with the future
    employee's address; the employee accepts the invitation mailed to them."""
    company = sign_up()
    address = new_address()
    squatter_password = "squatter-password"
    squatted = signup(http, address, "Squatter", squatter_password)
    assert squatted.status_code == 201, squatted.text
    squatter = squatted.json()
    assert squatter["email_verified"] is False

    assert invite(http, company.headers, address, "developer").status_code == 201
    token = outbox.token(address, "invitation")  # in the employee's mailbox
    # even with the token, the squatter's unverified account cannot join
    problem(accept(http, token, bearer(squatter["access_token"])), 403, "email_unverified")

    # the employee accepts as a new account: created verified, and the squatter's account
    # loses the address, its password and its sessions
    employee_password = "employee-password"
    accepted = accept(http, token, name="Employee", password=employee_password)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["created_user"] is True and body["user_id"] != squatter["user_id"]
    assert body["tenant_id"] == company.tenant_id and body["role"] == "developer"
    members = member_ids(http, company.headers)
    assert body["user_id"] in members and squatter["user_id"] not in members

    problem(http.get("/v1/projects", headers=bearer(squatter["access_token"])), 401, "session_revoked")
    problem(http.post("/v1/auth/refresh", json={"refresh_token": squatter["refresh_token"]}), 401, "refresh_revoked")
    problem(login(http, address, squatter_password), 401, "invalid_credentials")
    tokens = login(http, address, employee_password)
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["user_id"] == body["user_id"] and tokens.json()["tenant_id"] == company.tenant_id
    # the squatter's verification mail (which went to the employee) no longer verifies anything
    problem(
        http.post("/v1/auth/verify-email", json={"token": outbox.token(address, "verify_email")}),
        404,
        "verification_invalid",
    )
    # the address is now verified: a new sign-up with it is refused
    problem(signup(http, address), 409, "email_taken", field="email")


def test_a_verified_signup_replaces_an_unverified_squatter(http, outbox):
    address = new_address()
    squatted = signup(http, address, "Squatter", "squatter-password")
    assert squatted.status_code == 201, squatted.text
    squatter = squatted.json()
    squatter_token = outbox.token(address, "verify_email")

    # the address's owner signs up too: not refused (the squatter would block them), but
    # the new account has the address only once it verifies it
    owned = signup(http, address, "Owner", "owner-password")
    assert owned.status_code == 201, owned.text
    owner = owned.json()
    assert owner["user_id"] != squatter["user_id"] and owner["email_verified"] is False
    assert http.get("/v1/auth/me", headers=bearer(squatter["access_token"])).status_code == 200  # not yet
    owner_token = outbox.token(address, "verify_email")
    assert owner_token != squatter_token
    assert outbox.last(address, "verify_email")["name"] == "Owner"

    verified = http.post("/v1/auth/verify-email", json={"token": owner_token})
    assert verified.status_code == 200, verified.text
    assert verified.json()["user_id"] == owner["user_id"] and verified.json()["email"] == address

    # the squatter is out: sessions, login, its own verification token
    problem(http.get("/v1/auth/me", headers=bearer(squatter["access_token"])), 401, "session_revoked")
    problem(login(http, address, "squatter-password"), 401, "invalid_credentials")
    problem(http.post("/v1/auth/verify-email", json={"token": squatter_token}), 404, "verification_invalid")
    # the owner logs in with the address into their own tenant
    tokens = login(http, address, "owner-password")
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["user_id"] == owner["user_id"] and tokens.json()["tenant_id"] == owner["tenant_id"]
    me = http.get("/v1/auth/me", headers=bearer(tokens.json()["access_token"])).json()
    assert me["email"] == address


def test_email_verification_tokens(http, outbox, owner):
    address = new_address()
    signed = signup(http, address, "Vera")
    assert signed.status_code == 201 and signed.json()["email_verified"] is False
    mail = outbox.last(address, "verify_email")
    assert mail["name"] == "Vera" and mail["token"].startswith("vfy_")
    stored = owner.execute(
        "SELECT encode(token_hash, 'hex') AS h FROM core.email_verifications WHERE user_id = %s",
        (signed.json()["user_id"],),
    ).fetchall()
    assert stored and all(mail["token"] not in row["h"] for row in stored)  # only its hash is kept

    # resend: 202 whatever the address (no account enumeration); a new token replaces the old
    for nobody in (new_address(), "not-an-address"):
        resend = http.post("/v1/auth/verify-email/resend", json={"email": nobody})
        assert resend.status_code == 202 and resend.content == b"", resend.text
        assert outbox.messages(nobody) == []
    resend = http.post("/v1/auth/verify-email/resend", json={"email": address.upper()})
    assert resend.status_code == 202, resend.text
    assert len(outbox.messages(address, "verify_email")) == 2
    fresh = outbox.token(address, "verify_email")
    problem(http.post("/v1/auth/verify-email", json={"token": mail["token"]}), 404, "verification_invalid")

    owner.execute(
        "UPDATE core.email_verifications SET expires_at = now() - interval '1 second' WHERE user_id = %s"
        " AND used_at IS NULL",
        (signed.json()["user_id"],),
    )
    problem(http.post("/v1/auth/verify-email", json={"token": fresh}), 410, "verification_expired")
    assert http.post("/v1/auth/verify-email/resend", json={"email": address}).status_code == 202
    ok = http.post("/v1/auth/verify-email", json={"token": outbox.token(address, "verify_email")})
    assert ok.status_code == 200, ok.text
    # single use; and a verified address gets no more verification mail
    problem(
        http.post("/v1/auth/verify-email", json={"token": outbox.token(address, "verify_email")}),
        404,
        "verification_invalid",
    )
    assert http.post("/v1/auth/verify-email/resend", json={"email": address}).status_code == 202
    assert len(outbox.messages(address, "verify_email")) == 3
    problem(http.post("/v1/auth/verify-email", json={"token": "vfy_garbage"}), 404, "verification_invalid")


# -- item 4: owner invitations, and tokens only by mail ------------------------------------------------------


def test_only_owners_create_resend_or_revoke_owner_invitations(http, sign_up, outbox):
    owner = sign_up()
    admin_email = new_address()
    assert invite(http, owner.headers, admin_email, "admin").status_code == 201
    password = "admin-password"
    assert accept(http, outbox.token(admin_email, "invitation"), name="Admin", password=password).status_code == 200
    admin = bearer(login(http, admin_email, password).json()["access_token"])

    created = invite(http, owner.headers, new_address(), "owner")
    assert created.status_code == 201, created.text
    owner_invitation = created.json()
    assert "token" not in owner_invitation  # the inviter never sees the token: it is mailed
    path = f"/v1/invitations/{owner_invitation['invitation_id']}"
    problem(invite(http, admin, new_address(), "owner"), 403, "owner_required")
    problem(http.post(f"{path}/resend", headers=admin), 403, "owner_required")
    problem(http.delete(path, headers=admin), 403, "owner_required")
    assert len(outbox.messages(owner_invitation["email"], "invitation")) == 1  # no new token was made

    # an admin still manages the invitations below owner, and never sees their tokens either
    member_invitation = invite(http, admin, new_address(), "member").json()
    resent = http.post(f"/v1/invitations/{member_invitation['invitation_id']}/resend", headers=admin)
    assert resent.status_code == 200, resent.text
    assert "token" not in resent.json()
    first, second = (m["data"]["token"] for m in outbox.messages(member_invitation["email"], "invitation"))
    assert first != second
    problem(accept(http, first, name="N", password="password-123456"), 404, "invitation_not_found")
    assert http.delete(f"/v1/invitations/{member_invitation['invitation_id']}", headers=admin).status_code == 200

    # the owner resends the owner invitation: the invitee gets the token, and becomes an owner
    mail_before = len(outbox.messages(owner_invitation["email"], "invitation"))
    again = http.post(f"{path}/resend", headers=owner.headers)
    assert again.status_code == 200 and "token" not in again.json(), again.text
    mail = outbox.last(owner_invitation["email"], "invitation")
    assert len(outbox.messages(owner_invitation["email"], "invitation")) == mail_before + 1
    assert mail["role"] == "owner" and mail["tenant_name"] and mail["invited_by"]
    accepted = accept(http, mail["token"], name="Co-owner", password="password-123456")
    assert accepted.status_code == 200 and accepted.json()["role"] == "owner", accepted.text


# -- item 7: no paid plan from sign-up ------------------------------------------------------------------------


def test_signup_cannot_choose_a_paid_plan(http):
    tag = uuid.uuid4().hex[:12]
    data = {
        "email": f"p-{tag}@tenantry.test",
        "name": "Plan",
        "password": "password-" + tag,
        "tenant_slug": f"p-{tag}",
        "tenant_name": "Plan",
    }
    for plan in ("enterprise", "pro", "free"):
        problem(http.post("/v1/signup", json=data | {"plan": plan}), 422, "invalid_body", field="plan")
    signed = http.post("/v1/signup", json=data)
    assert signed.status_code == 201, signed.text
    headers = bearer(signed.json()["access_token"])
    tenant = http.get("/v1/tenant", headers=headers)
    assert tenant.status_code == 200, tenant.text
    assert tenant.json()["plan_id"] == "free"
    assert tenant.headers["RateLimit-Limit"] == "60"  # the free plan's, not enterprise's 6000

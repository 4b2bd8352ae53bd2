"""HTTP-level tests of access control: roles and scopes, invitations, members, API keys
and platform administration, against the real gunicorn-served API (see conftest).

The `owner` connection (database superuser) is used only for states no API call can
create: an invitation or key whose expiry has passed, and a platform administrator."""

from __future__ import annotations

import base64
import datetime as dt
import re
import uuid
from dataclasses import dataclass

from tests.helpers import bearer, problem


def key_header(key: str) -> dict[str, str]:
    return {"X-API-Key": key}


def login(http, email: str, password: str, tenant_id: str | None = None) -> dict:
    resp = http.post("/v1/auth/login", json={"email": email, "password": password, "tenant_id": tenant_id})
    assert resp.status_code == 200, resp.text
    return resp.json()


def invite(http, account, email: str, role: str = "member"):
    return http.post("/v1/invitations", headers=account.headers, json={"email": email, "role": role})


def new_email() -> str:
    return f"i-{uuid.uuid4().hex[:12]}@tenantry.test"


@dataclass
class Member:
    """A user invited into a tenant and logged in there."""

    email: str
    password: str
    user_id: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def add_member(http, outbox, account, role: str) -> Member:
    """A new user, invited by `account` with `role`, accepted (with the token mailed to
    them) and logged in there."""
    email, password = new_email(), "password-" + uuid.uuid4().hex[:8]
    invited = invite(http, account, email, role)
    assert invited.status_code == 201, invited.text
    accepted = http.post(
        "/v1/invitations/accept",
        json={"token": outbox.token(email, "invitation"), "name": "Invitee", "password": password},
    )
    assert accepted.status_code == 200, accepted.text
    tokens = login(http, email, password, account.tenant_id)
    assert tokens["role"] == role
    return Member(email, password, tokens["user_id"], tokens["access_token"], tokens["refresh_token"])


def create_project(http, headers):
    return http.post("/v1/projects", headers=headers, json={"name": f"p-{uuid.uuid4().hex[:10]}"})


def create_key(http, account, scopes: list[str], **extra):
    return http.post(
        "/v1/api-keys", headers=account.headers, json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": scopes, **extra}
    )


def list_keys(http, account) -> dict[str, dict]:
    resp = http.get("/v1/api-keys", headers=account.headers)
    assert resp.status_code == 200, resp.text
    return {k["key_id"]: k for k in resp.json()["items"]}


# -- roles -> scopes -------------------------------------------------------------------------


def test_roles_grant_their_scopes(http, sign_up, outbox):
    account = sign_up()
    viewer = add_member(http, outbox, account, "viewer")
    listed = http.get("/v1/projects", headers=viewer.headers)
    assert listed.status_code == 200 and listed.json()["items"] == []
    problem(create_project(http, viewer.headers), 403, "missing_scope")
    assert http.get("/v1/members", headers=viewer.headers).status_code == 200  # members:read

    member = add_member(http, outbox, account, "member")
    created = create_project(http, member.headers)
    assert created.status_code == 201, created.text
    assert created.json()["created_by"] == member.user_id
    # the viewer sees it
    assert [p["project_id"] for p in http.get("/v1/projects", headers=viewer.headers).json()["items"]] == [
        created.json()["project_id"]
    ]
    problem(invite(http, member, new_email()), 403, "missing_scope")
    problem(http.get("/v1/api-keys", headers=member.headers), 403, "missing_scope")
    problem(
        http.patch(f"/v1/members/{viewer.user_id}", headers=member.headers, json={"role": "admin"}),
        403,
        "missing_scope",
    )


# -- invitations ---------------------------------------------------------------------------------


def invitation_statuses(http, account) -> dict[str, str]:
    resp = http.get("/v1/invitations", headers=account.headers)
    assert resp.status_code == 200, resp.text
    return {i["invitation_id"]: i["status"] for i in resp.json()["items"]}


def test_invitation_create_list_accept(http, sign_up, outbox):
    account = sign_up()
    email = new_email()
    created = invite(http, account, email, "developer")
    assert created.status_code == 201, created.text
    invitation = created.json()
    assert invitation["status"] == "pending" and invitation["role"] == "developer"
    assert invitation["email"] == email and invitation["invited_by"] == account.user_id
    # the token goes to the invitee only, by mail
    assert "token" not in invitation
    mail = outbox.last(email, "invitation")
    assert mail["token"].startswith("inv_") and mail["role"] == "developer"
    invitation["token"] = mail["token"]
    expires = dt.datetime.fromisoformat(invitation["expires_at"])
    assert dt.timedelta(days=6, hours=23) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=7)

    listed = http.get("/v1/invitations", headers=account.headers)
    assert listed.status_code == 200, listed.text
    items = {i["invitation_id"]: i for i in listed.json()["items"]}
    assert items[invitation["invitation_id"]]["status"] == "pending"
    assert "token" not in items[invitation["invitation_id"]] and "token_hash" not in items[invitation["invitation_id"]]

    # a new account needs a name and a password (of at least 10 characters)
    problem(http.post("/v1/invitations/accept", json={"token": invitation["token"]}), 422, "invalid_body", field="name")
    problem(
        http.post("/v1/invitations/accept", json={"token": invitation["token"], "name": "N"}),
        422,
        "invalid_body",
        field="password",
    )
    problem(
        http.post("/v1/invitations/accept", json={"token": invitation["token"], "name": "N", "password": "short"}),
        422,
        "invalid_body",
        field="password",
    )
    password = "password-" + uuid.uuid4().hex[:8]
    accepted = http.post(
        "/v1/invitations/accept", json={"token": invitation["token"], "name": "New Person", "password": password}
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["created_user"] is True
    assert accepted.json()["tenant_id"] == account.tenant_id and accepted.json()["role"] == "developer"

    tokens = login(http, email, password)
    assert tokens["tenant_id"] == account.tenant_id and tokens["role"] == "developer"
    assert tokens["user_id"] == accepted.json()["user_id"]

    problem(http.post("/v1/invitations/accept", json={"token": invitation["token"]}), 409, "invitation_used")
    problem(
        http.post("/v1/invitations/accept", json={"token": invitation["token"], "name": "Again", "password": password}),
        409,
        "invitation_used",
    )
    statuses = invitation_statuses(http, account)
    assert statuses[invitation["invitation_id"]] == "accepted"

    # now a member: cannot be invited again
    problem(invite(http, account, email.upper()), 409, "already_member", field="email")
    problem(invite(http, account, account.email), 409, "already_member", field="email")


def test_invitation_revoke_resend_expire(http, sign_up, owner, outbox):
    account = sign_up()

    def accept(token: str):
        return http.post("/v1/invitations/accept", json={"token": token, "name": "N", "password": "password-123456"})

    def invited(email: str) -> dict:
        created = invite(http, account, email)
        assert created.status_code == 201, created.text
        return created.json() | {"token": outbox.token(email, "invitation")}

    def resend(invitation: dict):
        resp = http.post(f"/v1/invitations/{invitation['invitation_id']}/resend", headers=account.headers)
        return resp, (outbox.token(invitation["email"], "invitation") if resp.status_code == 200 else None)

    revoked = invited(new_email())
    gone = http.delete(f"/v1/invitations/{revoked['invitation_id']}", headers=account.headers)
    assert gone.status_code == 200 and gone.json()["status"] == "revoked", gone.text
    problem(accept(revoked["token"]), 410, "invitation_revoked")
    problem(
        http.post(f"/v1/invitations/{revoked['invitation_id']}/resend", headers=account.headers),
        410,
        "invitation_revoked",
    )
    # a revoked invitation is no longer open: the email can be invited again
    assert invite(http, account, revoked["email"]).status_code == 201

    resent_from = invited(new_email())
    resent, resent_token = resend(resent_from)
    assert resent.status_code == 200, resent.text
    assert resent.json()["invitation_id"] == resent_from["invitation_id"]
    assert resent_token != resent_from["token"] and resent.json()["status"] == "pending"
    assert "token" not in resent.json()
    problem(accept(resent_from["token"]), 404, "invitation_not_found")
    ok = accept(resent_token)
    assert ok.status_code == 200 and ok.json()["created_user"] is True, ok.text

    expired = invited(new_email())
    owner.execute(
        "UPDATE core.invitations SET expires_at = now() - interval '1 minute'"
        " WHERE tenant_id = %s AND invitation_id = %s",
        (account.tenant_id, expired["invitation_id"]),
    )
    problem(accept(expired["token"]), 410, "invitation_expired")
    statuses = invitation_statuses(http, account)
    assert statuses[expired["invitation_id"]] == "expired"
    # resending an expired invitation gives it a new life
    again, again_token = resend(expired)
    assert again.status_code == 200 and again.json()["status"] == "pending"
    assert accept(again_token).status_code == 200

    problem(http.delete(f"/v1/invitations/{uuid.uuid4()}", headers=account.headers), 404, "not_found")

    # an existing user accepts logged in as themselves; the token alone (even with a name
    # and password) does not add their account (tests/test_security_identity.py)
    existing = sign_up()
    assert invite(http, account, existing.email).status_code == 201
    token = outbox.token(existing.email, "invitation")
    problem(
        http.post("/v1/invitations/accept", json={"token": token, "name": "Hijacked", "password": "attacker-password"}),
        401,
        "login_required",
    )
    linked = http.post("/v1/invitations/accept", headers=existing.headers, json={"token": token})
    assert linked.status_code == 200 and linked.json()["created_user"] is False, linked.text
    assert linked.json()["user_id"] == existing.user_id
    me = http.get("/v1/auth/me", headers=bearer(login(http, existing.email, existing.password)["access_token"]))
    assert me.json()["name"] != "Hijacked"


def test_invitation_conflicts_and_bad_tokens(http, sign_up, outbox):
    account = sign_up()
    email = new_email()
    assert invite(http, account, email).status_code == 201
    problem(invite(http, account, email), 409, "invitation_open", field="email")
    problem(invite(http, account, email.upper(), "viewer"), 409, "invitation_open", field="email")
    # another tenant may invite the same email
    assert invite(http, sign_up(), email).status_code == 201

    for token in ("garbage", "inv_", "inv_" + "A" * 20):
        problem(http.post("/v1/invitations/accept", json={"token": token}), 404, "invitation_not_found")
    # well formed, unknown invitation
    raw = uuid.UUID(account.tenant_id).bytes + uuid.uuid4().bytes + b"\x01" * 24
    forged = "inv_" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    problem(http.post("/v1/invitations/accept", json={"token": forged}), 404, "invitation_not_found")

    problem(invite(http, account, email, "superuser"), 422, "invalid_body", field="role")
    problem(invite(http, account, "not-an-email"), 422, "invalid_value")
    # only owners grant the owner role, by invitation too
    admin = add_member(http, outbox, account, "admin")
    problem(invite(http, admin, new_email(), "owner"), 403, "owner_required")
    assert invite(http, admin, new_email(), "admin").status_code == 201


# -- members ---------------------------------------------------------------------------------------


def members_by_id(http, headers) -> dict[str, dict]:
    resp = http.get("/v1/members", headers=headers)
    assert resp.status_code == 200, resp.text
    return {m["user_id"]: m for m in resp.json()["items"]}


def test_member_roles_and_the_last_owner(http, sign_up, outbox):
    account = sign_up()
    alice = add_member(http, outbox, account, "member")
    bob = add_member(http, outbox, account, "viewer")
    members = members_by_id(http, account.headers)
    assert {uid: m["role"] for uid, m in members.items()} == {
        account.user_id: "owner",
        alice.user_id: "member",
        bob.user_id: "viewer",
    }
    assert members[alice.user_id]["email"] == alice.email

    promoted = http.patch(f"/v1/members/{alice.user_id}", headers=account.headers, json={"role": "admin"})
    assert promoted.status_code == 200, promoted.text
    assert promoted.json() == {"tenant_id": account.tenant_id, "user_id": alice.user_id, "role": "admin"}
    # her existing token carries her new role at once (checked per request)
    me = http.get("/v1/auth/me", headers=alice.headers).json()
    assert me["role"] == "admin" and "members:manage" in me["scopes"]

    # an admin manages non-owners, never owners
    assert http.patch(f"/v1/members/{bob.user_id}", headers=alice.headers, json={"role": "member"}).status_code == 200
    problem(
        http.patch(f"/v1/members/{bob.user_id}", headers=alice.headers, json={"role": "owner"}), 403, "owner_required"
    )
    problem(
        http.patch(f"/v1/members/{account.user_id}", headers=alice.headers, json={"role": "viewer"}),
        403,
        "owner_required",
    )
    problem(http.delete(f"/v1/members/{account.user_id}", headers=alice.headers), 403, "owner_required")
    problem(
        http.patch(f"/v1/members/{bob.user_id}", headers=account.headers, json={"role": "root"}),
        422,
        "invalid_body",
        field="role",
    )
    problem(
        http.patch(f"/v1/members/{uuid.uuid4()}", headers=account.headers, json={"role": "viewer"}), 404, "not_found"
    )

    # the only owner can neither step down nor leave
    problem(
        http.patch(f"/v1/members/{account.user_id}", headers=account.headers, json={"role": "admin"}), 409, "last_owner"
    )
    problem(http.delete(f"/v1/members/{account.user_id}", headers=account.headers), 409, "last_owner")
    assert members_by_id(http, account.headers)[account.user_id]["role"] == "owner"

    # with a second owner the first can leave; their session in the tenant ends
    assert (
        http.patch(f"/v1/members/{alice.user_id}", headers=account.headers, json={"role": "owner"}).json()["role"]
        == "owner"
    )
    left = http.delete(f"/v1/members/{account.user_id}", headers=account.headers)
    assert left.status_code == 200, left.text
    assert left.json() == {"tenant_id": account.tenant_id, "user_id": account.user_id, "role": "owner"}
    problem(http.get("/v1/projects", headers=account.headers), 401, "session_revoked")
    assert account.user_id not in members_by_id(http, alice.headers)
    # and now alice is the last owner
    problem(http.delete(f"/v1/members/{alice.user_id}", headers=alice.headers), 409, "last_owner")


def test_anyone_may_leave(http, sign_up, outbox):
    account = sign_up()
    viewer = add_member(http, outbox, account, "viewer")
    left = http.delete(f"/v1/members/{viewer.user_id}", headers=viewer.headers)
    assert left.status_code == 200, left.text
    assert viewer.user_id not in members_by_id(http, account.headers)
    problem(http.get("/v1/projects", headers=viewer.headers), 401, "session_revoked")


def test_removed_member_sessions_stop_working(http, sign_up, outbox):
    account = sign_up()
    member = add_member(http, outbox, account, "member")
    assert http.get("/v1/projects", headers=member.headers).status_code == 200
    removed = http.delete(f"/v1/members/{member.user_id}", headers=account.headers)
    assert removed.status_code == 200 and removed.json()["role"] == "member", removed.text
    problem(http.get("/v1/projects", headers=member.headers), 401, "session_revoked")
    problem(create_project(http, member.headers), 401, "session_revoked")
    # the sessions are gone with the membership (FK cascade): their refresh token is unknown
    problem(http.post("/v1/auth/refresh", json={"refresh_token": member.refresh_token}), 401, "refresh_invalid")
    problem(http.delete(f"/v1/members/{member.user_id}", headers=account.headers), 404, "not_found")
    # no other tenant: the user cannot log in anywhere
    resp = http.post("/v1/auth/login", json={"email": member.email, "password": member.password})
    problem(resp, 403, "not_a_member")

    # invited again: the token alone does not add the existing account (it must log in to
    # accept, which an account with no tenant cannot do yet), and the old session does
    # not come back
    again = invite(http, account, member.email, "viewer")
    assert again.status_code == 201, again.text
    problem(
        http.post("/v1/invitations/accept", json={"token": outbox.token(member.email, "invitation")}),
        401,
        "login_required",
    )
    problem(http.get("/v1/projects", headers=member.headers), 401, "session_revoked")
    assert member.user_id not in members_by_id(http, account.headers)


# -- API keys ---------------------------------------------------------------------------------------


KEY_FORMAT = re.compile(r"^tnt_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$")


def test_api_key_create_list_use(http, sign_up):
    account = sign_up()
    created = create_key(http, account, ["projects:read", "projects:write"])
    assert created.status_code == 201, created.text
    key = created.json()
    assert KEY_FORMAT.match(key["key"]), key["key"]
    assert key["key"].split("_")[1] == key["prefix"]
    assert key["scopes"] == ["projects:read", "projects:write"] and key["created_by"] == account.user_id
    assert key["use_count"] == 0 and key["last_used_at"] is None

    listed = http.get("/v1/api-keys", headers=account.headers)
    assert listed.status_code == 200, listed.text
    for item in listed.json()["items"]:
        assert "key" not in item and not any("hash" in name for name in item), item
    assert key["key"] not in listed.text

    resp = http.get("/v1/projects", headers=key_header(key["key"]))
    assert resp.status_code == 200, resp.text
    made = create_project(http, key_header(key["key"]))
    assert made.status_code == 201, made.text
    assert made.json()["created_by"] == key["key_id"]  # the context's actor: the key

    used = list_keys(http, account)[key["key_id"]]
    assert used["use_count"] == 2 and used["last_used_at"] is not None
    assert used["last_used_ip"] == "127.0.0.1"
    assert http.get("/v1/projects", headers=key_header(key["key"])).status_code == 200
    again = list_keys(http, account)[key["key_id"]]
    assert again["use_count"] == 3 and again["last_used_at"] >= used["last_used_at"]

    # a key with fewer scopes is held to them
    read_only = create_key(http, account, ["projects:read"]).json()["key"]
    assert http.get("/v1/projects", headers=key_header(read_only)).status_code == 200
    problem(create_project(http, key_header(read_only)), 403, "missing_scope")
    problem(http.get("/v1/members", headers=key_header(read_only)), 403, "missing_scope")


def test_api_key_scope_rules(http, sign_up, outbox):
    account = sign_up()
    developer = add_member(http, outbox, account, "developer")
    problem(create_key(http, developer, ["projects:read", "members:manage"]), 403, "scope_escalation", field="scopes")
    assert create_key(http, developer, ["projects:read", "keys:manage"]).status_code == 201
    problem(create_key(http, account, ["projects:read", "no:such-scope"]), 422, "invalid_body", field="scopes")
    problem(create_key(http, account, []), 422, "invalid_body", field="scopes")
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).isoformat()
    problem(create_key(http, account, ["projects:read"], expires_at=past), 422, "invalid_body", field="expires_at")
    member = add_member(http, outbox, account, "member")
    problem(create_key(http, member, ["projects:read"]), 403, "missing_scope")
    # a key with keys:manage cannot mint a key broader than itself
    narrow = create_key(http, account, ["keys:manage", "projects:read"]).json()["key"]
    resp = http.post("/v1/api-keys", headers=key_header(narrow), json={"name": "child", "scopes": ["projects:write"]})
    problem(resp, 403, "scope_escalation")


def test_api_key_revoked_expired_invalid(http, sign_up, owner):
    account = sign_up()
    revoked = create_key(http, account, ["projects:read"]).json()
    assert http.get("/v1/projects", headers=key_header(revoked["key"])).status_code == 200
    gone = http.delete(f"/v1/api-keys/{revoked['key_id']}", headers=account.headers)
    assert gone.status_code == 200 and gone.json()["revoked_at"] is not None, gone.text
    resp = http.get("/v1/projects", headers=key_header(revoked["key"]))
    problem(resp, 401, "api_key_revoked")
    assert resp.headers["WWW-Authenticate"]

    expired = create_key(http, account, ["projects:read"]).json()
    owner.execute(
        "UPDATE core.api_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = %s AND key_id = %s",
        (account.tenant_id, expired["key_id"]),
    )
    problem(http.get("/v1/projects", headers=key_header(expired["key"])), 401, "api_key_expired")

    random_key = "tnt_" + "abcdefghijkl" + "_" + "A" * 43
    problem(http.get("/v1/projects", headers=key_header(random_key)), 401, "invalid_api_key")
    # the right prefix with a wrong secret
    live = create_key(http, account, ["projects:read"]).json()
    wrong_secret = f"tnt_{live['prefix']}_" + "B" * 43
    problem(http.get("/v1/projects", headers=key_header(wrong_secret)), 401, "invalid_api_key")
    for malformed in ("garbage", "tnt_short_secret", "tnt_ABCDEFGHIJKL_secret", "xyz_abcdefghijkl_secret"):
        problem(http.get("/v1/projects", headers=key_header(malformed)), 401, "invalid_api_key")
    # failures are not counted as uses
    assert list_keys(http, account)[live["key_id"]]["use_count"] == 0


def test_api_key_rotation(http, sign_up, owner):
    account = sign_up()
    old = create_key(http, account, ["projects:read"]).json()
    rotated = http.post(f"/v1/api-keys/{old['key_id']}/rotate", headers=account.headers, json={"grace_seconds": 3600})
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert KEY_FORMAT.match(new["key"]) and new["key"] != old["key"] and new["key_id"] != old["key_id"]
    assert new["scopes"] == old["scopes"] and new["name"] == old["name"]
    for key in (old["key"], new["key"]):
        assert http.get("/v1/projects", headers=key_header(key)).status_code == 200
    keys = list_keys(http, account)
    assert keys[old["key_id"]]["rotated_to"] == new["key_id"] and keys[old["key_id"]]["revoked_at"] is None
    grace_end = dt.datetime.fromisoformat(keys[old["key_id"]]["expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(minutes=58) < grace_end <= dt.timedelta(hours=1)

    # the grace period ends
    owner.execute(
        "UPDATE core.api_keys SET expires_at = now() - interval '1 second' WHERE tenant_id = %s AND key_id = %s",
        (account.tenant_id, old["key_id"]),
    )
    problem(http.get("/v1/projects", headers=key_header(old["key"])), 401, "api_key_expired")
    assert http.get("/v1/projects", headers=key_header(new["key"])).status_code == 200
    # an expired key cannot be rotated again
    problem(http.post(f"/v1/api-keys/{old['key_id']}/rotate", headers=account.headers), 404, "not_found")

    # no grace: the old key stops at once
    newest = http.post(f"/v1/api-keys/{new['key_id']}/rotate", headers=account.headers, json={"grace_seconds": 0})
    assert newest.status_code == 201, newest.text
    problem(http.get("/v1/projects", headers=key_header(new["key"])), 401, "api_key_revoked")
    assert http.get("/v1/projects", headers=key_header(newest.json()["key"])).status_code == 200
    problem(
        http.post(f"/v1/api-keys/{new['key_id']}/rotate", headers=account.headers, json={"grace_seconds": -1}),
        422,
        "invalid_body",
        field="grace_seconds",
    )


def test_rotating_a_broader_key_is_scope_escalation(http, sign_up, outbox):
    account = sign_up()
    developer = add_member(http, outbox, account, "developer")
    owners_key = create_key(http, account, ["members:manage", "projects:read"]).json()
    assert owners_key["key_id"] in list_keys(http, developer)  # keys:manage lists every key
    rotated = http.post(
        f"/v1/api-keys/{owners_key['key_id']}/rotate", headers=developer.headers, json={"grace_seconds": 3600}
    )
    problem(rotated, 403, "scope_escalation")
    # the owner's key is untouched by the refused rotation
    assert list_keys(http, account)[owners_key["key_id"]]["rotated_to"] is None


def test_answers_holding_secrets_take_no_idempotency_key(http, sign_up):
    # replaying them would mean storing the plaintext key or invitation token
    account = sign_up()
    idem = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    problem(
        http.post("/v1/api-keys", headers=account.headers | idem, json={"name": "deploy", "scopes": ["projects:read"]}),
        422,
        "idempotency_not_supported",
        field="Idempotency-Key",
    )
    problem(
        http.post("/v1/invitations", headers=account.headers | idem, json={"email": new_email()}),
        422,
        "idempotency_not_supported",
        field="Idempotency-Key",
    )
    assert list_keys(http, account) == {}  # nothing was created


def test_idempotent_replay_is_only_for_the_same_caller(http, sign_up, outbox):
    # another member's (or key's) replay would hand them an answer made with scopes they lack
    account = sign_up()
    member = add_member(http, outbox, account, "member")
    idem = {"Idempotency-Key": f"key-{uuid.uuid4().hex}"}
    first = http.post("/v1/projects", headers=account.headers | idem, json={"name": "Shared key"})
    assert first.status_code == 201, first.text
    replay = http.post("/v1/projects", headers=account.headers | idem, json={"name": "Shared key"})
    assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true"
    problem(
        http.post("/v1/projects", headers=member.headers | idem, json={"name": "Shared key"}),
        409,
        "idempotency_key_reused",
        field="Idempotency-Key",
    )


def test_other_tenants_objects_are_not_found(http, sign_up, outbox):
    a, b = sign_up(), sign_up()
    a_key = create_key(http, a, ["projects:read"]).json()
    a_invitation = invite(http, a, new_email()).json()
    a_member = add_member(http, outbox, a, "viewer")
    problem(http.delete(f"/v1/api-keys/{a_key['key_id']}", headers=b.headers), 404, "not_found")
    problem(http.post(f"/v1/api-keys/{a_key['key_id']}/rotate", headers=b.headers), 404, "not_found")
    problem(http.delete(f"/v1/invitations/{a_invitation['invitation_id']}", headers=b.headers), 404, "not_found")
    problem(http.post(f"/v1/invitations/{a_invitation['invitation_id']}/resend", headers=b.headers), 404, "not_found")
    problem(http.patch(f"/v1/members/{a_member.user_id}", headers=b.headers, json={"role": "admin"}), 404, "not_found")
    problem(http.delete(f"/v1/members/{a_member.user_id}", headers=b.headers), 404, "not_found")
    assert a_key["key_id"] not in list_keys(http, b)
    assert a_member.user_id not in members_by_id(http, b.headers)
    # and nothing changed in tenant A
    assert list_keys(http, a)[a_key["key_id"]]["revoked_at"] is None
    assert members_by_id(http, a.headers)[a_member.user_id]["role"] == "viewer"


# -- platform administration ----------------------------------------------------------------------------


def find_tenant(http, headers, tenant_id: str) -> dict | None:
    cursor = None
    while True:
        params = {"limit": 200} | ({"cursor": cursor} if cursor else {})
        resp = http.get("/v1/admin/tenants", headers=headers, params=params)
        assert resp.status_code == 200, resp.text
        for tenant in resp.json()["items"]:
            if tenant["tenant_id"] == tenant_id:
                return tenant
        cursor = resp.json()["next_cursor"]
        if cursor is None:
            return None


def test_platform_admin(http, sign_up, owner, outbox):
    account = sign_up()
    admin = sign_up()
    problem(http.get("/v1/admin/tenants", headers=admin.headers), 403, "platform_admin_required")
    problem(
        http.post(f"/v1/admin/tenants/{account.tenant_id}/suspend", headers=admin.headers),
        403,
        "platform_admin_required",
    )
    owner.execute("UPDATE core.users SET is_platform_admin = true WHERE user_id = %s", (admin.user_id,))
    tokens = login(http, admin.email, admin.password)
    headers = bearer(tokens["access_token"])

    listed = http.get("/v1/admin/tenants", headers=headers, params={"limit": 2})
    assert listed.status_code == 200, listed.text
    assert len(listed.json()["items"]) == 2 and listed.json()["next_cursor"]
    target = find_tenant(http, headers, account.tenant_id)
    assert target is not None and target["status"] == "active"

    # suspended: reads work, writes do not
    key = create_key(http, account, ["projects:read", "projects:write"]).json()["key"]
    member = add_member(http, outbox, account, "member")
    suspend_id = f"suspend-{uuid.uuid4().hex}"
    suspended = http.post(
        f"/v1/admin/tenants/{account.tenant_id}/suspend", headers=headers | {"X-Request-ID": suspend_id}
    )
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended" and suspended.json()["suspended_at"]
    assert http.get("/v1/projects", headers=account.headers).status_code == 200
    assert http.get("/v1/projects", headers=key_header(key)).status_code == 200  # keys read too
    problem(create_project(http, account.headers), 403, "tenant_suspended")
    problem(create_project(http, key_header(key)), 403, "tenant_suspended")
    problem(invite(http, account, new_email()), 403, "tenant_suspended")
    problem(create_key(http, account, ["projects:read"]), 403, "tenant_suspended")
    problem(
        http.patch(f"/v1/members/{member.user_id}", headers=account.headers, json={"role": "viewer"}),
        403,
        "tenant_suspended",
    )
    problem(http.delete(f"/v1/members/{member.user_id}", headers=account.headers), 403, "tenant_suspended")
    assert find_tenant(http, headers, account.tenant_id)["status"] == "suspended"

    reactivated = http.post(f"/v1/admin/tenants/{account.tenant_id}/reactivate", headers=headers)
    assert reactivated.status_code == 200 and reactivated.json()["status"] == "active", reactivated.text
    assert create_project(http, account.headers).status_code == 201

    actions = http.get(f"/v1/admin/tenants/{account.tenant_id}/actions", headers=headers)
    assert actions.status_code == 200, actions.text
    items = actions.json()["items"]
    assert [a["action"] for a in items] == ["reactivate", "suspend"]  # newest first
    assert {a["admin_user_id"] for a in items} == {admin.user_id}
    assert items[1]["request_id"] == suspend_id and items[0]["request_id"] == reactivated.headers["X-Request-ID"]

    deleted = http.delete(f"/v1/admin/tenants/{account.tenant_id}", headers=headers)
    assert deleted.status_code == 200 and deleted.json()["status"] == "deleted", deleted.text
    problem(http.get("/v1/projects", headers=account.headers), 403, "tenant_deleted")
    problem(create_project(http, account.headers), 403, "tenant_deleted")
    problem(http.get("/v1/projects", headers=key_header(key)), 403, "tenant_deleted")
    problem(http.get("/v1/members", headers=member.headers), 403, "tenant_deleted")
    problem(
        http.post(f"/v1/admin/tenants/{account.tenant_id}/reactivate", headers=headers), 409, "tenant_deleted_final"
    )
    problem(http.post(f"/v1/admin/tenants/{uuid.uuid4()}/suspend", headers=headers), 404, "not_found")

    # a new tenant for an existing user, who can switch into it as its owner
    slug = f"adm-{uuid.uuid4().hex[:10]}"
    created = http.post(
        "/v1/admin/tenants",
        headers=headers,
        json={"slug": slug, "name": "Made by admin", "plan": "pro", "owner_user_id": account.user_id},
    )
    assert created.status_code == 201, created.text
    tenant = created.json()
    assert tenant["slug"] == slug and tenant["plan_id"] == "pro" and tenant["status"] == "active"
    switched = http.post("/v1/auth/switch-tenant", headers=admin.headers, json={"tenant_id": tenant["tenant_id"]})
    problem(switched, 403, "not_a_member")  # the admin is not its member
    own = login(http, account.email, account.password, tenant["tenant_id"])
    switched = http.post(
        "/v1/auth/switch-tenant", headers=bearer(own["access_token"]), json={"tenant_id": tenant["tenant_id"]}
    )
    assert switched.status_code == 200, switched.text
    assert switched.json()["tenant_id"] == tenant["tenant_id"] and switched.json()["role"] == "owner"
    assert create_project(http, bearer(switched.json()["access_token"])).status_code == 201
    created_actions = http.get(f"/v1/admin/tenants/{tenant['tenant_id']}/actions", headers=headers).json()["items"]
    assert [(a["action"], a["admin_user_id"]) for a in created_actions] == [("create", admin.user_id)]
    problem(
        http.post(
            "/v1/admin/tenants", headers=headers, json={"slug": slug, "name": "Again", "owner_user_id": account.user_id}
        ),
        409,
        "slug_taken",
    )
    problem(
        http.post(
            "/v1/admin/tenants",
            headers=headers,
            json={"slug": f"adm-{uuid.uuid4().hex[:10]}", "name": "Nobody", "owner_user_id": str(uuid.uuid4())},
        ),
        404,
        "not_found",
        field="owner_user_id",
    )
    problem(
        http.post(
            "/v1/admin/tenants",
            headers=headers,
            json={
                "slug": f"adm-{uuid.uuid4().hex[:10]}",
                "name": "No plan",
                "plan": "platinum",
                "owner_user_id": account.user_id,
            },
        ),
        422,
        "unknown_reference",
    )

    # an API key never reaches admin routes, whatever its tenant
    key = create_key(http, sign_up(), ["projects:read"]).json()["key"]
    problem(http.get("/v1/admin/tenants", headers=key_header(key)), 403, "user_token_required")

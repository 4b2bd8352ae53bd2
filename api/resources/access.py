"""/v1/members, /v1/invitations and /v1/api-keys: who belongs to the tenant and how
machines get in. Tokens and keys are made here and shown once; the database keeps hashes.
"""

from __future__ import annotations

import datetime as dt
import uuid

import falcon

from api import models, security
from api.errors import Problem
from api.resources.base import as_uuid, body, cursor_param, limit_param, page, principal, row, rows, shape
from api.resources.work import PAGE_QUERY
from api.spec import operation
from db.context import Context, Database


class MembersResource:
    @operation(summary="List the tenant's members", scope="members:read", response=models.MemberPage,
               paginated=True, query=PAGE_QUERY)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_id = cursor_param(req)
        found = rows(req, "SELECT * FROM api.list_members(%s, %s, %s, %s)",
                     (principal(req).tenant_id, limit + 1, after, after_id))
        resp.media = page(found, limit, "user_id", models.Member)


class MemberResource:
    @operation(summary="Change a member's role (only owners manage owners; one owner always stays)",
               scope="members:manage", body=models.MemberChange, response=models.Membership,
               errors=(403, 404, 409))
    def on_patch(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        data = body(req, models.MemberChange)
        found = row(req, "SELECT * FROM api.set_member_role(%s, %s, %s)",
                    (principal(req).tenant_id, as_uuid(user_id, "member"), data.role))
        resp.media = shape(models.Membership, found)

    @operation(summary="Remove a member (or leave the tenant); their sessions here end",
               scope="members:manage", response=models.Membership, errors=(403, 404, 409))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: str) -> None:
        found = row(req, "SELECT * FROM api.remove_member(%s, %s)",
                    (principal(req).tenant_id, as_uuid(user_id, "member")))
        resp.media = shape(models.Membership, found)


def _invitation(data: dict) -> dict:
    if data["accepted_at"]:
        status = "accepted"
    elif data["revoked_at"]:
        status = "revoked"
    elif data["expires_at"] <= dt.datetime.now(dt.UTC):
        status = "expired"
    else:
        status = "pending"
    return shape(models.Invitation, data | {"status": status})


class InvitationsResource:
    @operation(summary="List invitations", scope="members:read", response=models.InvitationPage,
               paginated=True, query=PAGE_QUERY)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit = limit_param(req)
        after, after_id = cursor_param(req)
        found = rows(req, "SELECT * FROM api.list_invitations(%s, %s, %s, %s)",
                     (principal(req).tenant_id, limit + 1, after, after_id))
        result = page(found, limit, "invitation_id", models.Invitation)
        result["items"] = [_invitation(item) for item in found[:limit]]
        resp.media = result

    # no Idempotency-Key: the answer holds a secret, which must not be stored to replay it
    @operation(summary="Invite an email with a role; the single-use token (valid 7 days) is in the answer",
               scope="members:manage", body=models.InvitationCreate, response=models.InvitationWithToken,
               status=201, errors=(403, 409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.InvitationCreate)
        tenant_id, invitation_id = principal(req).tenant_id, uuid.uuid4()
        token = security.new_invitation_token(tenant_id, invitation_id)
        created = row(req, "SELECT * FROM api.create_invitation(%s, %s, %s, %s, %s)",
                      (tenant_id, invitation_id, data.email, data.role, security.sha256(token)))
        resp.media = _invitation(created) | {"token": token}
        resp.status = 201


class InvitationResource:
    @operation(summary="Revoke an open invitation", scope="members:manage", response=models.Invitation,
               errors=(404, 409, 410))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, invitation_id: str) -> None:
        found = row(req, "SELECT * FROM api.revoke_invitation(%s, %s)",
                    (principal(req).tenant_id, as_uuid(invitation_id, "invitation")))
        resp.media = _invitation(found)


class InvitationResendResource:
    @operation(summary="Send an open invitation again: a new token and expiry (the old token stops working)",
               scope="members:manage", response=models.InvitationWithToken, errors=(404, 409, 410))
    def on_post(self, req: falcon.Request, resp: falcon.Response, invitation_id: str) -> None:
        tenant_id, invitation = principal(req).tenant_id, as_uuid(invitation_id, "invitation")
        token = security.new_invitation_token(tenant_id, invitation)
        found = row(req, "SELECT * FROM api.resend_invitation(%s, %s, %s)",
                    (tenant_id, invitation, security.sha256(token)))
        resp.media = _invitation(found) | {"token": token}


class InvitationAcceptResource:
    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(summary="Accept an invitation (a new account needs name and password)", auth="none",
               body=models.InvitationAccept, response=models.Accepted, errors=(404, 409, 410, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.InvitationAccept)
        try:
            tenant_id, invitation_id = security.parse_invitation_token(data.token)
        except security.TokenError:
            raise Problem(404, "invitation_not_found", "No such invitation.", field="token") from None
        password_hash = security.hash_password(data.password) if data.password else None
        with self.db.transaction(Context(request_id=req.context.request_id)) as conn:
            accepted = conn.execute("SELECT * FROM auth.accept_invitation(%s, %s, %s, %s, %s)", (
                tenant_id, invitation_id, security.sha256(data.token), data.name, password_hash)).fetchone()
        resp.media = shape(models.Accepted, accepted)


def _key(data: dict) -> dict:
    return shape(models.ApiKey, data | {"last_used_ip": str(data["last_used_ip"]) if data["last_used_ip"] else None})


class ApiKeysResource:
    @operation(summary="List the tenant's API keys", scope="keys:manage", response=models.ApiKeys)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = rows(req, "SELECT * FROM api.list_api_keys(%s)", (principal(req).tenant_id,))
        resp.media = {"items": [_key(k) for k in found]}

    # no Idempotency-Key: the answer holds the key, which must not be stored to replay it
    @operation(summary="Create an API key with some of the caller's scopes; the key is in the answer, once",
               scope="keys:manage", body=models.ApiKeyCreate, response=models.ApiKeyWithSecret, status=201,
               errors=(403, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ApiKeyCreate)
        new = security.new_api_key()
        created = row(req, "SELECT * FROM api.create_api_key(%s, %s, %s, %s, %s, %s)", (
            principal(req).tenant_id, new.prefix, new.key_hash, data.name, data.scopes, data.expires_at))
        resp.media = _key(created) | {"key": new.key}
        resp.status = 201


class ApiKeyResource:
    @operation(summary="Revoke an API key at once", scope="keys:manage", response=models.ApiKey, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        found = row(req, "SELECT * FROM api.revoke_api_key(%s, %s)",
                    (principal(req).tenant_id, as_uuid(key_id, "API key")))
        resp.media = _key(found)


class ApiKeyRotateResource:
    @operation(summary="Rotate an API key: a new key now; the old one works for grace_seconds more",
               scope="keys:manage", body=models.ApiKeyRotate, response=models.ApiKeyWithSecret, status=201,
               errors=(404, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response, key_id: str) -> None:
        data = body(req, models.ApiKeyRotate) if req.context.body is not None else models.ApiKeyRotate()
        new = security.new_api_key()
        created = row(req, "SELECT * FROM api.rotate_api_key(%s, %s, %s, %s, make_interval(secs => %s))", (
            principal(req).tenant_id, as_uuid(key_id, "API key"), new.prefix, new.key_hash, data.grace_seconds))
        resp.media = _key(created) | {"key": new.key}
        resp.status = 201

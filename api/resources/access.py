"""/v1/members, /v1/invitations and /v1/api-keys: who belongs to the tenant and how
machines get in. Tokens and keys are made here; the database keeps hashes. An API key is
shown once, to its creator; an invitation token only to the invitee, by mail (the SQL
function queues it), never to the inviter.
"""

from __future__ import annotations

import datetime as dt
import uuid

import falcon

from api import models, security
from api.errors import Problem
from api.resources.base import (
    PAGE_QUERY,
    body,
    call,
    call_one,
    list_page,
    open_transaction,
    preconditions,
    principal,
    represent,
    shape,
)
from api.spec import operation
from db.context import Context, Database


class MembersResource:
    @operation(
        summary="List the tenant's members",
        scope="members:read",
        function="api.list_members",
        response=models.MemberPage,
        paginated=True,
        query=PAGE_QUERY,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list_page(req, models.Member, "user_id")


class MemberResource:
    @operation(
        summary="Change a member's role (only owners manage owners; one owner always stays)",
        scope="members:manage",
        function="api.set_member_role",
        body=models.MemberChange,
        response=models.Membership,
        conditional=True,
        errors=(403, 404, 409),
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response, user_id: uuid.UUID) -> None:
        data = body(req, models.MemberChange)
        represent(
            req, resp, models.Membership, call_one(req, user_id=user_id, **data.model_dump(), **preconditions(req))
        )

    @operation(
        summary="Remove a member (or leave the tenant); their sessions here end",
        scope="members:manage",
        function="api.remove_member",
        response=models.Membership,
        conditional=True,
        errors=(403, 404, 409),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, user_id: uuid.UUID) -> None:
        # the membership is gone: no ETag (a version of nothing); If-Match still guards the removal
        resp.media = shape(models.Membership, call_one(req, user_id=user_id, **preconditions(req)))


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
    @operation(
        summary="List invitations",
        scope="members:read",
        function="api.list_invitations",
        response=models.InvitationPage,
        paginated=True,
        query=PAGE_QUERY,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = list_page(req, models.Invitation, "invitation_id", shaper=_invitation)

    # no Idempotency-Key: a replay would answer without mailing a token (the mail holds
    # the secret, which must not be stored to replay it)
    @operation(
        summary="Invite an email with a role: the single-use token (valid 7 days) is mailed to it "
        "(only owners invite owners)",
        scope="members:manage",
        function="api.create_invitation",
        body=models.InvitationCreate,
        response=models.Invitation,
        status=201,
        errors=(403, 409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.InvitationCreate)
        invitation_id = uuid.uuid4()
        token = security.new_invitation_token(principal(req).tenant, invitation_id)
        created = call_one(req, invitation_id=invitation_id, token=token, **data.model_dump())
        resp.media = _invitation(created)
        resp.status = 201


class InvitationResource:
    @operation(
        summary="Revoke an open invitation (an owner invitation: owners only)",
        scope="members:manage",
        function="api.revoke_invitation",
        response=models.Invitation,
        errors=(403, 404, 409, 410),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, invitation_id: uuid.UUID) -> None:
        resp.media = _invitation(call_one(req, invitation_id=invitation_id))


class InvitationResendResource:
    @operation(
        summary="Send an open invitation again: a new token, mailed, and a new expiry (the old token "
        "stops working; an owner invitation: owners only)",
        scope="members:manage",
        function="api.resend_invitation",
        response=models.Invitation,
        errors=(403, 404, 409, 410),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, invitation_id: uuid.UUID) -> None:
        token = security.new_invitation_token(principal(req).tenant, invitation_id)
        resp.media = _invitation(call_one(req, invitation_id=invitation_id, token=token))


class InvitationAcceptResource:
    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(
        summary="Accept an invitation: logged in (Authorization: Bearer) as the invited, verified account; "
        "or without login as a new account (name and password; created verified)",
        auth="optional",
        function="auth.accept_invitation",
        renamed={"token": "token_hash", "password": "password_hash"},
        body=models.InvitationAccept,
        response=models.Accepted,
        errors=(403, 404, 409, 410, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.InvitationAccept)
        try:
            tenant_id, invitation_id = security.parse_invitation_token(data.token)
        except security.TokenError:
            raise Problem(404, "invitation_not_found", "No such invitation.", field="token") from None
        password_hash = security.hash_password(data.password) if data.password else None
        arguments = {
            "tenant_id": tenant_id,
            "invitation_id": invitation_id,
            "token_hash": security.sha256(data.token),
            "name": data.name,
            "password_hash": password_hash,
        }
        if principal(req).kind == "user":
            # the pipeline's transaction, whose context names the logged-in user (its
            # session checked): the SQL function accepts as that account
            accepted = call_one(req, **arguments)
        else:
            with open_transaction(req, self.db, Context(request_id=req.context.request_id)):
                accepted = call_one(req, **arguments)
        resp.media = shape(models.Accepted, accepted)


def _key(data: dict) -> dict:
    return shape(models.ApiKey, data | {"last_used_ip": str(data["last_used_ip"]) if data["last_used_ip"] else None})


class ApiKeysResource:
    @operation(
        summary="List the tenant's API keys", scope="keys:manage", function="api.list_api_keys", response=models.ApiKeys
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"items": [_key(k) for k in call(req)]}

    # no Idempotency-Key: the answer holds the key, which must not be stored to replay it
    @operation(
        summary="Create an API key with some of the caller's scopes; the key is in the answer, once",
        scope="keys:manage",
        function="api.create_api_key",
        body=models.ApiKeyCreate,
        response=models.ApiKeyWithSecret,
        status=201,
        errors=(403, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ApiKeyCreate)
        new = security.new_api_key()
        created = call_one(req, prefix=new.prefix, key_hash=new.key_hash, **data.model_dump())
        resp.media = _key(created) | {"key": new.key}
        resp.status = 201


class ApiKeyResource:
    @operation(
        summary="Revoke an API key at once",
        scope="keys:manage",
        function="api.revoke_api_key",
        response=models.ApiKey,
        errors=(404,),
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response, key_id: uuid.UUID) -> None:
        resp.media = _key(call_one(req, key_id=key_id))


class ApiKeyRotateResource:
    @operation(
        summary="Rotate an API key: a new key now; the old one works for grace_seconds more",
        scope="keys:manage",
        function="api.rotate_api_key",
        renamed={"grace_seconds": "grace"},
        body=models.ApiKeyRotate,
        response=models.ApiKeyWithSecret,
        status=201,
        errors=(404, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response, key_id: uuid.UUID) -> None:
        data = body(req, models.ApiKeyRotate) if req.context.body is not None else models.ApiKeyRotate()
        new = security.new_api_key()
        created = call_one(
            req,
            key_id=key_id,
            new_prefix=new.prefix,
            new_key_hash=new.key_hash,
            grace=dt.timedelta(seconds=data.grace_seconds),
        )
        resp.media = _key(created) | {"key": new.key}
        resp.status = 201

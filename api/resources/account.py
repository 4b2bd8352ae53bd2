"""A person's own account and the tenant's record: resetting a forgotten password by
mail, changing a known one, the profile (PATCH /v1/auth/me), and the tenant's name and
settings (PATCH /v1/tenant).

The rules are SQL's (sql/repeatable/180_accounts.sql, 105_tenant_settings.sql): which
account a reset reaches and how many reset mails it may have open, that a token works
once, which sessions a change ends, which settings exist. This module hashes and checks
passwords (argon2id, as everywhere) and makes the reset tokens.
"""

from __future__ import annotations

import datetime as dt
import secrets

import falcon
from psycopg.types.json import Jsonb

from api import models, security
from api.client import client_address
from api.errors import Problem
from api.resources import auth, work
from api.resources.base import body, call, call_one, open_transaction, preconditions, principal, represent, shape
from api.spec import operation
from db.context import Context, Database
from db.settings import Settings

#: the answer to every reset request, for an account or not: no account oracle
RESET_REQUESTED = "If this email belongs to an account, a password reset mail is on its way."
#: prt_<43 base64url characters>: 32 random bytes
RESET_TOKEN_PREFIX = "prt_"


def new_reset_token() -> str:
    """A password reset token: only mailed; the database keeps its SHA-256."""
    return RESET_TOKEN_PREFIX + secrets.token_urlsafe(32)


def _anonymous(req: falcon.Request) -> Context:
    return Context(request_id=req.context.request_id, client_ip=getattr(req.context, "client_ip", None))


class PasswordResetResource:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.lifetime = dt.timedelta(minutes=settings.password_reset_minutes)

    @operation(
        summary="Ask for a password reset mail (a single-use token, valid for minutes). Always 202 with "
        "the same answer, whether or not the email belongs to an account; an account gets at most "
        "3 reset mails an hour",
        auth="none",
        function="auth.request_password_reset",
        body=models.PasswordResetRequest,
        response=models.PasswordResetRequested,
        status=202,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.PasswordResetRequest)
        with open_transaction(req, self.db, _anonymous(req)):
            call(req, email=data.email, token=new_reset_token(), lifetime=self.lifetime)
        resp.media = {"detail": RESET_REQUESTED}
        resp.status = 202


class PasswordResetConfirmResource:
    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(
        summary="Set a new password with the token of a password reset mail; every session of the "
        "account ends (log in again with the new password)",
        auth="none",
        function="auth.reset_password",
        renamed={"token": "token_hash", "password": "password_hash"},
        body=models.PasswordResetConfirm,
        response=models.Revoked,
        errors=(403, 404, 410),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.PasswordResetConfirm)
        password_hash = security.hash_password(data.password)
        with open_transaction(req, self.db, _anonymous(req)):
            revoked = call_one(req, token_hash=security.sha256(data.token), password_hash=password_hash)
        resp.media = {"revoked": revoked["reset_password"]}


class PasswordChangeResource:
    @operation(
        summary="Change the caller's password, proving the current one; every other session of the "
        "caller ends. A wrong current password counts as a failed login (5 in 15 minutes lock the "
        "account)",
        auth="user",
        function=(
            "auth.change_password",
            "auth.begin_password_change",
            "auth.begin_login",
            "auth.record_login_failure",
            "auth.record_login_success",
        ),
        renamed={"current_password": None, "new_password": "password_hash"},
        body=models.PasswordChange,
        response=models.Revoked,
        errors=(403, 429),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.PasswordChange)
        account = call_one(req, "auth.begin_password_change")
        # the lockout of logins guards this door too: an account without an address yet
        # (waiting for a verification) is counted under its id
        who = {"email": account["email"] or f"user:{account['user_id']}", "client": client_address(req)}
        locked_for = call_one(req, "auth.begin_login", **who)["locked_for_seconds"]
        if locked_for > 0:
            raise auth._locked(locked_for)
        if not security.verify_password(account["password_hash"], data.current_password):
            locked_for = call_one(req, "auth.record_login_failure", **who)["record_login_failure"]
            req.context.commit_refusal = True  # the failure counts although we refuse (api/pipeline.py)
            if locked_for:
                raise auth._locked(locked_for)
            raise Problem(403, "wrong_password", "The current password is wrong.", field="current_password")
        revoked = call_one(req, password_hash=security.hash_password(data.new_password))["change_password"]
        call(req, "auth.record_login_success", **who)
        resp.media = {"revoked": revoked}


class MeResource(auth.MeResource):
    """GET as in auth.MeResource; PATCH changes the caller's profile."""

    @operation(
        summary="Change the caller's profile: the name (the same in every tenant of the user)",
        auth="user",
        function=("auth.update_profile", "api.me"),
        body=models.ProfileChange,
        response=models.Me,
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.ProfileChange)
        call(req, "auth.update_profile", name=data.name)
        resp.media = shape(models.Me, call_one(req, "api.me") | {"tenant_id": principal(req).tenant_id})


class TenantResource(work.TenantResource):
    """GET as in work.TenantResource; PATCH changes the tenant's name and settings."""

    @operation(
        summary="Change the tenant's name and settings (settings are merged; null removes a key)",
        scope="tenant:manage",
        function="api.update_tenant",
        body=models.TenantChange,
        response=models.Tenant,
        conditional=True,
        errors=(422,),
    )
    def on_patch(self, req: falcon.Request, resp: falcon.Response) -> None:
        changes = body(req, models.TenantChange).model_dump(mode="json", exclude_unset=True)
        represent(req, resp, models.Tenant, call_one(req, changes=Jsonb(changes), **preconditions(req)))

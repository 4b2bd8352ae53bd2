"""/v1/signup and /v1/auth/*: sign-up, login with lockout, refresh rotation with reuse
detection, logout, sessions, switching tenant, and who am I.

Public calls (sign-up, login, refresh, accepting an invitation) open short transactions
of their own (`open_transaction`), with no tenant context, committed even when they
refuse (a failed login counts): the auth.* functions they call are definer-rights and
filter by tenant themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid

import falcon

from api import models, security
from api.errors import Problem
from api.resources.base import body, call, call_one, open_transaction, principal, shape
from api.spec import operation
from db.context import Context, Database
from db.settings import Settings


def _anonymous(req: falcon.Request) -> Context:
    """The context of a call made before login: no tenant, no actor."""
    return Context(request_id=req.context.request_id)


class Sessions:
    """Opening sessions and minting their tokens, shared by the resources below."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.key = security.jwt_key(settings)

    def open(self, req: falcon.Request, user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> dict:
        """A new session (auth.open_session, in the request's transaction) and its tokens."""
        secret = security.new_secret()
        opened = call_one(
            req,
            "auth.open_session",
            user_id=user_id,
            tenant_id=tenant_id,
            refresh_hash=security.sha256(secret),
            user_agent=req.user_agent,
            ip=req.remote_addr or None,
            lifetime=dt.timedelta(days=self.settings.session_days),
        )
        return self.tokens(user_id, opened, secret)

    def tokens(self, user_id: uuid.UUID, session: dict, secret: bytes) -> dict:
        access, _ = security.issue_access_token(
            self.key,
            user_id=user_id,
            tenant_id=session["tenant_id"],
            session_id=session["session_id"],
            role=session["role"],
            scopes=list(session["scopes"] or []),
            is_platform_admin=bool(session["is_platform_admin"]),
            ttl_seconds=self.settings.access_token_seconds,
        )
        return {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.settings.access_token_seconds,
            "refresh_token": security.refresh_token(session["tenant_id"], secret),
            "tenant_id": session["tenant_id"],
            "user_id": user_id,
            "session_id": session["session_id"],
            "role": session["role"],
            "scopes": list(session["scopes"] or []),
        }


class SignUpResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(
        summary="Sign up: a new user, a new tenant, the user as its owner, and a session",
        auth="none",
        function=("auth.sign_up", "auth.open_session"),
        renamed={"password": "password_hash", "tenant_slug": "slug", "plan": "plan_id"},
        body=models.SignUp,
        response=models.SignedUp,
        status=201,
        errors=(409, 422),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.SignUp)
        password_hash = security.hash_password(data.password)
        with open_transaction(req, self.sessions.db, _anonymous(req)):
            created = call_one(
                req,
                email=data.email,
                name=data.name,
                password_hash=password_hash,
                slug=data.tenant_slug,
                tenant_name=data.tenant_name,
                plan_id=data.plan,
            )
            resp.media = self.sessions.open(req, created["user_id"], created["tenant_id"])
        resp.status = 201


class LoginResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(
        summary="Log in with email and password (5 failures in 15 minutes lock the account for 15)",
        auth="none",
        function=("auth.begin_login", "auth.open_session"),
        renamed={"password": None},
        body=models.Login,
        response=models.Tokens,
        errors=(401, 403, 429),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.Login)
        refusal: Problem | None = None
        with open_transaction(req, self.sessions.db, _anonymous(req)):
            found = call(req, email=data.email)
            user = found[0] if found else None
            if user and user["locked_for_seconds"] > 0:
                refusal = _locked(user["locked_for_seconds"])
            elif user is None or not security.verify_password(user["password_hash"], data.password):
                refusal = Problem(401, "invalid_credentials", "The email or password is wrong.")
                if user is not None:  # the failure counts even though we refuse: committed below
                    locked_for = call_one(req, "auth.record_login_failure", user_id=user["user_id"])[
                        "record_login_failure"
                    ]
                    refusal = _locked(locked_for) if locked_for else refusal
            else:
                resp.media = self.sessions.open(req, user["user_id"], data.tenant_id)
        if refusal is not None:
            raise refusal


def _locked(seconds: int) -> Problem:
    return Problem(
        429,
        "account_locked",
        f"Too many failed logins: the account is locked for {seconds} more seconds.",
        headers={"Retry-After": str(seconds)},
        retry_after=seconds,
    )


class RefreshResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(
        summary="Exchange a refresh token for new tokens; the old refresh token is spent "
        "(presenting a spent one again revokes the session)",
        auth="none",
        function="auth.refresh_session",
        renamed={"refresh_token": "token_hash"},
        body=models.Refresh,
        response=models.Tokens,
        errors=(401,),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.Refresh)
        try:
            tenant_id, secret = security.parse_refresh_token(data.refresh_token)
        except security.TokenError as exc:
            raise Problem(401, exc.reason, str(exc)) from None
        new_secret = security.new_secret()
        with open_transaction(req, self.sessions.db, _anonymous(req)):  # committed even when refused:
            result = call_one(
                req,
                tenant_id=tenant_id,  # a detected reuse revokes the session
                token_hash=security.sha256(secret),
                new_hash=security.sha256(new_secret),
            )
        outcome = result["outcome"]
        if outcome != "ok":
            detail = {
                "invalid": "The refresh token is not valid.",
                "revoked": "The session has ended; log in again.",
                "expired": "The session has expired; log in again.",
                "reused": "This refresh token was already used: the session is revoked. Log in again.",
            }[outcome]
            raise Problem(401, f"refresh_{outcome}", detail)
        resp.media = self.sessions.tokens(result["user_id"], result | {"tenant_id": tenant_id}, new_secret)


class LogoutResource:
    @operation(
        summary="Log out: end this session (its access tokens stop working at once)",
        auth="user",
        function="auth.revoke_session",
        status=204,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        me = principal(req)
        call(req, user_id=me.actor_id, tenant_id=me.tenant_id, session_id=me.session_id, reason="logout")
        resp.status = 204


class MeResource:
    @operation(
        summary="Who is calling: user or API key, role and scopes in this tenant",
        auth="any",
        function="api.me",
        response=models.Me,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = shape(models.Me, call_one(req) | {"tenant_id": principal(req).tenant_id})


class SessionsResource:
    @operation(
        summary="The caller's live sessions, in every tenant",
        auth="user",
        function="auth.list_sessions",
        response=models.Sessions,
    )
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = call(req, user_id=principal(req).actor_id)
        resp.media = {"items": [shape(models.Session, s | {"ip": str(s["ip"]) if s["ip"] else None}) for s in found]}

    @operation(
        summary="Revoke all the caller's sessions, this one included",
        auth="user",
        function="auth.revoke_all_sessions",
        response=models.Revoked,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"revoked": call_one(req, user_id=principal(req).actor_id)["revoke_all_sessions"]}


class SessionResource:
    @operation(
        summary="Revoke one of the caller's sessions",
        auth="user",
        function="auth.revoke_session",
        status=204,
        errors=(404,),
    )
    def on_delete(
        self, req: falcon.Request, resp: falcon.Response, tenant_id: uuid.UUID, session_id: uuid.UUID
    ) -> None:
        found = call_one(req, user_id=principal(req).actor_id, tenant_id=tenant_id, session_id=session_id)
        if not found["revoke_session"]:
            raise Problem(404, "not_found", "No live session of yours has that id.")
        resp.status = 204


class SwitchTenantResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(
        summary="Get tokens for another tenant the caller belongs to (a new session there)",
        auth="user",
        function="auth.open_session",
        body=models.SwitchTenant,
        response=models.Tokens,
        errors=(403,),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.SwitchTenant)
        resp.media = self.sessions.open(req, principal(req).actor, data.tenant_id)

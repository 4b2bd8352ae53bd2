"""/v1/signup and /v1/auth/*: sign-up, email verification, login with lockout, refresh
rotation with reuse detection, logout, sessions, switching tenant, and who am I.

Public calls (sign-up, verifying an email, login, refresh, accepting an invitation
without login) open short transactions
of their own (`open_transaction`), with no tenant context, committed even when they
refuse (a failed login counts): the auth.* functions they call are definer-rights and
filter by tenant themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid

import falcon

from api import models, security
from api.client import client_address
from api.errors import Problem
from api.resources.base import body, call, call_one, open_transaction, principal, shape
from api.spec import operation
from db.context import Context, Database
from db.settings import Settings


def _anonymous(req: falcon.Request) -> Context:
    """The context of a call made before login: no tenant, no actor."""
    return Context(request_id=req.context.request_id, client_ip=getattr(req.context, "client_ip", None))


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
            ip=client_address(req),
            refresh_lifetime=dt.timedelta(days=self.settings.refresh_days),
            idle_timeout=dt.timedelta(minutes=self.settings.session_idle_minutes),
            max_lifetime=dt.timedelta(hours=self.settings.session_max_hours),
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
        summary="Sign up: a new user, a new tenant on the free plan, the user as its owner, and a session; "
        "the email address is unverified until the token mailed to it is sent to /v1/auth/verify-email",
        auth="none",
        function=("auth.sign_up", "auth.open_session"),
        renamed={"password": "password_hash", "tenant_slug": "slug"},
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
                verification_token=security.new_verification_token(),  # mailed by the function
            )
            tokens = self.sessions.open(req, created["user_id"], created["tenant_id"])
            resp.media = tokens | {"email_verified": created["email_verified"]}
        resp.status = 201


class VerifyEmailResource:
    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(
        summary="Verify an email address with the token mailed to it (single use, 24 hours); an unverified "
        "account that held the same address is replaced",
        auth="none",
        function="auth.verify_email",
        renamed={"token": "token_hash"},
        body=models.VerifyEmail,
        response=models.EmailVerified,
        errors=(404, 409, 410),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.VerifyEmail)
        with open_transaction(req, self.db, _anonymous(req)):
            verified = call_one(req, token_hash=security.sha256(data.token))
        resp.media = shape(models.EmailVerified, verified)


class VerificationResendResource:
    def __init__(self, db: Database) -> None:
        self.db = db

    @operation(
        summary="Mail a new verification token to an address that an unverified account holds or claims "
        "(older tokens stop working); always 202, whether or not there is such an account",
        auth="none",
        function="auth.resend_verification",
        body=models.VerificationResend,
        status=202,
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.VerificationResend)
        with open_transaction(req, self.db, _anonymous(req)):
            call(req, email=data.email, token=security.new_verification_token())
        resp.status = 202


class LoginResource:
    """Login, with the lockout of 140_sessions.sql: 5 failures from one client within 15
    minutes lock the account for that client (other clients are not locked out), and an
    unknown email is answered exactly like a known one: same statuses, same bodies, the
    same lockout, and a password check against a dummy hash that costs the same time."""

    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(
        summary="Log in with email and password (5 failures in 15 minutes from one client lock the "
        "account for that client for 15 minutes)",
        auth="none",
        function=("auth.begin_login", "auth.record_login_failure", "auth.record_login_success", "auth.open_session"),
        renamed={"password": None},
        body=models.Login,
        response=models.Tokens,
        errors=(401, 403, 429),
    )
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.Login)
        who = {"email": data.email, "client": client_address(req)}
        refusal: Problem | None = None
        with open_transaction(req, self.sessions.db, _anonymous(req)):
            login = call_one(req, **who)  # one row, known email or not
            if login["locked_for_seconds"] > 0:
                refusal = _locked(login["locked_for_seconds"])
            elif not security.verify_password(login["password_hash"], data.password):  # no hash: a dummy one
                # the failure counts even though we refuse: committed below
                locked_for = call_one(req, "auth.record_login_failure", **who)["record_login_failure"]
                refusal = _locked(locked_for) if locked_for else _wrong_credentials()
            else:
                resp.media = self.sessions.open(req, login["user_id"], data.tenant_id)
                call(req, "auth.record_login_success", **who)
        if refusal is not None:
            raise refusal


def _wrong_credentials() -> Problem:
    return Problem(401, "invalid_credentials", "The email or password is wrong.")


def _locked(seconds: int) -> Problem:
    return Problem(
        429,
        "account_locked",
        f"Too many failed logins: this account is locked here for {seconds} more seconds.",
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
                refresh_lifetime=dt.timedelta(days=self.sessions.settings.refresh_days),
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
        me = principal(req)  # the function acts for the user of the context's session
        call(req, tenant_id=me.tenant_id, session_id=me.session_id, reason="logout")
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
        found = call(req)  # the user of the context's session
        resp.media = {"items": [shape(models.Session, s | {"ip": str(s["ip"]) if s["ip"] else None}) for s in found]}

    @operation(
        summary="Revoke all the caller's sessions, this one included",
        auth="user",
        function="auth.revoke_all_sessions",
        response=models.Revoked,
    )
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"revoked": call_one(req)["revoke_all_sessions"]}  # the context's user


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
        found = call_one(req, tenant_id=tenant_id, session_id=session_id)  # one of the context user's sessions
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

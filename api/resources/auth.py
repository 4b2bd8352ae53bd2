"""/v1/signup and /v1/auth/*: sign-up, login with lockout, refresh rotation with reuse
detection, logout, sessions, switching tenant, and who am I.

Public calls (sign-up, login, refresh) run in short transactions of their own on the
api pool, with no tenant context: the auth.* functions they call are definer-rights
and filter by tenant themselves.
"""

from __future__ import annotations

import uuid

import falcon

from api import models, security
from api.errors import Problem
from api.resources.base import as_uuid, body, principal, row, rows, shape
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

    def open(self, conn, req: falcon.Request, user_id: uuid.UUID, tenant_id: uuid.UUID | None) -> dict:
        secret = security.new_secret()
        opened = conn.execute(
            "SELECT * FROM auth.open_session(%s, %s, %s, %s, %s, make_interval(days => %s))",
            (user_id, tenant_id, security.sha256(secret), req.user_agent, req.remote_addr or None,
             self.settings.session_days)).fetchone()
        return self.tokens(user_id, opened, secret)

    def tokens(self, user_id: uuid.UUID, session: dict, secret: bytes) -> dict:
        access, _ = security.issue_access_token(
            self.key, user_id=user_id, tenant_id=session["tenant_id"], session_id=session["session_id"],
            role=session["role"], scopes=list(session["scopes"] or []),
            is_platform_admin=bool(session["is_platform_admin"]), ttl_seconds=self.settings.access_token_seconds)
        return {
            "token_type": "Bearer", "access_token": access, "expires_in": self.settings.access_token_seconds,
            "refresh_token": security.refresh_token(session["tenant_id"], secret),
            "tenant_id": session["tenant_id"], "user_id": user_id, "session_id": session["session_id"],
            "role": session["role"], "scopes": list(session["scopes"] or []),
        }


class SignUpResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(summary="Sign up: a new user, a new tenant, the user as its owner, and a session",
               auth="none", body=models.SignUp, response=models.SignedUp, status=201, errors=(409, 422))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.SignUp)
        password_hash = security.hash_password(data.password)
        with self.sessions.db.transaction(_anonymous(req)) as conn:
            created = conn.execute("SELECT * FROM auth.sign_up(%s, %s, %s, %s, %s, %s)", (
                data.email, data.name, password_hash, data.tenant_slug, data.tenant_name, data.plan)).fetchone()
            resp.media = self.sessions.open(conn, req, created["user_id"], created["tenant_id"])
        resp.status = 201


class LoginResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(summary="Log in with email and password (5 failures in 15 minutes lock the account for 15)",
               auth="none", body=models.Login, response=models.Tokens, errors=(401, 403, 429))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.Login)
        refusal: Problem | None = None
        with self.sessions.db.transaction(_anonymous(req)) as conn:
            user = conn.execute("SELECT * FROM auth.begin_login(%s)", (data.email,)).fetchone()
            if user and user["locked_for_seconds"] > 0:
                refusal = _locked(user["locked_for_seconds"])
            elif user is None or not security.verify_password(user["password_hash"], data.password):
                refusal = Problem(401, "invalid_credentials", "The email or password is wrong.")
                if user is not None:  # the failure counts even though we refuse: committed below
                    locked_for = conn.execute("SELECT auth.record_login_failure(%s) AS s",
                                              (user["user_id"],)).fetchone()["s"]
                    refusal = _locked(locked_for) if locked_for else refusal
            else:
                resp.media = self.sessions.open(conn, req, user["user_id"], data.tenant_id)
        if refusal is not None:
            raise refusal


def _locked(seconds: int) -> Problem:
    return Problem(429, "account_locked",
                   f"Too many failed logins: the account is locked for {seconds} more seconds.",
                   headers={"Retry-After": str(seconds)}, retry_after=seconds)


class RefreshResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(summary="Exchange a refresh token for new tokens; the old refresh token is spent "
                       "(presenting a spent one again revokes the session)",
               auth="none", body=models.Refresh, response=models.Tokens, errors=(401,))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.Refresh)
        try:
            tenant_id, secret = security.parse_refresh_token(data.refresh_token)
        except security.TokenError as exc:
            raise Problem(401, exc.reason, str(exc)) from None
        new_secret = security.new_secret()
        with self.sessions.db.transaction(_anonymous(req)) as conn:  # committed even when refused:
            result = conn.execute(  # a detected reuse revokes the session
                "SELECT * FROM auth.refresh_session(%s, %s, %s)",
                (tenant_id, security.sha256(secret), security.sha256(new_secret))).fetchone()
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
    @operation(summary="Log out: end this session (its access tokens stop working at once)",
               auth="user", status=204)
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        me = principal(req)
        row(req, "SELECT auth.revoke_session(%s, %s, %s, 'logout')", (me.actor_id, me.tenant_id, me.session_id))
        resp.status = 204


class MeResource:
    @operation(summary="Who is calling: user or API key, role and scopes in this tenant",
               auth="any", response=models.Me)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        me = principal(req)
        found = row(req, "SELECT * FROM api.me(%s)", (me.tenant_id,))
        resp.media = shape(models.Me, found | {"tenant_id": me.tenant_id})


class SessionsResource:
    @operation(summary="The caller's live sessions, in every tenant", auth="user", response=models.Sessions)
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = rows(req, "SELECT * FROM auth.list_sessions(%s)", (principal(req).actor_id,))
        resp.media = {"items": [shape(models.Session, s | {"ip": str(s["ip"]) if s["ip"] else None}) for s in found]}

    @operation(summary="Revoke all the caller's sessions, this one included", auth="user",
               response=models.Revoked)
    def on_delete(self, req: falcon.Request, resp: falcon.Response) -> None:
        found = row(req, "SELECT auth.revoke_all_sessions(%s) AS revoked", (principal(req).actor_id,))
        resp.media = {"revoked": found["revoked"]}


class SessionResource:
    @operation(summary="Revoke one of the caller's sessions", auth="user", status=204, errors=(404,))
    def on_delete(self, req: falcon.Request, resp: falcon.Response, tenant_id: str, session_id: str) -> None:
        found = row(req, "SELECT auth.revoke_session(%s, %s, %s) AS revoked",
                    (principal(req).actor_id, as_uuid(tenant_id, "tenant"), as_uuid(session_id, "session")))
        if not found["revoked"]:
            raise Problem(404, "not_found", "No live session of yours has that id.")
        resp.status = 204


class SwitchTenantResource:
    def __init__(self, sessions: Sessions) -> None:
        self.sessions = sessions

    @operation(summary="Get tokens for another tenant the caller belongs to (a new session there)",
               auth="user", body=models.SwitchTenant, response=models.Tokens, errors=(403,))
    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        data = body(req, models.SwitchTenant)
        resp.media = self.sessions.open(req.context.conn, req, principal(req).actor_id, data.tenant_id)

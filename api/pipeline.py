"""The request pipeline: request id and logs, metrics, authentication, the request's
one database transaction with the tenant context, rate limits, and Idempotency-Key.

Order per request: request id and client address -> authenticate (a JWT checked against
its live session, or an API key; credentials that fail are charged to the client's
anonymous rate limit) -> rate limit (Redis, by principal, from the tenant's plan) -> the
transaction opens with SET LOCAL app.* -> Idempotency-Key claimed in that transaction
-> the responder calls one api.* function -> response stored for the key -> commit
(or rollback on any error) -> headers and metrics.

One round trip (issue 10). The transaction is opened deferred (db.context.Connection):
`BEGIN; SET LOCAL app.*; SELECT ... FROM auth.check_session()` is sent together with the
request's first statement, as one string, and a GET's one call carries the COMMIT too
(api/resources/base.py). The session check still comes first in that string: a revoked
session fails it and nothing after it runs (401 session_revoked). A user's rate limit
needs the plan's rate, which the check returns, so it is applied when the check's rows
arrive, before the call's rows are used; a refused request's call is rolled back (it ran
and is undone: a limit protects capacity, and a bucket known to be empty is refused in the
worker before any round trip, api/ratelimit.py). A request that runs no statement (refused
by validation) has its session checked when it ends. Platform-admin calls check first,
alone, so a non-administrator is refused before anything runs.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import falcon
import psycopg
from prometheus_client import Counter, Histogram
from psycopg.types.json import Jsonb

from api import client, encoding, security
from api.body import BodyIncomplete, BodyTimeout, read_body
from api.errors import RETRYABLE, Problem, invalid_parameter, render
from api.metering import Meter
from api.ratelimit import Decision, Limit, RateLimiter, limit_for_plan
from api.spec import operation_of
from db import errors as db_errors
from db.context import Context, Database
from db.settings import API_ROLE, PLATFORM_ADMIN_ROLE, Settings

log = logging.getLogger("tenantry.api")

REQUESTS = Counter("tenantry_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("tenantry_http_request_seconds", "HTTP request latency", ["method", "route"])
MAX_REQUEST_ID = 200
#: every request with an access token: the session must be live (TA005), and its current
#: role, scopes, platform-admin flag and plan rate (140_sessions.sql)
CHECK_SESSION_SQL = "SELECT role, scopes, is_platform_admin, requests_per_minute, touch_due FROM auth.check_session()"


@dataclass
class Principal:
    kind: str  # 'user', 'api_key' or 'anonymous'
    tenant_id: uuid.UUID | None = None  # set for users and keys; `tenant` says so to the type checker
    actor_id: uuid.UUID | None = None  # user id or key id
    session_id: uuid.UUID | None = None
    role: str | None = None
    scopes: list[str] = field(default_factory=list)
    is_platform_admin: bool = False
    requests_per_minute: int | None = None

    @property
    def actor(self) -> uuid.UUID:
        """The user or key id of an authenticated caller."""
        if self.actor_id is None:
            raise LookupError("an anonymous caller has no id")
        return self.actor_id

    @property
    def tenant(self) -> uuid.UUID:
        """The tenant of an authenticated caller (anonymous callers have none)."""
        if self.tenant_id is None:
            raise LookupError("an anonymous caller has no tenant")
        return self.tenant_id


def _unauthorized(reason: str, detail: str) -> Problem:
    return Problem(401, reason, detail, headers={"WWW-Authenticate": 'Bearer realm="tenantry"'})


def session_revoked(exc: psycopg.Error) -> Problem | None:
    """The 401 for a statement that failed because the context's session has ended (TA005:
    the session check folded into the request's first statement, or an auth.* call)."""
    if exc.sqlstate != db_errors.SESSION_REVOKED.sqlstate:
        return None
    return _unauthorized(db_errors.SESSION_REVOKED.code, "The session has ended; log in again.")


def raise_session_revoked(exc: psycopg.Error) -> None:
    """Raise the 401 if `exc` says the session has ended; otherwise return (the caller re-raises)."""
    problem = session_revoked(exc)
    if problem is not None:
        raise problem from None


class RequestIdAndMetrics:
    """X-Request-ID in (if sane) and out; the client's address (api/client.py: the peer,
    or behind trusted proxies the forwarded client); one JSON log line and metrics per request."""

    def __init__(self, trusted_proxies: tuple[str, ...] | list[str] = ()) -> None:
        self.trusted_proxies = client.networks(trusted_proxies)

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        ok = given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable()
        req.context.request_id = given if ok else uuid.uuid4().hex
        req.context.started = time.perf_counter()
        req.context.client_ip = client.resolve(req.remote_addr, req.get_header("X-Forwarded-For"), self.trusted_proxies)

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        resp.set_header("X-Request-ID", req.context.request_id)
        route = req.uri_template or "unmatched"
        elapsed = time.perf_counter() - req.context.started
        status = resp.status_code if hasattr(resp, "status_code") else int(str(resp.status)[:3])
        REQUESTS.labels(req.method, route, str(status)).inc()
        LATENCY.labels(req.method, route).observe(elapsed)
        principal: Principal | None = getattr(req.context, "principal", None)
        log.info(
            "request",
            extra={
                "request_id": req.context.request_id,
                "method": req.method,
                "route": route,
                "status": status,
                "ms": round(elapsed * 1000, 2),
                "tenant_id": str(principal.tenant_id) if principal and principal.tenant_id else None,
                "actor": principal.kind if principal else None,
                "client": getattr(req.context, "client_ip", None),
            },
        )


class Pipeline:
    """Authentication, rate limit, transaction and idempotency, driven by @operation."""

    def __init__(
        self, settings: Settings, db: Database, limiter: RateLimiter | None, meter: Meter | None = None
    ) -> None:
        self.settings = settings
        self.db = db
        self.limiter = limiter
        self.meter = meter  # API calls counted in Redis (api/metering.py)
        self.jwt_key = security.jwt_key(settings)

    # -- falcon hooks ------------------------------------------------------------------

    def process_resource(self, req: falcon.Request, resp: falcon.Response, resource: Any, params: dict) -> None:
        if resource is None:
            return
        responder = self._responder(req, resource)
        spec = operation_of(responder)
        if spec is None:
            return  # infrastructure routes (health, metrics) declare nothing
        req.context.operation = spec
        self._check_query(req, spec.query)
        if req.method in ("POST", "PATCH", "PUT") and (req.content_length or 0) > self.settings.max_body_bytes:
            raise _body_too_large(self.settings.max_body_bytes)  # declared: refused before anything else
        try:
            principal = self._authenticate(req, spec.auth)
        except Problem as refused:
            # a guessed key or forged token costs the guesser (not a genuine token that aged)
            if refused.status == 401 and refused.code != "token_expired":
                self._charge_failed_credentials(req)
            raise
        req.context.principal = principal
        if req.method in ("POST", "PATCH", "PUT"):
            # after authentication (a caller without credentials is refused before its body is
            # read: issue 10, slow clients), before the transaction (a slow body holds no connection)
            self._read_body(req)
        if principal.kind == "user":
            # the user's rate limit waits for the plan's rate (the session check's rows),
            # but a bucket this worker knows is empty refuses before any round trip
            self._enforce_known_empty(req, principal)
        if principal.kind != "anonymous":
            self._begin(req, principal, admin=spec.auth == "admin")
        if principal.kind != "user":
            self._rate_limit(req, principal)
        if req.get_header("Idempotency-Key") is not None:
            if not spec.idempotent_post or principal.kind == "anonymous":
                raise Problem(
                    422,
                    "idempotency_not_supported",
                    "This call does not take an Idempotency-Key (its answer holds a one-time secret, "
                    "or it changes nothing).",
                    field="Idempotency-Key",
                )
            self._idempotency_begin(req, resp, principal)

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        try:
            self._check_unchecked_session(req, resp)
            for name, value in getattr(req.context, "rate_headers", {}).items():
                resp.set_header(name, value)
            # an authenticated caller's call is metered (no database write); an attempt that
            # failed transiently is not a call served: the API runs it again (api/retry.py)
            if self.meter is not None and not req.env.get(RETRYABLE):
                self.meter.count_request(getattr(req.context, "principal", None), resp.status_code)
        finally:
            # whatever failed above, the request's transaction ends and its connection goes back
            self._end_transaction(req, resp, req_succeeded)

    def _end_transaction(self, req: falcon.Request, resp: falcon.Response, req_succeeded: bool) -> None:
        """Commit or roll back the request's transaction (opened in `_begin`), if it has one."""
        transaction = getattr(req.context, "transaction", None)
        if transaction is None:
            return
        req.context.transaction = None
        commit = req_succeeded and resp.status_code < 400
        # a refusal whose cause must be written down (a wrong current password counts towards
        # the lockout) is committed too, when its responder sets req.context.commit_refusal
        commit = commit or bool(getattr(req.context, "commit_refusal", False))
        try:
            if commit and getattr(req.context, "idempotency_key", None):
                req.context.conn.execute_last(  # with the COMMIT: one round trip
                    "SELECT api.idempotency_finish(%s, %s, %s, %s)",
                    (
                        req.context.principal.tenant_id,
                        req.context.idempotency_key,
                        resp.status_code,
                        Jsonb(resp.media, dumps=encoding.dumps),
                    ),
                )
        except Exception:
            commit = False  # a response we cannot replay must not be committed either
            raise
        finally:
            # leave the transaction block: commit, or roll back through psycopg.Rollback
            # (which the block swallows); the pool takes the connection back either way
            if commit:
                transaction.__exit__(None, None, None)
            else:
                transaction.__exit__(psycopg.Rollback, psycopg.Rollback(), None)
            if getattr(req.context, "touch_session", False):
                self._touch_session(req)

    def _check_unchecked_session(self, req: falcon.Request, resp: falcon.Response) -> None:
        """A user's request that ran no statement (refused before its call: a body the
        model refuses, a bad header) has not had its session checked nor its rate limit
        applied: both now, one round trip, and their refusal (401, 429) is the answer."""
        conn = getattr(req.context, "conn", None)
        if getattr(req.context, "transaction", None) is None or conn is None or not conn.holding:
            return
        if getattr(req.context, "principal", None) is None or req.context.principal.kind != "user":
            return
        try:
            conn.flush()
        except psycopg.Error as exc:
            problem = session_revoked(exc)
            if problem is None:
                raise
            render(req, resp, problem)
        except Problem as problem:
            render(req, resp, problem)

    # -- steps -------------------------------------------------------------------------

    def _begin(self, req: falcon.Request, principal: Principal, *, admin: bool) -> None:
        """Open the request's one transaction; process_response ends it.

        Platform-admin calls run on the platform-admin role, so that the session check
        and the admin.* call share the one connection the request holds. A user's session
        id (from the verified token) is part of the context: auth.check_session and the
        session calls act for the user of that session, never for an id passed to them.
        """
        context = Context(
            None if admin else principal.tenant_id,
            principal.actor_id,
            actor_type="platform_admin" if admin else ("user" if principal.kind == "user" else "api_key"),
            request_id=req.context.request_id,
            role=PLATFORM_ADMIN_ROLE if admin else API_ROLE,
            session_id=principal.session_id,
            client_ip=getattr(req.context, "client_ip", None),
        )
        first = None
        if principal.kind == "user":  # checked in the first statement's round trip
            first = (CHECK_SESSION_SQL, lambda rows: self._session_checked(req, principal, rows[0]))
        transaction = self.db.transaction(context, deferred=True, first=first)
        req.context.conn = transaction.__enter__()
        req.context.transaction = transaction
        req.context.db_context = context
        if admin and principal.kind == "user":
            try:  # an administrator's call: the session (and the flag) first, alone
                req.context.conn.flush()
            except psycopg.Error as exc:
                raise_session_revoked(exc)
                raise

    def _touch_session(self, req: falcon.Request) -> None:
        """Record that the session is in use (its idle limit starts again), in a short
        transaction of its own once the request's has ended: at most once a minute per
        session (auth.check_session says when). A failure here never fails the request."""
        try:
            with self.db.transaction(req.context.db_context, deferred=True) as conn:
                conn.execute_last("SELECT auth.touch_session()")  # BEGIN to COMMIT: one round trip
        except psycopg.Error:
            log.warning("could not record the session's use", extra={"request_id": req.context.request_id})

    @staticmethod
    def _responder(req: falcon.Request, resource: Any) -> Any:
        # resources serve one path each, with plain on_<method> responders (no suffixes)
        return getattr(resource, f"on_{req.method.lower()}", None)

    @staticmethod
    def _check_query(req: falcon.Request, declared: dict[str, str]) -> None:
        """One rule for query parameters (api/README.md): a call takes the ones its
        @operation declares, each once; anything else is 400 invalid_parameter naming it.
        Their values are checked where they are read (api/resources/base.py, or the SQL
        function for values only the database knows, such as a task status)."""
        for name, value in req.params.items():
            if name not in declared:
                raise invalid_parameter(name, f"This call takes no query parameter {name!r}.")
            if isinstance(value, list):  # Falcon gathers a repeated parameter into a list
                raise invalid_parameter(name, f"{name} is given more than once.")
            if "\x00" in value:  # no text the database stores or compares holds one
                raise invalid_parameter(name, f"{name} holds a NUL character.")

    def _read_body(self, req: falcon.Request) -> None:
        """The JSON body, bounded in size (413 body_too_large: a declared Content-Length
        over the limit before a byte is read, a chunked body cut off there), in time
        (408 request_timeout: `read_body`) and in depth (400 json_too_deep, before parsing)."""
        limit = self.settings.max_body_bytes
        length = req.content_length  # a malformed Content-Length is Falcon's 400
        chunked = length is None and "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
        if (length or 0) > limit:
            raise _body_too_large(limit)
        try:
            raw = read_body(req.env, length, limit, self.settings.body_read_timeout) if length or chunked else b""
        except BodyTimeout:
            timeout = self.settings.body_read_timeout
            raise Problem(408, "request_timeout", f"The body did not arrive within {timeout:g} seconds.") from None
        except BodyIncomplete:
            raise Problem(400, "incomplete_body", "The connection ended before the whole body arrived.") from None
        if len(raw) > limit:
            raise _body_too_large(limit)
        req.context.raw_body = raw
        if not raw:
            req.context.body = None
            return
        if req.content_type and not req.content_type.startswith("application/json"):
            raise Problem(415, "unsupported_media_type", "Send the body as application/json.")
        depth = self.settings.max_json_depth
        try:
            req.context.body = encoding.loads(raw, max_depth=depth)
        except encoding.TooDeep:
            detail = f"The body nests arrays and objects deeper than {depth} levels."
            raise Problem(400, "json_too_deep", detail) from None
        except (ValueError, RecursionError):
            raise Problem(400, "invalid_json", "The body is not valid JSON.") from None

    def _authenticate(self, req: falcon.Request, auth: str) -> Principal:
        bearer = req.get_header("Authorization")
        api_key = req.get_header("X-API-Key")
        if auth == "none" or (auth == "optional" and not bearer and not api_key):
            return Principal("anonymous")
        try:
            if bearer:
                scheme, _, token = bearer.partition(" ")
                if scheme.lower() != "bearer" or not token:
                    raise _unauthorized("invalid_token", "Use the header `Authorization: Bearer <token>`.")
                claims = security.verify_access_token(self.jwt_key, token.strip())
                return Principal(
                    "user", claims.tenant_id, claims.user_id, claims.session_id, claims.role, claims.scopes
                )
            if api_key:
                if auth in ("user", "admin", "optional"):
                    raise Problem(403, "user_token_required", "This call needs a user's access token, not an API key.")
                return self._authenticate_key(req, api_key)
        except security.TokenError as exc:
            raise _unauthorized(exc.reason, str(exc)) from None
        raise _unauthorized("missing_credentials", "Send `Authorization: Bearer <access token>` or `X-API-Key`.")

    def _authenticate_key(self, req: falcon.Request, key: str) -> Principal:
        prefix = security.parse_api_key(key)
        # its own short transaction (usage is recorded), BEGIN to COMMIT in one round trip
        with self.db.transaction(Context(), deferred=True) as conn:
            row: dict[str, Any] = conn.execute_last(  # type: ignore[assignment]  # the API's pools make dict rows
                "SELECT * FROM auth.authenticate_api_key(%s, %s, %s)",
                (prefix, security.sha256(key), client.client_address(req)),
            ).fetchone()
        outcome = row["outcome"]
        if outcome != "ok":
            detail = {
                "invalid": "The API key is not valid.",
                "revoked": "The API key was revoked.",
                "expired": "The API key has expired.",
            }[outcome]
            raise _unauthorized({"invalid": "invalid_api_key"}.get(outcome, f"api_key_{outcome}"), detail)
        return Principal(
            "api_key",
            row["tenant_id"],
            row["key_id"],
            scopes=list(row["scopes"]),
            requests_per_minute=row["requests_per_minute"],
        )

    def _session_checked(self, req: falcon.Request, principal: Principal, row: dict[str, Any]) -> None:
        """The session check's row (auth.check_session, sent with the request's first
        statement): the current role and scopes, the admin flag, the plan's rate. Then the
        user's rate limit, before the first statement's rows are used."""
        principal.role, principal.scopes = row["role"], list(row["scopes"] or [])
        principal.is_platform_admin = row["is_platform_admin"]
        principal.requests_per_minute = row["requests_per_minute"]
        req.context.touch_session = bool(row["touch_due"])
        if (
            getattr(req.context, "operation", None)
            and req.context.operation.auth == "admin"
            and not principal.is_platform_admin
        ):
            raise Problem(403, "platform_admin_required", "Only a platform administrator may do this.")
        self._rate_limit(req, principal)

    def _anonymous_bucket(self, req: falcon.Request) -> tuple[str, Limit]:
        """The client's anonymous bucket: unauthenticated calls and failed credentials."""
        return f"ip:{client.client_address(req)}", Limit.per_minute(self.settings.anonymous_requests_per_minute)

    def _charge_failed_credentials(self, req: falcon.Request) -> None:
        """A request whose token or key was refused takes a token from the client's
        anonymous bucket (a failed login does as an anonymous call); once it is empty the
        answer is 429 instead of 401, so keys cannot be guessed at the plan's rate."""
        if self.limiter is None:
            return
        self._enforce(req, self.limiter.hit(*self._anonymous_bucket(req)))

    @staticmethod
    def _principal_bucket(principal: Principal) -> str:
        return f"{'user' if principal.kind == 'user' else 'key'}:{principal.actor_id}"

    def _enforce_known_empty(self, req: falcon.Request, principal: Principal) -> None:
        """429 at once if this worker knows the principal's bucket is empty (no round trip)."""
        if self.limiter is None:
            return
        refused = self.limiter.known_empty(self._principal_bucket(principal))
        if refused is not None:
            self._enforce(req, refused)

    def _rate_limit(self, req: falcon.Request, principal: Principal) -> None:
        if self.limiter is None:
            return
        limit: Limit | None
        if principal.kind == "anonymous":
            key, limit = self._anonymous_bucket(req)
        else:
            key = self._principal_bucket(principal)
            limit = limit_for_plan(principal.requests_per_minute)
        if limit is None:
            return  # the plan has no request limit
        # a degraded decision (Redis down: allowed) is logged by the limiter once per outage
        self._enforce(req, self.limiter.hit(key, limit))

    @staticmethod
    def _enforce(req: falcon.Request, decision: Decision) -> None:
        """Answer with the bucket's headers; 429 once it is empty."""
        req.context.rate_headers = decision.headers()
        if not decision.allowed:
            raise Problem(
                429,
                "rate_limited",
                "Too many requests; retry later.",
                headers={"Retry-After": str(decision.retry_after or 1)},
            )

    def _idempotency_begin(self, req: falcon.Request, resp: falcon.Response, principal: Principal) -> None:
        key = req.get_header("Idempotency-Key")
        if not key or len(key) > 255:
            raise Problem(
                422, "invalid_idempotency_key", "Idempotency-Key must be 1 to 255 characters.", field="Idempotency-Key"
            )
        digest = hashlib.sha256(req.method.encode() + b" " + req.path.encode() + b"\n" + req.context.raw_body).digest()
        try:  # often the request's first statement: the session check rides with it
            row = req.context.conn.execute(
                "SELECT state, status, response FROM api.idempotency_begin(%s, %s, %s, %s, %s)",
                (principal.tenant_id, key, digest, req.method, req.path),
            ).fetchone()
        except psycopg.Error as exc:
            raise_session_revoked(exc)
            raise
        if row["state"] == "mismatch":
            raise Problem(
                409,
                "idempotency_key_reused",
                "This Idempotency-Key was used for a different request.",
                field="Idempotency-Key",
            )
        if row["state"] == "replay":
            resp.status = row["status"]
            resp.media = row["response"]
            resp.set_header("Idempotent-Replayed", "true")
            resp.complete = True
            return
        req.context.idempotency_key = key


# -- the body's size limit ----------------------------------------------------------------


def _body_too_large(limit: int) -> Problem:
    return Problem(413, "body_too_large", f"The body is larger than {limit} bytes.")


__all__ = ["Pipeline", "Principal", "RequestIdAndMetrics", "raise_session_revoked", "render"]

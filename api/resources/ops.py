"""/health, /ready, /metrics and /v1/openapi.json: for load balancers, Prometheus and
clients. They declare no @operation (no tenant authentication, no rate limit); /metrics
guards itself: a bearer token when TENANTRY_METRICS_TOKEN is set, loopback clients only
otherwise."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess
from pydantic import SecretStr

from api.client import client_address, is_loopback
from api.errors import Problem
from api.ratelimit import RateLimiter
from db import errors as db_errors
from db.context import Database
from db.settings import API_ROLE


class HealthResource:
    """Liveness: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """Readiness: the database answers (503 with Retry-After while it does not). Redis is
    reported but does not decide: rate limits fail open without it (api/ratelimit.py), so
    an API without Redis still serves. Both checks answer fast when their server is down
    (db/context.py: no wait for the pool once the database is known to be unreachable;
    Redis: the limiter's short timeouts)."""

    def __init__(self, db: Database, limiter: RateLimiter | None, draining: Callable[[], bool] | None = None) -> None:
        self.db = db  # not touched until a request comes (routes() are built without a database)
        self.limiter = limiter
        self.draining = draining  # the server is stopping (api/server.py: SIGTERM)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.draining is not None and self.draining():
            # first thing after SIGTERM: the load balancer stops sending new requests here
            # while the ones in flight (and any that still come) are served
            resp.status = 503
            resp.set_header("Retry-After", "1")
            resp.media = {"status": "stopping", "checks": {}}
            return
        checks: dict[str, str] = {}
        try:
            self.db.ping(API_ROLE)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self.limiter is None:
            checks["redis"] = "not configured"
        else:
            checks["redis"] = "ok" if self.limiter.ping() else "unavailable (rate limits fail open)"
        ready = checks["database"] == "ok"
        resp.status = 200 if ready else 503
        if not ready:
            resp.set_header("Retry-After", str(db_errors.CONNECTION_EXCEPTION.retry_after))
        resp.media = {"status": "ready" if ready else "not ready", "checks": checks}


class MetricsResource:
    """Prometheus metrics, which say a lot about the tenants (routes, rates, errors): with
    a token set, only a scraper that sends it; without one, only a client on this host
    (the client as resolved behind trusted proxies, so a proxy on this host does not make
    everyone local)."""

    def __init__(self, token: SecretStr | None = None) -> None:
        self.token = token.get_secret_value().encode() if token is not None else None

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.token is not None:
            scheme, _, given = (req.get_header("Authorization") or "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token):
                raise Problem(
                    401,
                    "invalid_token",
                    "/metrics needs `Authorization: Bearer <metrics token>`.",
                    headers={"WWW-Authenticate": 'Bearer realm="tenantry-metrics"'},
                )
        elif not is_loopback(client_address(req)):
            raise Problem(
                403,
                "forbidden",
                "/metrics answers clients on this host only (set TENANTRY_METRICS_TOKEN to scrape it from elsewhere).",
            )
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest(_registry())


def _registry() -> CollectorRegistry:
    """The whole server's metrics: under `tenantry serve` every worker process writes its
    samples to files in PROMETHEUS_MULTIPROC_DIR (api/server.py makes the folder) and any
    worker answering /metrics sums them; otherwise this process's own registry."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


class OpenApiResource:
    def __init__(self) -> None:
        self.document: dict = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document

"""/health, /ready, /metrics and /v1/openapi.json: for load balancers, Prometheus and
clients. They declare no @operation (no authentication, no rate limit)."""

from __future__ import annotations

import falcon
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest


class HealthResource:
    """Liveness: the process answers."""

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}


class ReadyResource:
    """Readiness: the database and Redis answer (503 naming what does not)."""

    def __init__(self, pool, redis_client) -> None:
        self.pool = pool
        self.redis = redis_client

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks: dict[str, str] = {}
        try:
            with self.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"unavailable: {type(exc).__name__}"
        if self.redis is None:
            checks["redis"] = "not configured"
        else:
            try:
                self.redis.ping()
                checks["redis"] = "ok"
            except Exception as exc:
                checks["redis"] = f"unavailable: {type(exc).__name__}"
        ready = all(v in ("ok", "not configured") for v in checks.values())
        resp.status = 200 if ready else 503
        resp.media = {"status": "ready" if ready else "not ready", "checks": checks}


class MetricsResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = generate_latest()


class OpenApiResource:
    def __init__(self) -> None:
        self.document: dict = {}

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = self.document

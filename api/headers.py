"""Headers every response carries: security headers and CORS (middleware of the Falcon
app), and the same security headers on the answers the server writes itself before the
app runs (api/server.py: a malformed or oversized request head, a head that timed out).

Kept apart from api/app.py so the server's master process can use it without importing
the app (and with it prometheus_client, which must see PROMETHEUS_MULTIPROC_DIR first).
"""

from __future__ import annotations

import ipaddress
from typing import Any

#: On every response, errors included. A JSON API has nothing to render, frame or load:
#: the strictest CSP applies to all of it (the OpenAPI document is JSON; there is no HTML page).
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

#: What a browser page of an allowed origin may send and read (api/README.md lists them).
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_ALLOW_HEADERS = (
    "Authorization, Content-Type, Idempotency-Key, If-Match, If-Unmodified-Since, X-API-Key, X-Request-ID"
)
CORS_EXPOSE_HEADERS = (
    "ETag, Last-Modified, Location, Retry-After, X-Request-ID, Idempotent-Replayed, "
    "RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, RateLimit-Policy, RateLimit"
)
CORS_MAX_AGE = "600"


def _trusted(peer: str | None, networks: list[Any]) -> bool:
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    return any(address in network for network in networks)


class SecurityHeaders:
    """The security headers, and HSTS on responses served over TLS: the request came in as
    https (TLS terminated by `tenantry serve`), or a trusted proxy (settings) says
    `X-Forwarded-Proto: https`. Never over plain HTTP: a browser ignores it there, and a
    spoofed header from an untrusted peer must not switch it on."""

    def __init__(self, trusted_proxies: list[str], hsts_max_age: int) -> None:
        self.networks = [ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies]
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains" if hsts_max_age else None

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        for name, value in SECURITY_HEADERS.items():
            resp.set_header(name, value)
        if self.hsts and self._over_tls(req):
            resp.set_header("Strict-Transport-Security", self.hsts)

    def _over_tls(self, req) -> bool:
        if req.scheme == "https":
            return True
        forwarded = (req.get_header("X-Forwarded-Proto") or "").split(",")[0].strip().lower()
        return forwarded == "https" and _trusted(req.remote_addr, self.networks)


class Cors:
    """CORS for the origins in settings (`cors_allowed_origins`), credentials allowed.

    Not falcon.CORSMiddleware: it echoes whatever headers a preflight asks for (this one
    answers with a fixed list), answers preflights 200 through the route's default OPTIONS
    responder (404 on an unknown path) and sets no `Vary: Origin`, which a cache between
    browser and API needs when the answer depends on the Origin. An origin that is not
    listed gets no CORS header at all, so its page cannot read the answer.
    """

    def __init__(self, origins: list[str]) -> None:
        self.origins = frozenset(origins)

    def process_request(self, req, resp) -> None:
        origin = req.get_header("Origin")
        if req.method != "OPTIONS" or origin not in self.origins or not req.get_header("Access-Control-Request-Method"):
            return
        # a preflight: answered here, before routing and authentication (it carries no credentials)
        resp.status = 204
        resp.set_header("Access-Control-Allow-Methods", CORS_ALLOW_METHODS)
        resp.set_header("Access-Control-Allow-Headers", CORS_ALLOW_HEADERS)
        resp.set_header("Access-Control-Max-Age", CORS_MAX_AGE)
        resp.complete = True

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        if not self.origins:
            return
        resp.append_header("Vary", "Origin")
        origin = req.get_header("Origin")
        if origin not in self.origins:
            return
        resp.set_header("Access-Control-Allow-Origin", origin)
        resp.set_header("Access-Control-Allow-Credentials", "true")
        if req.method != "OPTIONS":
            resp.set_header("Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS)

"""The API answers over real HTTP: health, readiness, a sign-up and an authenticated call."""

from __future__ import annotations


def test_health_ready_and_a_first_call(http, sign_up):
    assert http.get("/health").json() == {"status": "ok"}
    ready = http.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    account = sign_up()
    me = http.get("/v1/auth/me", headers=account.headers | {"X-Request-ID": "smoke-1"})
    assert me.status_code == 200
    assert me.json()["tenant_id"] == account.tenant_id and me.json()["role"] == "owner"
    assert me.headers["X-Request-ID"] == "smoke-1"
    assert int(me.headers["RateLimit-Limit"]) == 6000
